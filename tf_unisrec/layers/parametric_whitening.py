"""Parametric whitening: a learned centring and projection of frozen text vectors."""

from typing import Any

import tensorflow as tf


class ParametricWhitening(tf.keras.layers.Layer):
    """Computes `(dropout(x) - b) W`, the whitening expert of UniSRec.

    The paper writes the whitening as `(x - b) W`; the official code applies dropout to the
    input first and initialises `W ~ N(0, 0.02)` with no output bias. This layer follows the
    official code.

    Args:
        output_dim: int. Size of the whitened vector.
        dropout: float. Dropout rate on the input vector.
        center: bool. Learn the centring bias `b`; `False` gives a plain projection `x W`.
        kernel_initializer: initializer of `W`.

    Call arguments:
        inputs: float tensor `[..., input_dim]`.
        training: bool, whether dropout is active.

    Example:
    >>> layer = ParametricWhitening(output_dim=300)
    >>> layer(tf.zeros([4, 384])).shape
    TensorShape([4, 300])

    Reference:
        Hou et al., "Towards Universal Sequence Representation Learning for Recommender
        Systems", KDD 2022, Eq. (2).
    """

    def __init__(
        self,
        output_dim: int,
        dropout: float = 0.2,
        center: bool = True,
        kernel_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.output_dim = output_dim
        self.dropout = dropout
        self.center = center
        self.kernel_initializer = tf.keras.initializers.get(
            kernel_initializer or tf.keras.initializers.RandomNormal(stddev=0.02)
        )

    def build(self, input_shape: tf.TensorShape) -> None:
        input_dim = int(input_shape[-1])
        self._dropout_layer = tf.keras.layers.Dropout(self.dropout)
        self.bias = (
            self.add_weight(name="bias", shape=[input_dim], initializer="zeros")
            if self.center
            else None
        )
        self.kernel = self.add_weight(
            name="kernel", shape=[input_dim, self.output_dim], initializer=self.kernel_initializer
        )
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        outputs = tf.linalg.matmul(self._dropout_layer(inputs, training=training), self.kernel)
        if self.center:
            # (x - b) W as x W - b W: the same value, and b's gradient becomes (sum of the
            # output gradients) W^T, so backprop no longer forms the [n, input_dim] gradient
            # of the inputs (a product as large as the forward one).
            outputs -= tf.linalg.matvec(self.kernel, self.bias, transpose_a=True)
        return outputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "output_dim": self.output_dim,
                "dropout": self.dropout,
                "center": self.center,
                "kernel_initializer": tf.keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
