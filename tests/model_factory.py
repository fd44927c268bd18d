"""Tiny UniSRec models and batches for tests."""

import numpy as np
import tensorflow as tf

from tf_unisrec.layers import ItemTower, SequenceEncoder
from tf_unisrec.model import ITEM_MODE_OF_STAGE, UniSRec


def tiny_model(stage: str, num_items: int = 12, text_dim: int = 6) -> UniSRec:
    mode = ITEM_MODE_OF_STAGE[stage]
    tower = ItemTower(
        num_items,
        hidden_dim=8,
        mode=mode,
        text_dim=text_dim,
        word_drop=stage == "pretrain",
        num_experts=2,
    )
    encoder = SequenceEncoder(num_heads=2, intermediate_dim=8, max_length=5)
    model = UniSRec(tower, encoder, stage=stage)
    tower.build(None)
    if mode != "id":
        table = np.random.default_rng(0).normal(size=(num_items + 1, text_dim)).astype("float32")
        tower.set_text_features(table, table + 0.1 if stage == "pretrain" else None)
    model.sequence_vectors(tf.ones([1, 1], tf.int32), tf.ones([1], tf.int32))
    return model


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
