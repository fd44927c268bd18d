"""SASRec sequence encoder: item vectors of a history -> one sequence vector."""

from typing import Any

import tensorflow as tf

from tf_unisrec.layers.transformer_block import TransformerBlock


def causal_padding_mask(length: tf.Tensor, max_length: tf.Tensor) -> tf.Tensor:
    """`[batch, T, T]` mask: query `i` may attend to key `j` iff `j <= i` and `j < length`."""
    positions = tf.range(max_length)
    causal = positions[:, tf.newaxis] >= positions[tf.newaxis, :]
    real_keys = positions[tf.newaxis, :] < length[:, tf.newaxis]
    return tf.logical_and(causal[tf.newaxis], real_keys[:, tf.newaxis, :])


class SequenceEncoder(tf.keras.layers.Layer):
    """Encodes a right-padded history of item vectors into the vector at its last item.

    Item vectors plus learned positions, LayerNorm, dropout, then `num_layers` post-LN
    transformer blocks under a causal and padding mask; the output is the hidden state at the
    last real position. With right padding and a causal mask the result does not depend on the
    padded length, so batches can be trimmed to their longest history.

    Args:
        num_layers: int. Number of transformer blocks.
        num_heads: int. Attention heads per block.
        intermediate_dim: int. Feed-forward hidden size.
        dropout: float. Dropout on the input and on each sub-layer output.
        attention_dropout: float. Dropout on the attention probabilities.
        max_length: int. Longest history (size of the position table).
        layer_norm_epsilon: float. LayerNorm epsilon.

    Call arguments:
        inputs: float tensor `[batch, T, hidden]`, the item vectors, `T <= max_length`.
        length: int tensor `[batch]`, the number of real items (`>= 1`) of each history.
        training: bool, whether dropout is active.

    Example:
    >>> encoder = SequenceEncoder()
    >>> encoder(tf.zeros([4, 6, 300]), length=tf.constant([6, 1, 3, 2])).shape
    TensorShape([4, 300])

    Reference:
        Kang and McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018;
        Hou et al., KDD 2022, Section 2.3.
    """

    def __init__(
        self,
        num_layers: int = 2,
        num_heads: int = 2,
        intermediate_dim: int = 256,
        dropout: float = 0.5,
        attention_dropout: float = 0.5,
        max_length: int = 50,
        layer_norm_epsilon: float = 1e-12,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.max_length = max_length
        self.layer_norm_epsilon = layer_norm_epsilon

    def build(self, input_shape: tf.TensorShape) -> None:
        hidden_dim = int(input_shape[-1])
        self.position_embedding = tf.keras.layers.Embedding(
            self.max_length,
            hidden_dim,
            embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.02),
            name="position_embedding",
        )
        self.input_norm = tf.keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="input_norm"
        )
        self._input_dropout = tf.keras.layers.Dropout(self.dropout)
        self.blocks = [
            TransformerBlock(
                num_heads=self.num_heads,
                intermediate_dim=self.intermediate_dim,
                dropout=self.dropout,
                attention_dropout=self.attention_dropout,
                layer_norm_epsilon=self.layer_norm_epsilon,
                name=f"block_{i}",
            )
            for i in range(self.num_layers)
        ]
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, length: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        length = tf.cast(length, tf.int32)
        steps = tf.shape(inputs)[1]
        x = inputs + self.position_embedding(tf.range(steps))
        x = self._input_dropout(self.input_norm(x), training=training)
        mask = causal_padding_mask(length, steps)
        for block in self.blocks:
            x = block(x, attention_mask=mask, training=training)
        return tf.gather(x, length - 1, batch_dims=1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "max_length": self.max_length,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
