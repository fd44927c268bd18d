"""Item tower: universal item vectors from frozen text features and/or item IDs."""

from typing import Any

import numpy as np
import tensorflow as tf

from tf_unisrec.layers.moe_adaptor import MoEAdaptor
from tf_unisrec.whitening import bert_whitening, random_rotations

ITEM_MODES = ("text", "text+id", "id")
WHITENING_INITS = ("random", "bert")


class ItemTower(tf.keras.layers.Layer):
    """Maps item indices to item vectors.

    - `"text"` (inductive): `MoEAdaptor(text_vector)`; a new item needs only its text.
    - `"text+id"` (transductive): the text part plus a learned ID embedding.
    - `"id"`: an ID embedding alone, i.e. SASRec.

    Text vectors come from a frozen table (the language model's output for each item's text),
    stored as a non-trainable variable; row 0 is padding. A second table of "word drop"
    vectors (the same texts with some words removed) serves UniSRec's sequence augmentation.
    Only real (non-zero) indices go through the adaptor; padding positions get zero vectors.

    Args:
        num_items: int. Number of items; valid indices are `1..num_items`.
        hidden_dim: int. Size of the item vectors.
        mode: str. One of `"text"`, `"text+id"`, `"id"`.
        text_dim: int. Size of the frozen text vectors (unused in `"id"` mode).
        word_drop: bool. Hold a word-drop text table for augmentation.
        num_experts, adaptor_dropout, gating, whitening: `MoEAdaptor` settings.
        whitening_init: str. "random" (`W ~ N(0, 0.02)`, `b = 0`, the official start) or
            "bert": every expert starts as the BERT-whitening of this tower's text table,
            rotated differently per expert (the first not at all). A `whitening="bert"` tower
            always holds that whitening, fixed.
        seed: optional int, seed of the adaptor's gate noise and of the experts' rotations.

    Call arguments:
        indices: int tensor of item indices, any shape.
        word_drop_mask: optional bool tensor shaped like `indices`; `True` takes the text
            vector from the word-drop table.
        training: bool.

    Example:
    >>> tower = ItemTower(num_items=3, hidden_dim=8, text_dim=4)
    >>> tower.build(None)
    >>> tower.set_text_features(np.ones([4, 4], np.float32))
    >>> tower(tf.constant([[1, 2, 0]])).shape
    TensorShape([1, 3, 8])
    """

    def __init__(
        self,
        num_items: int,
        hidden_dim: int = 300,
        mode: str = "text",
        text_dim: int = 768,
        word_drop: bool = False,
        num_experts: int = 8,
        adaptor_dropout: float = 0.2,
        gating: bool = True,
        whitening: str | bool = "parametric",
        whitening_init: str = "random",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ITEM_MODES:
            raise ValueError(f"mode must be one of {ITEM_MODES}, got {mode!r}")
        if whitening_init not in WHITENING_INITS:
            raise ValueError(f"whitening_init must be one of {WHITENING_INITS}")
        self.num_items = num_items
        self.hidden_dim = hidden_dim
        self.mode = mode
        self.text_dim = text_dim
        self.word_drop = word_drop
        self.num_experts = num_experts
        self.adaptor_dropout = adaptor_dropout
        self.gating = gating
        self.whitening = whitening
        self.whitening_init = whitening_init
        self.seed = seed

    @property
    def uses_text(self) -> bool:
        return self.mode != "id"

    @property
    def uses_ids(self) -> bool:
        return self.mode != "text"

    def build(self, input_shape: Any) -> None:
        rows = self.num_items + 1
        if self.uses_text:
            self.text_table = self.add_weight(
                name="text_table",
                shape=[rows, self.text_dim],
                initializer="zeros",
                trainable=False,
            )
            if self.word_drop:
                self.word_drop_table = self.add_weight(
                    name="word_drop_table",
                    shape=[rows, self.text_dim],
                    initializer="zeros",
                    trainable=False,
                )
            self.adaptor = MoEAdaptor(
                output_dim=self.hidden_dim,
                num_experts=self.num_experts,
                dropout=self.adaptor_dropout,
                gating=self.gating,
                whitening=self.whitening,
                seed=self.seed,
                name="moe_adaptor",
            )
            with tf.name_scope(self.adaptor.name):
                self.adaptor.build(tf.TensorShape([None, self.text_dim]))
        if self.uses_ids:
            self.id_embedding = tf.keras.layers.Embedding(
                rows,
                self.hidden_dim,
                embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.02),
                name="id_embedding",
            )
            with tf.name_scope(self.id_embedding.name):
                self.id_embedding.build(None)
        super().build(input_shape)

    def set_text_features(
        self, features: np.ndarray, word_drop_features: np.ndarray | None = None
    ) -> None:
        """Loads the frozen text tables (`[num_items + 1, text_dim]`, row 0 padding)."""
        expected = (self.num_items + 1, self.text_dim)
        for name, array in (("text", features), ("word-drop", word_drop_features)):
            if array is not None and tuple(array.shape) != expected:
                raise ValueError(f"{name} features have shape {array.shape}, expected {expected}")
        _assign_rows(self.text_table, features)
        if self.word_drop:
            if word_drop_features is None:
                raise ValueError("this tower augments with word drop: give word_drop_features")
            _assign_rows(self.word_drop_table, word_drop_features)
        if self.whitening_init == "bert" or self.adaptor.whitening == "bert":
            self.start_whitening()

    def start_whitening(self) -> None:
        """Sets the experts to the BERT-whitening of the text table (items 1..N)."""
        mean, kernel = bert_whitening(self.text_table.numpy()[1:], self.hidden_dim)
        rotations = random_rotations(self.num_experts, self.hidden_dim, self.seed)
        self.adaptor.set_whitening(mean, kernel, rotations)

    def text_vectors(self, text_features: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Universal vectors of raw text features `[..., text_dim]` (no ID part)."""
        return self.adaptor(text_features, training=training)

    def call(
        self,
        indices: tf.Tensor,
        word_drop_mask: tf.Tensor | None = None,
        training: bool | None = None,
    ) -> tf.Tensor:
        indices = tf.cast(indices, tf.int32)
        outputs = tf.zeros(tf.concat([tf.shape(indices), [self.hidden_dim]], 0))
        if self.uses_text:
            real = tf.where(indices > 0)
            real_indices = tf.gather_nd(indices, real)
            features = tf.gather(self.text_table, real_indices)
            if word_drop_mask is not None and self.word_drop:
                dropped = tf.gather(self.word_drop_table, real_indices)
                features = tf.where(tf.gather_nd(word_drop_mask, real)[:, None], dropped, features)
            vectors = self.adaptor(features, training=training)
            outputs = tf.scatter_nd(real, vectors, tf.shape(outputs, out_type=tf.int64))
        if self.uses_ids:
            outputs += self.id_embedding(indices)
        return outputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "num_items": self.num_items,
                "hidden_dim": self.hidden_dim,
                "mode": self.mode,
                "text_dim": self.text_dim,
                "word_drop": self.word_drop,
                "num_experts": self.num_experts,
                "adaptor_dropout": self.adaptor_dropout,
                "gating": self.gating,
                "whitening": self.whitening,
                "whitening_init": self.whitening_init,
                "seed": self.seed,
            }
        )
        return config


def _assign_rows(table: tf.Variable, values: np.ndarray, rows: int = 65536) -> None:
    """`table.assign(values)` a block of rows at a time: no second whole copy in memory.

    A row scatter updates the buffer in place; a sliced assign would read the variable back,
    and the next write would copy the whole table.
    """
    for start in range(0, int(values.shape[0]), rows):
        block = np.asarray(values[start : start + rows])
        indices = tf.range(start, start + block.shape[0])
        table.scatter_update(tf.IndexedSlices(block, indices))
