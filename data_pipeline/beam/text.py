"""Item text features with Beam `RunInference`: the frozen text encoder as a SavedModel.

The encoder (`data_pipeline.text.TextEncoder`, raw strings -> vectors, tokenizer in the graph)
is saved once beside the dataset and loaded by every worker through `TextModelHandler`, which
imports `tensorflow_text` first so the tokenizer's ops are registered in worker processes too.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile
from collections.abc import Iterable, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
    RunInference,
)

from data_pipeline.beam.build import pipeline_options


class TextModelHandler(ModelHandler[str, PredictionResult, object]):
    """Batches of strings -> text vectors with a saved `TextEncoder`.

    Args:
        saved_model: the folder written by `tf.saved_model.save(encoder, ...)`.
        batch_size: the most texts per forward pass.
    """

    def __init__(self, saved_model: str, batch_size: int = 64):
        self._saved_model = saved_model
        self._batch_size = batch_size

    def load_model(self):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer's ops in this worker)

        return tf.saved_model.load(self._saved_model)

    def run_inference(
        self, batch: Sequence[str], model, inference_args: dict | None = None
    ) -> Iterable[PredictionResult]:
        import tensorflow as tf

        vectors = model(tf.constant(list(batch), tf.string)).numpy()
        return [PredictionResult(text, vector) for text, vector in zip(batch, vectors, strict=True)]

    def batch_elements_kwargs(self) -> dict:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}


def encode_texts(
    encoder,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    progress: bool = True,
    beam_args: Sequence[str] = (),
    scratch: str | pathlib.Path | None = None,
) -> np.ndarray:
    """`encode_text.encode_texts` as a Beam pipeline; the same vectors to float round-off.

    Args:
        encoder: a `data_pipeline.text.TextEncoder`.
        texts: the texts.
        batch_size: the most texts per forward pass.
        progress: unused (the runner reports progress).
        beam_args: Beam pipeline options.
        scratch: where the SavedModel and the results go while the pipeline runs (workers must
            reach it); a temporary folder by default.

    Returns:
        float32 [len(texts), encoder.dim], in the order of `texts`.
    """
    import tensorflow as tf

    work = pathlib.Path(tempfile.mkdtemp(prefix=".text-encoder-", dir=scratch))
    try:
        saved_model = work / "encoder"
        tf.saved_model.save(encoder, str(saved_model))
        handler = KeyedModelHandler(TextModelHandler(str(saved_model), batch_size))
        with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
            _ = (
                pipeline
                | "Texts" >> beam.Create(list(enumerate(texts)))
                | "Encode" >> RunInference(handler)
                | "Rows" >> beam.Map(lambda kv: json.dumps([kv[0], kv[1].inference.tolist()]))
                | "Write" >> beam.io.WriteToText(str(work / "vectors" / "part"), ".jsonl")
            )
        vectors = np.zeros((len(texts), encoder.dim), dtype=np.float32)
        seen = np.zeros(len(texts), dtype=bool)
        for path in sorted((work / "vectors").glob("part*.jsonl")):
            for line in path.read_text().splitlines():
                index, vector = json.loads(line)
                vectors[index] = vector
                seen[index] = True
        if not seen.all():
            raise RuntimeError(f"the encoding pipeline lost {int((~seen).sum())} texts")
        return vectors
    finally:
        shutil.rmtree(work, ignore_errors=True)
