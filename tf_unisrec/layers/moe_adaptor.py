"""Mixture-of-experts adaptor: universal item vectors from frozen text vectors."""

from typing import Any

import numpy as np
import tensorflow as tf

from tf_unisrec.layers.parametric_whitening import ParametricWhitening

WHITENINGS = ("parametric", "none", "bert")


class MoEAdaptor(tf.keras.__internal__.layers.BaseRandomLayer):
    """Mixes `num_experts` whitening experts with a noisy softmax gate.

    `v = sum_k g_k * e_k(x)`, `g = softmax(x W2 + delta)`,
    `delta = eps * (softplus(x W3) + 1e-2)` with `eps ~ N(0, 1)` in training only.

    Follows the official code where it refines the paper: the gate is a dense softmax over all
    experts (no top-k), `W2` and `W3` start at zero, and the noise scale gets a `1e-2` floor.
    With `num_experts=1` and `gating=False` this is the paper's "w/o MoE" ablation; with
    `whitening="none"` each expert is a plain linear projection `x W` ("w/o whitening"); with
    `whitening="bert"` the one expert is a fixed BERT-whitening `(x - mu) W_k` set by
    `set_whitening` (the non-parametric baseline).

    Args:
        output_dim: int. Size of the universal item vector.
        num_experts: int. Number of whitening experts `G`.
        dropout: float. Input dropout of every expert.
        gating: bool. Mix experts with the learned gate; `False` averages them.
        whitening: str. "parametric" (learned `(x - b) W`), "none" (learned `x W`) or "bert"
            (one fixed expert, `set_whitening`); `True`/`False` mean "parametric"/"none".
        seed: optional int seed of the gate noise.

    Call arguments:
        inputs: float tensor `[..., input_dim]` of text vectors.
        training: bool. Dropout and gate noise are active only in training.

    Example:
    >>> adaptor = MoEAdaptor(output_dim=300, num_experts=8)
    >>> adaptor(tf.zeros([2, 5, 384])).shape
    TensorShape([2, 5, 300])

    Reference:
        Hou et al., "Towards Universal Sequence Representation Learning for Recommender
        Systems", KDD 2022, Eq. (3)-(4).
    """

    def __init__(
        self,
        output_dim: int = 300,
        num_experts: int = 8,
        dropout: float = 0.2,
        gating: bool = True,
        whitening: str | bool = "parametric",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed=seed, **kwargs)
        if isinstance(whitening, bool):
            whitening = "parametric" if whitening else "none"
        if whitening not in WHITENINGS:
            raise ValueError(f"whitening must be one of {WHITENINGS}, got {whitening!r}")
        if whitening == "bert" and (num_experts != 1 or gating):
            raise ValueError("a fixed BERT-whitening is one expert without a gate")
        self.output_dim = output_dim
        self.num_experts = num_experts
        self.dropout = dropout
        self.gating = gating
        self.whitening = whitening
        self.seed = seed

    def build(self, input_shape: tf.TensorShape) -> None:
        input_dim = int(input_shape[-1])
        self.experts = [
            ParametricWhitening(
                self.output_dim,
                dropout=self.dropout,
                center=self.whitening != "none",
                trainable=self.whitening != "bert",
                name=f"expert_{i}",
            )
            for i in range(self.num_experts)
        ]
        for expert in self.experts:
            with tf.name_scope(expert.name):
                expert.build(input_shape)
        if self.gating:
            self.gate_kernel = self.add_weight(
                name="gate_kernel", shape=[input_dim, self.num_experts], initializer="zeros"
            )
            self.noise_kernel = self.add_weight(
                name="noise_kernel", shape=[input_dim, self.num_experts], initializer="zeros"
            )
        super().build(input_shape)

    def set_whitening(self, mean: np.ndarray, kernel: np.ndarray, rotations: np.ndarray) -> None:
        """Starts expert `e` at `b = mean`, `W = kernel @ rotations[e]` (BERT-whitening).

        Args:
            mean: `[input_dim]`, the text vectors' mean.
            kernel: `[input_dim, output_dim]`, the Whitening-k matrix.
            rotations: `[num_experts, output_dim, output_dim]` orthogonal matrices.
        """
        if self.whitening == "none":
            raise ValueError("experts without centring cannot start as a whitening")
        for expert, rotation in zip(self.experts, rotations, strict=True):
            expert.bias.assign(mean)
            expert.kernel.assign(kernel @ rotation)

    def gates(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Expert weights `[..., num_experts]` for `inputs`."""
        if not self.gating:
            shape = tf.concat([tf.shape(inputs)[:-1], [self.num_experts]], axis=0)
            return tf.fill(shape, 1.0 / self.num_experts)
        logits = tf.linalg.matmul(inputs, self.gate_kernel)
        if training:
            scale = tf.nn.softplus(tf.linalg.matmul(inputs, self.noise_kernel)) + 1e-2
            logits += self._random_generator.random_normal(tf.shape(logits)) * scale
        return tf.nn.softmax(logits, axis=-1)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        expert_outputs = tf.stack([e(inputs, training=training) for e in self.experts], axis=-2)
        gates = self.gates(inputs, training=training)
        return tf.reduce_sum(gates[..., tf.newaxis] * expert_outputs, axis=-2)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "output_dim": self.output_dim,
                "num_experts": self.num_experts,
                "dropout": self.dropout,
                "gating": self.gating,
                "whitening": self.whitening,
                "seed": self.seed,
            }
        )
        return config
