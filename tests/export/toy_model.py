"""A toy SavedModel with the serving contract of the UniSRec export, for server and client tests.

It exports every signature of :mod:`export.contract` with the same aliases, dtypes, shapes and
defaults (its input signatures are built from the contract) and the same request semantics as
:mod:`export.signatures`: unknown IDs are skipped and counted, a history keeps its last
``max_length`` known items, an empty row answers ``""`` / ``-inf`` / zero vectors,
``exclude_history`` drops the history's items, and ``k`` outside ``[1, number of items]`` fails
with INVALID_ARGUMENT.

Item vectors are hashed bag-of-words embeddings of the item texts, and a history vector is the
normalised mean of its item vectors, so a history given as texts and the same history given as
IDs score the catalogue identically. Building it needs no trained model and no text encoder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from data_pipeline.fileio import staged_directory
from export.contract import (
    ENCODE_ITEMS,
    ENCODE_SEQUENCE,
    EXCLUDE_HISTORY,
    HISTORY,
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
)
from export.saved_model import write_warmup_file

TOY_DIM = 8
TOY_BUCKETS = 257
TOY_MAX_LENGTH = 6
TOY_ITEM_IDS: tuple[str, ...] = tuple(f"item{i:02d}" for i in range(1, 21))
TOY_ITEM_TEXTS: tuple[str, ...] = tuple(
    f"{adjective} {noun} for the lab"
    for adjective in ("red", "blue", "steel", "glass")
    for noun in ("beaker", "flask", "pipette", "burner", "funnel")
)

_DEFAULT_K = TOP_K.default_tensor()
_DEFAULT_EXCLUDE = EXCLUDE_HISTORY.default_tensor()


class ToyRecommender(tf.Module):
    """Hashed bag-of-words item vectors, mean-pooled histories, exact top-k by dot product."""

    def __init__(
        self,
        item_ids: Sequence[str] = TOY_ITEM_IDS,
        item_texts: Sequence[str] = TOY_ITEM_TEXTS,
        seed: int = 7,
        max_length: int = TOY_MAX_LENGTH,
    ) -> None:
        super().__init__(name="toy_recommender")
        self.num_items = len(item_ids)
        self.max_length = max_length
        self.word_embeddings = tf.Variable(
            tf.random.stateless_normal([TOY_BUCKETS, TOY_DIM], seed=[seed, 0]), trainable=False
        )
        self.item_ids = tf.Variable(tf.constant(list(item_ids)), trainable=False)
        self.item_texts = tf.Variable(tf.constant(list(item_texts)), trainable=False)
        self.item_vectors = tf.Variable(self._embed(tf.constant(list(item_texts))), trainable=False)
        self.id_to_index = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(item_ids)), tf.range(len(item_ids), dtype=tf.int32)
            ),
            default_value=-1,
        )

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """The signature functions for ``tf.saved_model.save``, by signature key."""
        return {
            SERVING_DEFAULT: self.recommend,
            ENCODE_SEQUENCE: self.encode_sequence,
            ENCODE_ITEMS: self.encode_items,
            RECOMMEND_FROM_TEXTS: self.recommend_from_texts,
        }

    def _embed(self, texts: tf.Tensor) -> tf.Tensor:
        """L2-normalised mean word embeddings of a flat batch of texts (zeros without words)."""
        words = tf.strings.split(tf.strings.lower(texts))
        buckets = tf.strings.to_hash_bucket_fast(words, TOY_BUCKETS)
        vectors = tf.reduce_mean(tf.gather(self.word_embeddings, buckets), axis=1)
        vectors = tf.where(tf.math.is_nan(vectors), tf.zeros_like(vectors), vectors)
        return tf.math.l2_normalize(vectors, axis=-1)

    def _pool(self, item_vectors: tf.RaggedTensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Normalised sum of each row's last ``max_length`` vectors (zeros if empty), non-empty."""
        recent = item_vectors[:, -self.max_length :]
        queries = tf.math.l2_normalize(tf.reduce_sum(recent, axis=1), axis=-1)
        return queries, recent.row_lengths() > 0

    def _from_ids(self, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Queries, non-empty rows, unknown counts and catalogue indices (-1: none) of IDs."""
        index = self.id_to_index.lookup(history)
        known = index >= 0
        unknown = tf.reduce_sum(
            tf.cast(tf.logical_and(tf.not_equal(history, ""), tf.logical_not(known)), tf.int32),
            axis=1,
        )
        vectors = tf.ragged.map_flat_values(
            tf.gather, self.item_vectors, tf.ragged.boolean_mask(index, known)
        )
        queries, has_items = self._pool(vectors)
        return queries, has_items, unknown, index

    def _checked_k(self, k: tf.Tensor) -> tf.Tensor:
        checks = [
            tf.debugging.assert_greater_equal(k, 1, message="k must be at least 1", summarize=1),
            tf.debugging.assert_less_equal(
                k, self.num_items, message=f"k must be at most {self.num_items}", summarize=1
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(k)

    def _top_k(
        self, queries: tf.Tensor, has_items: tf.Tensor, k: tf.Tensor, excluded: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """Top-k without the ``excluded`` items ([B, items] mask); empty rows masked."""
        k = self._checked_k(k)
        scores = tf.matmul(queries, self.item_vectors, transpose_b=True)
        scores = tf.where(excluded, tf.constant(-np.inf, scores.dtype), scores)
        top = tf.math.top_k(scores, k=k)
        rows = has_items[:, tf.newaxis]
        return {
            ITEM_IDS.alias: tf.where(rows, tf.gather(self.item_ids, top.indices), ""),
            SCORES.alias: tf.where(rows, top.values, tf.constant(-np.inf, scores.dtype)),
            ITEM_TEXTS.alias: tf.where(rows, tf.gather(self.item_texts, top.indices), ""),
        }

    @tf.function(input_signature=SIGNATURES[SERVING_DEFAULT].input_signature())
    def recommend(
        self,
        history: tf.Tensor,
        k: tf.Tensor = _DEFAULT_K,
        exclude_history: tf.Tensor = _DEFAULT_EXCLUDE,
    ) -> dict[str, tf.Tensor]:
        """Top-k items for histories of item IDs."""
        queries, has_items, unknown, index = self._from_ids(history)
        in_history = tf.reduce_any(
            tf.equal(index[:, :, tf.newaxis], tf.range(self.num_items)), axis=1
        )
        excluded = tf.logical_and(in_history, exclude_history)
        return {**self._top_k(queries, has_items, k, excluded), UNKNOWN_ITEMS.alias: unknown}

    @tf.function(input_signature=SIGNATURES[ENCODE_SEQUENCE].input_signature())
    def encode_sequence(self, history: tf.Tensor) -> dict[str, tf.Tensor]:
        """Sequence vectors for histories of item IDs."""
        queries, _, unknown, _ = self._from_ids(history)
        return {SEQUENCE_VECTORS.alias: queries, UNKNOWN_ITEMS.alias: unknown}

    @tf.function(input_signature=SIGNATURES[ENCODE_ITEMS].input_signature())
    def encode_items(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        """Item vectors from item texts (strict UTF-8, as a tokenizer needs)."""
        checked = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="strict")
        return {ITEM_VECTORS.alias: self._embed(checked)}

    @tf.function(input_signature=SIGNATURES[RECOMMEND_FROM_TEXTS].input_signature())
    def recommend_from_texts(
        self, history_texts: tf.Tensor, k: tf.Tensor = _DEFAULT_K
    ) -> dict[str, tf.Tensor]:
        """Top-k items for histories given as item texts (invalid UTF-8 replaced)."""
        clean = tf.strings.unicode_transcode(history_texts, "UTF-8", "UTF-8", errors="replace")
        texts = tf.ragged.boolean_mask(clean, tf.not_equal(clean, ""))
        queries, has_items = self._pool(tf.ragged.map_flat_values(self._embed, texts))
        excluded = tf.zeros([tf.shape(clean)[0], self.num_items], tf.bool)
        return self._top_k(queries, has_items, k, excluded)


def toy_warmup_request(model_name: str = "toy") -> predict_pb2.PredictRequest:
    """A valid ``serving_default`` request for the toy model."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = SERVING_DEFAULT
    request.inputs[HISTORY.alias].CopyFrom(
        tf.make_tensor_proto([[TOY_ITEM_IDS[0], TOY_ITEM_IDS[1]]], dtype=HISTORY.dtype)
    )
    request.inputs[TOP_K.alias].CopyFrom(tf.make_tensor_proto(3, dtype=TOP_K.dtype))
    return request


def write_toy_saved_model(
    base_path: str,
    version: int = 1,
    *,
    seed: int = 7,
    item_ids: Sequence[str] = TOY_ITEM_IDS,
    item_texts: Sequence[str] = TOY_ITEM_TEXTS,
    warmup: bool | Sequence[predict_pb2.PredictRequest] = True,
) -> str:
    """Writes the toy model to ``base_path/<version>`` atomically; returns that directory.

    ``warmup``: True writes one valid warm-up request, a sequence writes those requests.
    """
    module = ToyRecommender(item_ids, item_texts, seed=seed)
    final = os.path.join(base_path, str(version))
    with staged_directory(final) as staging:
        tf.saved_model.save(module, str(staging), signatures=module.signatures())
        if warmup:
            requests = [toy_warmup_request()] if warmup is True else list(warmup)
            write_warmup_file(str(staging), requests)
    return final
