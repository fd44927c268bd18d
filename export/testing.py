"""A small SavedModel with the serving signatures of the UniSRec export, and server helpers.

The toy model stands in for the real export in tests and in ``benchmarks/bench_serving.py``
(``--toy``). It has the same signature names, input aliases, dtypes and shapes:

* ``serving_default``: ``history`` string [B, T] (padding ``""``), ``k`` int32 scalar (default
  :data:`TOY_DEFAULT_K`) -> ``item_ids`` string [B, k], ``scores`` float32 [B, k],
  ``unknown_items`` int32 [B].
* ``encode_items``: ``texts`` string [N] -> ``vectors`` float32 [N, D]. Texts must be valid
  UTF-8 (INVALID_ARGUMENT otherwise), like a model that tokenizes them.
* ``recommend_from_texts``: ``history_texts`` string [B, T], ``k`` -> ``item_ids``, ``scores``,
  ``item_texts``. Invalid UTF-8 is replaced, never an error.
* ``encode_sequence``: ``history`` string [B, T] -> ``vectors`` float32 [B, D].

Item vectors are hashed bag-of-words embeddings of the item texts, so a history given as texts
and the same history given as IDs score the catalogue identically.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

TOY_DIM = 8
TOY_BUCKETS = 257
TOY_DEFAULT_K = 5
TOY_ITEM_IDS: tuple[str, ...] = tuple(f"item{i:02d}" for i in range(1, 21))
TOY_ITEM_TEXTS: tuple[str, ...] = tuple(
    f"{adjective} {noun} for the lab"
    for adjective in ("red", "blue", "steel", "glass")
    for noun in ("beaker", "flask", "pipette", "burner", "funnel")
)

_DEFAULT_K = tf.constant(TOY_DEFAULT_K, dtype=tf.int32)


class ToyRecommender(tf.Module):
    """Hashed bag-of-words item vectors, mean-pooled histories, exact top-k by dot product."""

    def __init__(
        self,
        item_ids: Sequence[str] = TOY_ITEM_IDS,
        item_texts: Sequence[str] = TOY_ITEM_TEXTS,
        seed: int = 7,
    ) -> None:
        super().__init__(name="toy_recommender")
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

    def _embed(self, texts: tf.Tensor) -> tf.Tensor:
        words = tf.strings.split(tf.strings.lower(texts))
        buckets = tf.strings.to_hash_bucket_fast(words, TOY_BUCKETS)
        vectors = tf.reduce_mean(tf.gather(self.word_embeddings, buckets), axis=1)
        vectors = tf.where(tf.math.is_nan(vectors), tf.zeros_like(vectors), vectors)
        return tf.math.l2_normalize(vectors, axis=-1)

    def _sequence_from_ids(self, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        index = self.id_to_index.lookup(history)
        present = tf.not_equal(history, "")
        known = tf.logical_and(present, index >= 0)
        unknown = tf.reduce_sum(
            tf.cast(tf.logical_and(present, tf.logical_not(known)), tf.int32), axis=1
        )
        vectors = tf.gather(self.item_vectors, tf.maximum(index, 0))
        weights = tf.cast(known, tf.float32)[..., tf.newaxis]
        return self._pool(vectors, weights), unknown

    @staticmethod
    def _pool(vectors: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        total = tf.reduce_sum(vectors * weights, axis=1)
        return tf.math.l2_normalize(total / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0), -1)

    def _top_k(self, queries: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = tf.matmul(queries, self.item_vectors, transpose_b=True)
        top = tf.math.top_k(scores, k=k)
        return {"item_ids": tf.gather(self.item_ids, top.indices), "scores": top.values}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.string, name="history"),
            tf.TensorSpec([], tf.int32, name="k"),
        ]
    )
    def recommend(self, history: tf.Tensor, k: tf.Tensor = _DEFAULT_K) -> dict[str, tf.Tensor]:
        """Top-k items for histories of item IDs; unknown IDs are skipped and counted."""
        queries, unknown = self._sequence_from_ids(history)
        return {**self._top_k(queries, k), "unknown_items": unknown}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
    def encode_items(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        """Item vectors from item texts (strict UTF-8)."""
        checked = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="strict")
        return {"vectors": self._embed(checked)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.string, name="history_texts"),
            tf.TensorSpec([], tf.int32, name="k"),
        ]
    )
    def recommend_from_texts(
        self, history_texts: tf.Tensor, k: tf.Tensor = _DEFAULT_K
    ) -> dict[str, tf.Tensor]:
        """Top-k items for histories given as item texts (inductive)."""
        clean = tf.strings.unicode_transcode(history_texts, "UTF-8", "UTF-8", errors="replace")
        flat = tf.reshape(clean, [-1])
        vectors = tf.reshape(self._embed(flat), tf.concat([tf.shape(clean), [TOY_DIM]], 0))
        weights = tf.cast(tf.not_equal(clean, ""), tf.float32)[..., tf.newaxis]
        result = self._top_k(self._pool(vectors, weights), k)
        index = self.id_to_index.lookup(result["item_ids"])
        result["item_texts"] = tf.gather(self.item_texts, index)
        return result

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="history")])
    def encode_sequence(self, history: tf.Tensor) -> dict[str, tf.Tensor]:
        """Sequence vectors for histories of item IDs."""
        queries, _ = self._sequence_from_ids(history)
        return {"vectors": queries}


def toy_warmup_request(model_name: str = "toy") -> predict_pb2.PredictRequest:
    """A valid ``serving_default`` request for the toy model."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = "serving_default"
    request.inputs["history"].CopyFrom(
        tf.make_tensor_proto([[TOY_ITEM_IDS[0], TOY_ITEM_IDS[1]]], dtype=tf.string)
    )
    request.inputs["k"].CopyFrom(tf.make_tensor_proto(3, dtype=tf.int32))
    return request


def write_warmup_requests(export_dir: str, requests: Sequence[predict_pb2.PredictRequest]) -> str:
    """Writes ``assets.extra/tf_serving_warmup_requests`` (TFRecord of PredictionLog)."""
    directory = os.path.join(export_dir, "assets.extra")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "tf_serving_warmup_requests")
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.CopyFrom(request)
            writer.write(log.SerializeToString())
    return path


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
    signatures = {
        "serving_default": module.recommend,
        "encode_items": module.encode_items,
        "recommend_from_texts": module.recommend_from_texts,
        "encode_sequence": module.encode_sequence,
    }
    os.makedirs(base_path, exist_ok=True)
    final = os.path.join(base_path, str(version))
    staging = tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=base_path)
    try:
        tf.saved_model.save(module, staging, signatures=signatures)
        if warmup:
            requests = [toy_warmup_request()] if warmup is True else list(warmup)
            write_warmup_requests(staging, requests)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ModelServerProcess:
    """A model server in a child process: ``python -m export.serve`` or the real binary.

    Both are started with the same ``tensorflow_model_server`` flags; :meth:`start` returns once
    the model has an available version, :meth:`stop` sends SIGTERM and returns the exit code.
    """

    def __init__(self, command: Sequence[str], address: str, model: str, log_path: str) -> None:
        self.command = list(command)
        self.address = address
        self.model = model
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(
        cls,
        kind: str,
        base_path: str,
        model: str,
        log_path: str,
        *,
        port: int | None = None,
        poll_wait_seconds: float = 1.0,
        extra_args: Sequence[str] = (),
    ) -> ModelServerProcess:
        """``kind`` is ``"export.serve"`` or a path to ``tensorflow_model_server``."""
        port = port or free_port()
        flags = [
            f"--port={port}",
            f"--model_name={model}",
            f"--model_base_path={os.path.abspath(base_path)}",
            f"--file_system_poll_wait_seconds={poll_wait_seconds:g}",
            *extra_args,
        ]
        if kind == "export.serve":
            command = [sys.executable, "-m", "export.serve", *flags]
        else:
            command = [kind, *flags]
        return cls(command, f"127.0.0.1:{port}", model, log_path)

    def start(self, timeout: float = 120.0) -> ModelServerProcess:
        """Starts the process and waits until the model is available."""
        from export.client import ServingClient, ServingClientError

        repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command, cwd=repo_root, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        with ServingClient(self.address, self.model, timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.command[0]} exited with {self.process.returncode}:\n{self.log()}"
                    )
                try:
                    client.wait_until_ready(timeout=1.0)
                    return self
                except ServingClientError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(
                            f"model server not ready after {timeout}s:\n{self.log()}"
                        ) from None

    def log(self) -> str:
        """The process's output so far."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
