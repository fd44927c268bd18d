"""A post-LN transformer block as in SASRec."""

from typing import Any

import tensorflow as tf


class TransformerBlock(tf.keras.layers.Layer):
    """Self-attention then a position-wise feed-forward net, each with a residual and LayerNorm.

    The block of SASRec as RecBole and the official UniSRec implement it: post-LN, dropout on
    the attention probabilities and on each sub-layer output, exact (erf) GELU.

    Args:
        num_heads: int. Number of attention heads; must divide the hidden size.
        intermediate_dim: int. Hidden size of the feed-forward net.
        dropout: float. Dropout on each sub-layer output.
        attention_dropout: float. Dropout on the attention probabilities.
        layer_norm_epsilon: float. Epsilon of both LayerNorms.
        kernel_initializer: initializer of all kernels.

    Call arguments:
        inputs: float tensor `[batch, length, hidden]`.
        attention_mask: bool tensor `[batch, length, length]`, `True` where a query position
            may attend to a key position.
        training: bool, whether dropout is active.

    Example:
    >>> block = TransformerBlock(num_heads=2, intermediate_dim=256)
    >>> block(tf.zeros([3, 7, 300])).shape
    TensorShape([3, 7, 300])

    Reference:
        Kang and McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
    """

    def __init__(
        self,
        num_heads: int = 2,
        intermediate_dim: int = 256,
        dropout: float = 0.5,
        attention_dropout: float = 0.5,
        layer_norm_epsilon: float = 1e-12,
        kernel_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = tf.keras.initializers.get(
            kernel_initializer or tf.keras.initializers.RandomNormal(stddev=0.02)
        )

    def _new_initializer(self) -> tf.keras.initializers.Initializer:
        # An unseeded tf-keras initializer returns the same values on every call: clone it.
        return self.kernel_initializer.__class__.from_config(self.kernel_initializer.get_config())

    def build(self, input_shape: tf.TensorShape) -> None:
        hidden_dim = int(input_shape[-1])
        if hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden size {hidden_dim} is not a multiple of num_heads={self.num_heads}"
            )
        self._attention = tf.keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=hidden_dim // self.num_heads,
            dropout=self.attention_dropout,
            kernel_initializer=self.kernel_initializer,
            name="attention",
        )
        self._attention_dropout = tf.keras.layers.Dropout(self.dropout)
        self._attention_norm = tf.keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="attention_norm"
        )
        self._inner_dense = tf.keras.layers.Dense(
            self.intermediate_dim,
            activation="gelu",  # tf-keras' gelu is the exact (erf) form
            kernel_initializer=self._new_initializer(),
            name="inner_dense",
        )
        self._outer_dense = tf.keras.layers.Dense(
            hidden_dim, kernel_initializer=self._new_initializer(), name="outer_dense"
        )
        self._ffn_dropout = tf.keras.layers.Dropout(self.dropout)
        self._ffn_norm = tf.keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="ffn_norm"
        )
        super().build(input_shape)

    def call(
        self,
        inputs: tf.Tensor,
        attention_mask: tf.Tensor | None = None,
        training: bool | None = None,
    ) -> tf.Tensor:
        attended = self._attention(inputs, inputs, attention_mask=attention_mask, training=training)
        x = self._attention_norm(inputs + self._attention_dropout(attended, training=training))
        ffn = self._outer_dense(self._inner_dense(x))
        return self._ffn_norm(x + self._ffn_dropout(ffn, training=training))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": tf.keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
