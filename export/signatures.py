"""The serving module of a trained UniSRec model: the SavedModel's signatures.

:class:`UniSRecServingModule` freezes a model into lookup tables and a TFRS top-k index (exact
brute force, or a partitioned one that searches part of a big catalogue), and exports the
signatures of :mod:`export.contract` (names, aliases, dtypes, shapes, defaults):
``serving_default`` and ``encode_sequence`` answer histories of original item IDs,
``encode_items`` and ``recommend_from_texts`` answer item texts. ``encode_items`` needs valid
UTF-8 (tokenization is in the graph); ``recommend_from_texts`` replaces invalid UTF-8 by U+FFFD.

History handling, the same for IDs and texts:

* IDs absent from the catalogue are skipped and counted in ``unknown_items``; ``""`` is padding
  and is not counted.
* A history longer than the model's ``max_length`` keeps its last ``max_length`` known items.
* A row with no known item (all padding or all unknown) has no sequence vector: its
  ``vectors`` row is all zeros, and its top-k row is ``item_ids == ""``, ``item_texts == ""``
  and ``scores == -inf``. The other rows of the batch are answered normally; a per-row
  condition never fails the whole request.
* ``exclude_history`` drops every item of the history (including those beyond ``max_length``)
  from that row's top-k.

``k`` must satisfy ``1 <= k <= min(max_k, number of items)``, otherwise the request fails with
INVALID_ARGUMENT.

Item modes: an ``"id"`` model (SASRec) has no text path, so ``encode_items`` and
``recommend_from_texts`` are not exported. A ``"text+id"`` (transductive) model scores the
catalogue with text + ID item vectors, but its text signatures use the text part of an item
vector only (the adaptor output), since an unseen item has no trained ID embedding.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from export.contract import (
    ENCODE_ITEMS,
    ENCODE_SEQUENCE,
    EXCLUDE_HISTORY,
    ITEM_IDS,
    ITEM_TEXTS,
    ITEM_VECTORS,
    RECOMMEND_FROM_TEXTS,
    SCORES,
    SEQUENCE_VECTORS,
    SERVING_DEFAULT,
    SIGNATURES,
    TOP_K,
    UNKNOWN_ITEMS,
    signatures_for,
)
from tf_unisrec.layers import PartitionedIndex
from tf_unisrec.model import UniSRec

# The catalogue index: "exact" scores every item; "partitioned" (inverted file) scores the
# items of the partitions nearest the query, for catalogues too big to scan per request.
INDEXES = ("exact", "partitioned")
DEFAULT_INDEX = "exact"

# Items adapted at once when the catalogue is frozen: bounds memory on large catalogues.
ITEM_CHUNK = 65536

_DEFAULT_K = TOP_K.default_tensor()
_DEFAULT_EXCLUDE = EXCLUDE_HISTORY.default_tensor()


class UniSRecServingModule(tf.Module):
    """A trained UniSRec model frozen for serving.

    Item tower outputs (the sequence encoder's inputs) and the catalogue as scored are
    computed once here; a request only looks items up, runs the sequence encoder and queries
    the index.

    Args:
        model: the trained model.
        item_ids: original item IDs by index, ``[num_items + 1]``, ``[0] == ""`` (padding).
        item_texts: item texts by index, same layout.
        item_ids_file: a text file with one item ID per line, items ``1..num_items`` in order;
            it becomes a SavedModel asset that initialises the ID lookup table.
        max_k: the largest ``k`` a request may ask for.
        text_encoder: the text encoder whose outputs the model's text table holds (a
            ``data_pipeline.text.encoder.TextEncoder``); required unless the model is ID-only.
        added_item_inputs: ``[M, H]`` item-tower outputs of items the model was not trained
            on, appended to the catalogue after its own items (``item_ids`` and ``item_texts``
            then hold them too).
        index: one of ``INDEXES``.
        num_partitions: partitions of a ``"partitioned"`` index (default: its own).
        partitions_to_search: partitions it searches per query (default: its own).
    """

    def __init__(
        self,
        model: UniSRec,
        item_ids: Sequence[str],
        item_texts: Sequence[str],
        item_ids_file: str,
        *,
        max_k: int,
        text_encoder: tf.Module | None = None,
        added_item_inputs: tf.Tensor | None = None,
        index: str = DEFAULT_INDEX,
        num_partitions: int | None = None,
        partitions_to_search: int | None = None,
    ) -> None:
        super().__init__(name="unisrec_serving")
        tower = model.item_tower
        added = 0 if added_item_inputs is None else int(added_item_inputs.shape[0])
        num_items = tower.num_items + added
        if len(item_ids) != num_items + 1 or len(item_texts) != num_items + 1:
            raise ValueError(
                f"expected {num_items + 1} item IDs and texts (padding row first), got "
                f"{len(item_ids)} and {len(item_texts)}"
            )
        if max_k < 1:
            raise ValueError(f"max_k must be positive, got {max_k}")
        if index not in INDEXES:
            raise ValueError(f"index must be one of {INDEXES}, got {index!r}")
        if tower.uses_text and text_encoder is None:
            raise ValueError(f"a {tower.mode!r} model needs its text encoder")
        self.uses_text = tower.uses_text
        self.num_items = num_items
        self.max_length = int(model.sequence_encoder.max_length)
        self.k_limit = min(max_k, num_items)

        inputs = model.item_inputs(chunk_size=ITEM_CHUNK)
        if added:
            inputs = tf.concat([inputs, tf.cast(added_item_inputs, inputs.dtype)], axis=0)
        self.item_inputs = tf.Variable(inputs, trainable=False, name="item_inputs")
        self.item_texts = tf.Variable(
            tf.constant(list(item_texts), tf.string), trainable=False, name="item_texts"
        )
        if index == "exact":
            self.index = tfrs.layers.factorized_top_k.BruteForce(k=self.k_limit, name="catalogue")
        else:
            self.index = PartitionedIndex(
                k=self.k_limit,
                num_partitions=num_partitions,
                partitions_to_search=partitions_to_search,
                name="catalogue",
            )
        self.cosine = model.scoring == "cosine"
        self.index.index(
            self._score_space(inputs[1:]),
            identifiers=tf.constant(list(item_ids[1:]), tf.string),
        )
        self.id_to_index = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                item_ids_file,
                key_dtype=tf.string,
                key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                value_dtype=tf.int64,
                value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            default_value=-1,
        )
        self.sequence_encoder = model.sequence_encoder
        if self.uses_text:
            self.adaptor = tower.adaptor
            self.text_encoder = text_encoder
        else:
            # tf.saved_model.save traces every tf.function it finds on the module; an ID-only
            # model has no text path for these two.
            self.encode_items = self.recommend_from_texts = None

    def signatures(self) -> dict[str, Callable[..., dict[str, tf.Tensor]]]:
        """The signature functions to pass to ``tf.saved_model.save``, by signature key."""
        functions = {
            SERVING_DEFAULT: self.recommend,
            ENCODE_SEQUENCE: self.encode_sequence,
            ENCODE_ITEMS: self.encode_items,
            RECOMMEND_FROM_TEXTS: self.recommend_from_texts,
        }
        return {s.name: functions[s.name] for s in signatures_for(self.uses_text)}

    def _recent(self, values: tf.RaggedTensor) -> tf.RaggedTensor:
        """The last ``max_length`` values of each row."""
        return values[:, -self.max_length :]

    def _lookup(self, history: tf.Tensor) -> tuple[tf.RaggedTensor, tf.Tensor]:
        """Known item indices (ragged, the last ``max_length``) and unknown counts."""
        index = self.id_to_index.lookup(history) + 1
        known = index > 0
        present = tf.not_equal(history, "")
        unknown = tf.reduce_sum(
            tf.cast(tf.logical_and(present, tf.logical_not(known)), tf.int32), axis=1
        )
        return self._recent(tf.ragged.boolean_mask(index, known)), unknown

    def _encode_sequences(self, item_vectors: tf.RaggedTensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Sequence vectors [B, H] as scored (zeros for empty rows) and the non-empty mask."""
        length = tf.cast(item_vectors.row_lengths(), tf.int32)
        dense = item_vectors.to_tensor()
        steps = tf.maximum(tf.shape(dense)[1], 1)
        dense = tf.pad(dense, [[0, 0], [0, steps - tf.shape(dense)[1]], [0, 0]])
        outputs = self.sequence_encoder(dense, length=tf.maximum(length, 1), training=False)
        has_items = length > 0
        vectors = self._score_space(outputs)
        return tf.where(has_items[:, tf.newaxis], vectors, tf.zeros_like(vectors)), has_items

    def _score_space(self, vectors: tf.Tensor) -> tf.Tensor:
        """L2-normalised for a cosine-scored model (UniSRec); as they are for a dot one (SASRec)."""
        return tf.math.l2_normalize(vectors, axis=-1) if self.cosine else vectors

    def _sequences_from_ids(self, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        indices, unknown = self._lookup(history)
        item_vectors = tf.ragged.map_flat_values(tf.gather, self.item_inputs, indices)
        vectors, has_items = self._encode_sequences(item_vectors)
        return vectors, has_items, unknown

    def _text_item_vectors(self, texts: tf.Tensor) -> tf.Tensor:
        """Adaptor outputs (un-normalised) for a flat batch of texts."""
        features = self.text_encoder(texts)
        return self.adaptor(features, training=False)

    def _checked_k(self, k: tf.Tensor) -> tf.Tensor:
        checks = [
            tf.debugging.assert_greater_equal(k, 1, message="k must be at least 1", summarize=1),
            tf.debugging.assert_less_equal(
                k,
                self.k_limit,
                message=f"k must be at most {self.k_limit} (min of max_k and the catalogue size)",
                summarize=1,
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(k)

    def _top_k(
        self, queries: tf.Tensor, has_items: tf.Tensor, k: tf.Tensor, exclusions: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """Top-k of the catalogue index without ``exclusions`` (IDs, [B, E]); empty rows masked."""
        k = self._checked_k(k)
        candidates = tf.minimum(k + tf.shape(exclusions)[1], self.num_items)
        scores, ids = self.index(queries, k=candidates)
        excluded = tf.reduce_any(
            tf.equal(ids[:, :, tf.newaxis], exclusions[:, tf.newaxis, :]), axis=-1
        )
        scores = tf.where(excluded, tf.constant(-np.inf, scores.dtype), scores)
        top = tf.math.top_k(scores, k=k)
        ids = tf.gather(ids, top.indices, batch_dims=1)
        scores = top.values
        rows = has_items[:, tf.newaxis]
        ids = tf.where(rows, ids, tf.constant(""))
        scores = tf.where(rows, scores, tf.constant(-np.inf, scores.dtype))
        texts = tf.gather(self.item_texts, self.id_to_index.lookup(ids) + 1)
        return {ITEM_IDS.alias: ids, SCORES.alias: scores, ITEM_TEXTS.alias: texts}

    @tf.function(input_signature=SIGNATURES[SERVING_DEFAULT].input_signature())
    def recommend(
        self,
        history: tf.Tensor,
        k: tf.Tensor = _DEFAULT_K,
        exclude_history: tf.Tensor = _DEFAULT_EXCLUDE,
    ) -> dict[str, tf.Tensor]:
        """Top-k catalogue items for histories of original item IDs."""
        queries, has_items, unknown = self._sequences_from_ids(history)
        width = tf.where(exclude_history, tf.shape(history)[1], 0)
        result = self._top_k(queries, has_items, k, history[:, :width])
        return {**result, UNKNOWN_ITEMS.alias: unknown}

    @tf.function(input_signature=SIGNATURES[ENCODE_SEQUENCE].input_signature())
    def encode_sequence(self, history: tf.Tensor) -> dict[str, tf.Tensor]:
        """Sequence vectors for histories of original item IDs (zeros for empty histories)."""
        vectors, _, unknown = self._sequences_from_ids(history)
        return {SEQUENCE_VECTORS.alias: vectors, UNKNOWN_ITEMS.alias: unknown}

    @tf.function(input_signature=SIGNATURES[ENCODE_ITEMS].input_signature())
    def encode_items(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        """Universal item vectors from item texts alone (valid UTF-8 required)."""
        checked = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="strict")
        vectors = self._text_item_vectors(checked)
        return {ITEM_VECTORS.alias: self._score_space(vectors)}

    @tf.function(input_signature=SIGNATURES[RECOMMEND_FROM_TEXTS].input_signature())
    def recommend_from_texts(
        self, history_texts: tf.Tensor, k: tf.Tensor = _DEFAULT_K
    ) -> dict[str, tf.Tensor]:
        """Top-k catalogue items for histories given as item texts (items never seen)."""
        clean = tf.strings.unicode_transcode(history_texts, "UTF-8", "UTF-8", errors="replace")
        texts = self._recent(tf.ragged.boolean_mask(clean, tf.not_equal(clean, "")))
        item_vectors = tf.ragged.map_flat_values(self._text_item_vectors, texts)
        queries, has_items = self._encode_sequences(item_vectors)
        exclusions = tf.zeros([tf.shape(clean)[0], 0], tf.string)
        return self._top_k(queries, has_items, k, exclusions)


def write_item_ids_file(item_ids: Sequence[str], path: str) -> str:
    """Writes items ``1..N`` of ``item_ids`` (``[0]`` is padding), one per line; returns path."""
    bad = [i for i in item_ids[1:] if not i or "\n" in i or "\r" in i]
    if bad:
        raise ValueError(f"item IDs must be non-empty single lines, got {bad[:3]!r}")
    if len(set(item_ids[1:])) != len(item_ids) - 1:
        raise ValueError("item IDs must be unique")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(f"{item_id}\n" for item_id in item_ids[1:])
    return path
