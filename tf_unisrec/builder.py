"""Assembles a `UniSRec` model from a `TrainConfig`, and carries weights from one run to another.

`model.py` defines what the model computes; this module decides which parts a configuration
and a dataset call for (item mode, text tables, objective) and restores the parts `--init`
transfers.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from data_pipeline.dataset import DatasetDir
from tf_unisrec.config import TrainConfig
from tf_unisrec.layers import ItemTower, SequenceEncoder
from tf_unisrec.model import UniSRec
from tf_unisrec.run_dir import checkpoint_read_errors, damaged_checkpoint


def build_model(config: TrainConfig, dataset: DatasetDir) -> UniSRec:
    """A UniSRec model for `dataset`'s catalogue, variables created and text tables loaded."""
    features = word_drop_features = None
    if config.stage_info.item_mode != "id":
        features = dataset.text_features("default")
        if config.uses_seq_seq_view:
            word_drop_features = dataset.text_features("word_drop")
    model = build_model_from_tables(config, dataset.num_items, features, word_drop_features)
    if config.negatives != "full":
        model.set_sampling(
            dataset.target_counts("train"), popularity=config.sampling == "popularity"
        )
    return model


def build_model_from_tables(
    config: TrainConfig,
    num_items: int,
    text_features: np.ndarray | None = None,
    word_drop_features: np.ndarray | None = None,
) -> UniSRec:
    """A UniSRec model over `num_items` items and the given text tables (row 0 padding).

    Args:
        config: the run's settings (stage, sizes, adaptor switches, objective weights).
        num_items: the catalogue size, padding excluded.
        text_features: float32 `[num_items + 1, d]`; required unless the stage is ID-only.
        word_drop_features: the word-drop variant; required when `config.uses_seq_seq_view`.
    """
    stage = config.stage_info
    if stage.item_mode != "id" and text_features is None:
        raise ValueError(f"--stage {stage.name} needs item text features")
    item_tower = ItemTower(
        num_items=num_items,
        hidden_dim=config.hidden_dim,
        mode=stage.item_mode,
        text_dim=0 if text_features is None else int(text_features.shape[1]),
        word_drop=config.uses_seq_seq_view,
        num_experts=config.num_experts,
        adaptor_dropout=config.adaptor_dropout,
        gating=config.gating,
        whitening=config.whitening,
        whitening_init=config.whitening_init,
        seed=config.seed,
        name="item_tower",
    )
    sequence_encoder = SequenceEncoder(
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        intermediate_dim=config.intermediate_dim,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        max_length=config.max_length,
        layer_norm_epsilon=config.layer_norm_epsilon,
        name="sequence_encoder",
    )
    model = UniSRec(
        item_tower,
        sequence_encoder,
        objective=stage.objective,
        scoring=config.scoring,
        temperature=config.temperature,
        seq_item_weight=config.seq_item_weight,
        seq_seq_weight=config.seq_seq_weight,
        negatives=config.negatives,
        num_negatives=config.num_negatives,
    )
    item_tower.build(None)
    if text_features is not None:
        item_tower.set_text_features(text_features, word_drop_features)
    model.sequence_vectors(tf.ones([1, 1], tf.int32), tf.ones([1], tf.int32))
    return model


def transferable_checkpoint(model: UniSRec) -> tf.train.Checkpoint:
    """The parts of a model that carry over from pre-training: adaptor and sequence encoder.

    Mirrors the object graph of a run's `tf.train.Checkpoint(model=...)`, so it restores from
    a pre-training run's checkpoint while skipping that run's item tables.
    """
    parts = {"sequence_encoder": model.sequence_encoder}
    if model.item_tower.uses_text:
        parts["item_tower"] = tf.train.Checkpoint(adaptor=model.item_tower.adaptor)
    return tf.train.Checkpoint(model=tf.train.Checkpoint(**parts))


def restore_transferable(model: UniSRec, prefix: str) -> None:
    """Restores adaptor and sequence-encoder weights from a checkpoint prefix."""
    # The source's item tables belong to its own catalogue and are left behind.
    try:
        status = transferable_checkpoint(model).restore(prefix).expect_partial()
    except checkpoint_read_errors() as error:
        raise ValueError(f"--init: {damaged_checkpoint(prefix, error)}") from None
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise ValueError(
            f"--init {prefix}: checkpoint does not match this model "
            f"(hidden size, layers or text encoder differ): {error}"
        ) from error
    if model.item_tower.uses_text and model.item_tower.whitening == "bert":
        # A fixed whitening has nothing learned to carry over: whiten this catalogue's texts.
        model.item_tower.start_whitening()
