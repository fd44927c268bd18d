"""``python -m export.saved_model``: a trained run -> a SavedModel that TF-Serving loads as it is.

::

    python -m export.saved_model --run runs/sci --output models/unisrec [--version N]
        [--max-k 100] [--model-name unisrec] [--add-items ITEMS]
        [--index exact|partitioned [--partitions P] [--partitions-to-search S]]

writes

* ``BASE/<version>/``: the SavedModel (the signatures of :mod:`export.contract`, built in
  :mod:`export.signatures`), with ``assets/item_ids.txt`` (the ID lookup table) and
  ``assets.extra/tf_serving_warmup_requests`` (real requests from the test split, one or more
  per signature). The version is the next integer under ``BASE`` unless given; it is written
  to a hidden staging folder beside it and renamed into place, so a model server never sees a
  partial version, and a killed export leaves none (its staging folder is removed by the next
  export). An existing version is never overwritten.
* ``models.config`` next to ``BASE`` (a ``model_config_list``; entries for other model names
  are kept).

Serve it with ``tensorflow_model_server --port=8500 --model_config_file=DIR/models.config``
(the ``tensorflow/serving`` image) or ``python -m export.serve`` with the same flags.

There is no batching parameters file: TF-Serving's batching concatenates requests along
dimension 0, which the scalar ``k`` / ``exclude_history`` inputs and variable-length histories
do not allow, so leave ``--enable_batching`` off (every request is already a batch).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import sys
import tempfile
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from data_pipeline.dataset import DatasetDir
from data_pipeline.encode_text import encode_texts
from data_pipeline.errors import DataError
from data_pipeline.fileio import (
    STAGING_MARK,
    atomic_write,
    out_of_space,
    remove_stale_staging,
    staged_directory,
)
from data_pipeline.sources.items import read_item_table as read_item_source
from data_pipeline.text.encoder import TextEncoder
from export.client import string_matrix
from export.contract import (
    ENCODE_ITEMS,
    ENCODE_SEQUENCE,
    EXCLUDE_HISTORY,
    HISTORY,
    HISTORY_TEXTS,
    RECOMMEND_FROM_TEXTS,
    SERVING_DEFAULT,
    SIGNATURES,
    TEXTS,
    TOP_K,
    WARMUP_FILE,
    Tensor,
)
from export.signatures import (
    DEFAULT_INDEX,
    INDEXES,
    ITEM_CHUNK,
    UniSRecServingModule,
    write_item_ids_file,
)
from tf_unisrec.config import TrainConfig
from tf_unisrec.layers.partitioned_index import PARTITIONS_PER_SQRT_ITEMS, SEARCH_FRACTION
from tf_unisrec.model import UniSRec
from tf_unisrec.run_dir import RunDir, RunError

DEFAULT_MAX_K = 100
DEFAULT_MODEL_NAME = "unisrec"
MODELS_CONFIG = "models.config"
ITEM_IDS_ASSET = "item_ids.txt"
WARMUP_HISTORIES = 4

_VERSION = re.compile(r"^[0-9]+$")
_STAGED_VERSION = re.compile(rf"^\.([0-9]+){re.escape(STAGING_MARK)}")


class ExportError(Exception):
    """An export that could not be written: the message says what was kept."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Where an export went."""

    path: str
    version: int
    models_config: str
    signatures: tuple[str, ...]
    index: str


def load_trained_model(run_dir: str | os.PathLike) -> tuple[TrainConfig, DatasetDir, UniSRec]:
    """The run's config, its dataset and the model with the run's best weights (strict)."""
    return RunDir(run_dir).load_model(strict=True)


def load_text_encoder(info: DatasetDir) -> TextEncoder:
    """The text encoder that wrote the dataset's text features (same weights, pooling, length).

    Raises:
        ValueError: the dataset has no text features, or the encoder's weights differ from
            those recorded in the manifest.
    """
    meta = info.text_features_meta
    if meta is None:
        raise ValueError(f"{info.path} has no text features; a text model needs them")
    encoder = TextEncoder(
        meta["encoder_path"], pooling=meta["pooling"], max_length=int(meta["max_length"])
    )
    recorded = meta.get("weights_sha256")
    if recorded and encoder.weights_sha256() != recorded:
        raise ValueError(
            f"text encoder weights at {meta['encoder_path']} differ from those that wrote "
            f"{info.path}'s text features"
        )
    if encoder.dim != int(meta["dim"]):
        raise ValueError(f"text encoder has dim {encoder.dim}, text features {meta['dim']}")
    return encoder


def next_version(base_path: str) -> int:
    """One more than the highest integer version directory under ``base_path`` (or 1)."""
    if not os.path.isdir(base_path):
        return 1
    versions = [int(name) for name in os.listdir(base_path) if _VERSION.match(name)]
    return max(versions, default=0) + 1


def histories_from_split(info: DatasetDir, count: int) -> list[list[str]]:
    """The first ``count`` histories of the test split, as original item IDs."""
    feature = {"history": tf.io.VarLenFeature(tf.int64)}
    histories = []
    for record in tf.data.TFRecordDataset(info.split_files("test")).take(count):
        parsed = tf.io.parse_single_example(record, feature)
        indices = tf.sparse.to_dense(parsed["history"]).numpy()
        histories.append([str(info.item_ids[i]) for i in indices if i > 0])
    return histories


def warmup_requests(
    info: DatasetDir, model_name: str, signatures: Sequence[str], max_k: int
) -> list[predict_pb2.PredictRequest]:
    """Real requests for every exported signature, built from test histories."""
    histories = histories_from_split(info, WARMUP_HISTORIES)
    index_of = {str(item_id): i for i, item_id in enumerate(info.item_ids)}
    history_texts = [[str(info.texts[index_of[i]]) for i in h] for h in histories]
    ids = string_matrix(histories)
    k = min(max_k, info.num_items)

    def request(signature: str, *inputs: tuple[Tensor, object]) -> predict_pb2.PredictRequest:
        message = predict_pb2.PredictRequest()
        message.model_spec.name = model_name
        message.model_spec.signature_name = signature
        for tensor, value in inputs:
            SIGNATURES[signature].input(tensor.alias)  # KeyError if not an input of signature
            message.inputs[tensor.alias].CopyFrom(tf.make_tensor_proto(value, tensor.dtype))
        return message

    requests = [
        request(SERVING_DEFAULT, (HISTORY, ids)),
        request(SERVING_DEFAULT, (HISTORY, ids[:1]), (TOP_K, k), (EXCLUDE_HISTORY, True)),
        request(ENCODE_SEQUENCE, (HISTORY, ids)),
    ]
    if ENCODE_ITEMS in signatures:
        texts = np.array([t.encode("utf-8") for row in history_texts for t in row], dtype=object)
        requests.append(request(ENCODE_ITEMS, (TEXTS, texts)))
    if RECOMMEND_FROM_TEXTS in signatures:
        requests.append(
            request(RECOMMEND_FROM_TEXTS, (HISTORY_TEXTS, string_matrix(history_texts)))
        )
    return requests


def write_warmup_file(export_dir: str, requests: Sequence[predict_pb2.PredictRequest]) -> str:
    """Writes ``assets.extra/tf_serving_warmup_requests`` (TFRecord of PredictionLog)."""
    path = os.path.join(export_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for message in requests:
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.CopyFrom(message)
            writer.write(log.SerializeToString())
    return path


def remove_stale_exports(base_path: str) -> None:
    """Removes the staging folders of exports (of any version) that were killed."""
    if not os.path.isdir(base_path):
        return
    for version in {m[1] for m in map(_STAGED_VERSION.match, os.listdir(base_path)) if m}:
        remove_stale_staging(os.path.join(base_path, version))


def write_models_config(path: str, model_name: str, base_path: str) -> str:
    """Adds or replaces ``model_name`` in the ``model_config_list`` at ``path``."""
    config = model_server_config_pb2.ModelServerConfig()
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text_format.Parse(f.read(), config)
    models = config.model_config_list.config
    kept = [m for m in models if m.name != model_name]
    del models[:]
    models.extend(kept)
    entry = models.add()
    entry.name = model_name
    entry.base_path = os.path.abspath(base_path)
    entry.model_platform = "tensorflow"
    atomic_write(path, text_format.MessageToString(config))
    return path


def embed_new_items(
    path: str | os.PathLike, dataset: DatasetDir, model: UniSRec, text_encoder: TextEncoder
) -> tuple[list[str], list[str], tf.Tensor]:
    """IDs, texts and item-tower outputs of items the run never saw, from their text alone.

    Args:
        path: an item table as the data pipeline reads them (CSV, TSV or JSONL of item ID and
            text columns).
        dataset: the run's dataset, whose items the new ones must not repeat.
        model: the trained model; its frozen adaptor embeds the texts (a transductive model's
            ID part is zero for them: it was never trained).
        text_encoder: the encoder that wrote the dataset's text features.

    Raises:
        DataError: a malformed table, a duplicate ID, an empty text or an ID the catalogue
            already holds.
        ValueError: an ID-only model, which cannot embed text.
    """
    if not model.item_tower.uses_text:
        raise ValueError("an ID-only model (sasrec) has no text path: it cannot add items")
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError("item table not found", path)
    table = read_item_source(path)
    empty = [item for item, text in table.items() if not text]
    if empty:
        raise DataError(f"{len(empty)} new items have no text, e.g. {empty[0]!r}", path)
    known = set(str(i) for i in dataset.item_ids[1:])
    clashes = [item for item in table if item in known]
    if clashes:
        raise DataError(
            f"{len(clashes)} item IDs are already in the catalogue, e.g. {clashes[0]!r}", path
        )
    ids, texts = list(table), list(table.values())
    features = encode_texts(text_encoder, texts, progress=False)
    tower = model.item_tower
    inputs = [
        tower.text_vectors(features[start : start + ITEM_CHUNK], training=False)
        for start in range(0, len(features), ITEM_CHUNK)
    ]
    return ids, texts, tf.concat(inputs, axis=0)


def export_saved_model(
    run_dir: str | os.PathLike,
    base_path: str | os.PathLike,
    *,
    version: int | None = None,
    max_k: int = DEFAULT_MAX_K,
    model_name: str = DEFAULT_MODEL_NAME,
    add_items: str | os.PathLike | None = None,
    index: str = DEFAULT_INDEX,
    num_partitions: int | None = None,
    partitions_to_search: int | None = None,
) -> ExportResult:
    """Exports a run's best model to ``base_path/<version>`` (see the module docstring).

    Args:
        add_items: an item table of items to add to the run's catalogue (see
            `embed_new_items`); the previous versions are left as they are.
        index: the catalogue index, one of ``INDEXES``; ``num_partitions`` and
            ``partitions_to_search`` size a partitioned one (see
            ``tf_unisrec.layers.PartitionedIndex``).

    Raises:
        FileExistsError: the version already exists.
        ValueError: bad arguments, or a run that does not match its dataset.
        ExportError: no disk space left to write the version (nothing of it is kept).
        DataError: a bad `add_items` table.
    """
    if max_k < 1:
        raise ValueError(f"--max-k must be positive, got {max_k}")
    if version is not None and version < 1:
        raise ValueError(f"--version must be a positive integer, got {version}")
    if index != "partitioned" and (num_partitions or partitions_to_search):
        raise ValueError("--partitions and --partitions-to-search apply to --index partitioned")
    partition_flags = {
        "--partitions": num_partitions,
        "--partitions-to-search": partitions_to_search,
    }
    for flag, value in partition_flags.items():
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be positive, got {value}")
    base = os.path.abspath(os.fspath(base_path))
    version = next_version(base) if version is None else version
    final = os.path.join(base, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} already exists")

    _, info, model = load_trained_model(run_dir)
    text_encoder = load_text_encoder(info) if model.item_tower.uses_text else None
    item_ids = [str(i) for i in info.item_ids]
    item_texts = [str(t) for t in info.texts]
    added_inputs = None
    if add_items is not None:
        if text_encoder is None:
            raise ValueError("an ID-only model (sasrec) has no text path: it cannot add items")
        new_ids, new_texts, added_inputs = embed_new_items(add_items, info, model, text_encoder)
        item_ids += new_ids
        item_texts += new_texts
    remove_stale_exports(base)
    models_config = os.path.join(os.path.dirname(base), MODELS_CONFIG)
    try:
        # tf.saved_model.save copies the ID file into assets/, so the original lives outside
        # the version folder and is gone with the temporary folder.
        with tempfile.TemporaryDirectory() as scratch, staged_directory(final) as staging:
            module = UniSRecServingModule(
                model,
                item_ids,
                item_texts,
                write_item_ids_file(item_ids, os.path.join(scratch, ITEM_IDS_ASSET)),
                max_k=max_k,
                text_encoder=text_encoder,
                added_item_inputs=added_inputs,
                index=index,
                num_partitions=num_partitions,
                partitions_to_search=partitions_to_search,
            )
            signatures = module.signatures()
            tf.saved_model.save(module, str(staging), signatures=signatures)
            requests = warmup_requests(info, model_name, list(signatures), max_k)
            write_warmup_file(str(staging), requests)
        write_models_config(models_config, model_name, base)
    except (OSError, tf.errors.OpError) as error:
        reason = out_of_space(error)
        if reason is None:
            raise
        raise ExportError(out_of_space_message(base, final, models_config, reason)) from None
    return ExportResult(
        final, version, models_config, tuple(sorted(signatures)), describe_index(module.index)
    )


def describe_index(index) -> str:
    """The catalogue index in words, e.g. ``partitioned: 4000 partitions, 250 searched``."""
    if index.is_exact():
        return "exact"
    return (
        f"partitioned: {index.num_partitions} partitions, "
        f"{index.partitions_to_search} searched per query"
    )


def out_of_space_message(base: str, final: str, models_config: str, reason: str) -> str:
    """What an export that ran out of disk space kept: staging folders are already removed."""
    if os.path.isdir(final):  # the version was renamed into place; models.config failed
        return (
            f"out of disk space writing {models_config} ({reason}); the new version {final} "
            f"is complete and {MODELS_CONFIG} is unchanged: free space and export again with "
            "a new --version, or add the model to models.config yourself"
        )
    kept = [str(v) for v in sorted(int(n) for n in os.listdir(base) if _VERSION.match(n))]
    earlier = (
        f"the earlier version{'s' if len(kept) > 1 else ''} {', '.join(kept)} under {base} "
        f"{'are' if len(kept) > 1 else 'is'} intact"
        if kept
        else f"{base} holds no version"
    )
    return (
        f"out of disk space writing {final} ({reason}); nothing of it was kept and {earlier}: "
        "free space and export again"
    )


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.saved_model",
        description="Export a trained UniSRec run as a TF-Serving SavedModel.",
    )
    parser.add_argument("--run", required=True, help="run directory (config.yaml, best/)")
    parser.add_argument("--output", required=True, help="model base path (integer versions)")
    parser.add_argument("--version", type=int, help="version number (default: the next one)")
    parser.add_argument(
        "--max-k", type=int, default=DEFAULT_MAX_K, help="largest k a request may ask for"
    )
    parser.add_argument(
        "--add-items",
        metavar="ITEMS",
        help="an item table (CSV, TSV or JSONL of item ID and text) of items the run never saw: "
        "they join the catalogue of the new version, embedded from their text",
    )
    parser.add_argument(
        "--model-name", default=DEFAULT_MODEL_NAME, help="model name in models.config"
    )
    parser.add_argument(
        "--index",
        choices=INDEXES,
        default=DEFAULT_INDEX,
        help="catalogue index: exact scores every item per request; partitioned clusters the "
        "catalogue and scores the partitions nearest the query (approximate, for catalogues "
        "too big to scan per request)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        help=f"partitions of a partitioned index (default {PARTITIONS_PER_SQRT_ITEMS} sqrt(items))",
    )
    parser.add_argument(
        "--partitions-to-search",
        type=int,
        help="partitions a partitioned index searches per query "
        f"(default partitions / {SEARCH_FRACTION})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    try:
        result = export_saved_model(
            args.run,
            args.output,
            version=args.version,
            max_k=args.max_k,
            model_name=args.model_name,
            add_items=args.add_items,
            index=args.index,
            num_partitions=args.partitions,
            partitions_to_search=args.partitions_to_search,
        )
    except (
        DataError,
        RunError,
        ExportError,
        FileNotFoundError,
        FileExistsError,
        ValueError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {result.path} (signatures: {', '.join(result.signatures)}; index: {result.index})"
    )
    print(f"wrote {result.models_config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
