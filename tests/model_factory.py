"""Tiny UniSRec models and batches in memory, built the way a run builds them."""

import numpy as np
import tensorflow as tf

from tf_unisrec.builder import build_model_from_tables
from tf_unisrec.config import TrainConfig
from tf_unisrec.model import UniSRec


def tiny_config(stage: str, **overrides) -> TrainConfig:
    """A TrainConfig small enough for unit tests (8-d vectors, histories of up to 5 items)."""
    settings = dict(
        hidden_dim=8, num_layers=2, num_heads=2, intermediate_dim=8, max_length=5, num_experts=2
    )
    return TrainConfig(stage=stage, **{**settings, **overrides})


def tiny_model(stage: str, num_items: int = 12, text_dim: int = 6, **overrides) -> UniSRec:
    """A model for `stage` over `num_items` items with random text vectors."""
    config = tiny_config(stage, **overrides)
    table = word_drop = None
    if config.stage_info.item_mode != "id":
        table = np.random.default_rng(0).normal(size=(num_items + 1, text_dim)).astype("float32")
        table[0] = 0
        if config.uses_seq_seq_view:
            word_drop = table + 0.1
    return build_model_from_tables(config, num_items, table, word_drop)


def tiny_batch() -> dict[str, tf.Tensor]:
    """Eight examples, some sharing a target, with an augmented view."""
    return {
        "history": tf.constant(
            [[1, 2, 3], [4, 0, 0], [5, 6, 0], [7, 8, 9], [2, 0, 0], [3, 4, 5], [9, 1, 0], [6, 0, 0]]
        ),
        "length": tf.constant([3, 1, 2, 3, 1, 3, 2, 1]),
        "target": tf.constant([4, 5, 4, 10, 11, 4, 12, 5]),
        "history_aug": tf.constant(
            [[1, 3, 0], [4, 0, 0], [5, 0, 0], [7, 8, 9], [2, 0, 0], [3, 5, 0], [9, 1, 0], [6, 0, 0]]
        ),
        "length_aug": tf.constant([2, 1, 1, 3, 1, 2, 2, 1]),
        "word_drop": tf.constant([[False, True, False]] + [[False] * 3] * 7),
    }
