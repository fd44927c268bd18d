"""Builds a UniSRec model for a dataset and moves weights between runs."""

import pathlib

import tensorflow as tf

from data_pipeline.dataset import DatasetInfo
from tf_unisrec.config import TrainConfig
from tf_unisrec.layers import ItemTower, SequenceEncoder
from tf_unisrec.model import ITEM_MODE_OF_STAGE, UniSRec


def build_model(config: TrainConfig, info: DatasetInfo) -> UniSRec:
    """A UniSRec model for `info`'s catalogue, variables created and text tables loaded."""
    mode = ITEM_MODE_OF_STAGE[config.stage]
    word_drop = config.stage == "pretrain" and config.seq_seq_weight > 0
    features = word_drop_features = None
    text_dim = 0
    if mode != "id":
        features = info.text_features("default")
        text_dim = int(features.shape[1])
        if word_drop:
            word_drop_features = info.text_features("word_drop")
    item_tower = ItemTower(
        num_items=info.num_items,
        hidden_dim=config.hidden_dim,
        mode=mode,
        text_dim=text_dim,
        word_drop=word_drop,
        num_experts=config.num_experts,
        adaptor_dropout=config.adaptor_dropout,
        gating=config.gating,
        whitening=config.whitening,
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
        stage=config.stage,
        temperature=config.temperature,
        seq_item_weight=config.seq_item_weight,
        seq_seq_weight=config.seq_seq_weight,
    )
    item_tower.build(None)
    if features is not None:
        item_tower.set_text_features(features, word_drop_features)
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


def load_pretrained(model: UniSRec, init: str) -> str:
    """Restores adaptor and encoder weights from a run directory or checkpoint prefix."""
    path = pathlib.Path(init)
    prefix = init
    if path.is_dir():
        prefix = tf.train.latest_checkpoint(str(path / "best")) or tf.train.latest_checkpoint(
            str(path / "checkpoints")
        )
        if prefix is None:
            raise FileNotFoundError(f"--init {init}: no checkpoint under best/ or checkpoints/")
    elif not tf.io.gfile.glob(prefix + ".index"):
        raise FileNotFoundError(f"--init {init}: not a run directory or checkpoint prefix")
    status = transferable_checkpoint(model).restore(prefix)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise ValueError(
            f"--init {init}: checkpoint does not match this model "
            f"(hidden size, layers or text encoder differ): {error}"
        ) from error
    return prefix
