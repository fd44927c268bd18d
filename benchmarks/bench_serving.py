"""gRPC serving benchmark: real requests to ``python -m export.serve``.

Starts the local model server on the base path of a UniSRec export (or uses ``--server``), sends
``serving_default`` requests built from real histories at concurrency 1 and 8, and times
``encode_items`` on real item texts. Prints a table and writes ``benchmarks/results/serving.json``.

Histories and texts come from one of:

* ``--data DIR``: a dataset folder written by ``data_pipeline.build`` (``manifest.json``,
  ``items.tsv`` and the split's TFRecord shards), or a RecBole atomic folder such as
  ``../shared/data/Scientific`` (``*.item2index``, ``*.<split>.inter``, ``*.text``);
* ``--histories FILE``: one history per line, item IDs separated by whitespace
  (``--texts FILE``: one item text per line, for ``encode_items``).

Example::

    python benchmarks/bench_serving.py --model_base_path runs/sci/serving/unisrec \\
        --model_name unisrec --data ../shared/data/Scientific
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import os
import pathlib
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data_pipeline.dataset import MANIFEST, DatasetDir  # noqa: E402
from export.client import ServingClient, string_matrix, string_vector  # noqa: E402
from export.contract import (  # noqa: E402
    DEFAULT_K,
    ENCODE_ITEMS,
    HISTORY,
    SERVING_DEFAULT,
    TEXTS,
    TOP_K,
)
from export.server_process import ModelServerProcess  # noqa: E402

TARGET_P50_MS_C1 = 10.0
TARGET_RPS_C8 = 300.0


def load_pipeline_dataset(data_dir: str, split: str) -> tuple[list[list[str]], list[str]]:
    """Histories (item ID strings) and item texts from a ``data_pipeline.build`` folder."""
    dataset = DatasetDir.open(data_dir)
    ids = dataset.item_ids
    texts = [str(t) for t in dataset.texts[1:] if t]
    feature = {"history": tf.io.VarLenFeature(tf.int64)}
    histories = []
    for record in tf.data.TFRecordDataset(dataset.split_files(split)):
        parsed = tf.io.parse_single_example(record, feature)
        indices = tf.sparse.to_dense(parsed["history"]).numpy()
        histories.append([str(ids[i]) for i in indices if i > 0])
    return histories, texts


def load_recbole_dataset(data_dir: str, split: str) -> tuple[list[list[str]], list[str]]:
    """Histories (ASINs) and item texts from RecBole atomic files (e.g. Scientific)."""

    def one(pattern: str) -> str:
        matches = sorted(glob.glob(os.path.join(data_dir, pattern)))
        if not matches:
            raise FileNotFoundError(f"no {pattern} in {data_dir}")
        return matches[0]

    index_to_id: dict[str, str] = {}
    with open(one("*.item2index"), encoding="utf-8") as f:
        for line in f:
            asin, index = line.rstrip("\n").split("\t")
            index_to_id[index] = asin
    histories = []
    with open(one(f"*.{split}.inter"), encoding="utf-8") as f:
        next(f)
        for line in f:
            fields = line.rstrip("\n").split("\t")
            histories.append([index_to_id[i] for i in fields[1].split() if i in index_to_id])
    texts = []
    with open(one("*.text"), encoding="utf-8") as f:
        next(f)
        for line in f:
            _, _, text = line.rstrip("\n").partition("\t")
            texts.append(text)
    return histories, texts


def load_histories(args: argparse.Namespace) -> tuple[list[list[str]], list[str], str]:
    """(histories, item texts, description of the source)."""
    if args.histories:
        with open(args.histories, encoding="utf-8") as f:
            histories = [line.split() for line in f if line.strip()]
        texts: list[str] = []
        if args.texts:
            with open(args.texts, encoding="utf-8") as f:
                texts = [line.rstrip("\n") for line in f if line.strip()]
        return histories, texts, f"histories file {args.histories}"
    if os.path.exists(os.path.join(args.data, MANIFEST)):
        histories, texts = load_pipeline_dataset(args.data, args.split)
    else:
        histories, texts = load_recbole_dataset(args.data, args.split)
    return histories, texts, f"{args.split} split of {args.data}"


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_load(
    client: ServingClient, requests: Sequence, concurrency: int, count: int
) -> dict[str, float]:
    """Sends ``count`` requests with ``concurrency`` threads; latency percentiles and req/s."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(count))

    def worker() -> None:
        nonlocal errors
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                client.predict_raw(requests[i % len(requests)])
            except Exception:
                with lock:
                    errors += 1
                continue
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed * 1000.0)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "requests": count,
        "errors": errors,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": float(np.mean(latencies)) if latencies else float("nan"),
        "requests_per_s": len(latencies) / wall,
    }


def bench_encode_items(
    client: ServingClient, texts: Sequence[str], batch_size: int, rounds: int
) -> dict[str, float]:
    """Latency of ``encode_items`` on batches of real texts, and its cost per item."""
    rng = random.Random(0)
    requests = [
        client.predict_request(
            {
                TEXTS.alias: tf.make_tensor_proto(
                    string_vector(rng.sample(list(texts), batch_size)), TEXTS.dtype
                )
            },
            ENCODE_ITEMS,
        )
        for _ in range(min(rounds, 20))
    ]
    client.predict_raw(requests[0], timeout=600)
    latencies = []
    for i in range(rounds):
        start = time.perf_counter()
        client.predict_raw(requests[i % len(requests)], timeout=600)
        latencies.append((time.perf_counter() - start) * 1000.0)
    p50 = percentile(latencies, 50)
    return {
        "batch_size": batch_size,
        "rounds": rounds,
        "p50_ms": p50,
        "p50_ms_per_item": p50 / batch_size,
        "items_per_s": batch_size / (p50 / 1000.0),
    }


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_base_path", help="SavedModel base path (integer versions)")
    source.add_argument("--server", help="use a running server at host:port")
    parser.add_argument("--model_name", default="unisrec")
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" / "Scientific"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--histories", help="file: one history of item IDs per line")
    parser.add_argument("--texts", help="file: one item text per line (for encode_items)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--k", type=int, default=DEFAULT_K)
    parser.add_argument("--max_len", type=int, default=50, help="keep the last N history items")
    parser.add_argument("--encode_batch_sizes", type=int, nargs="*", default=[1, 32])
    parser.add_argument("--encode_rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output",
        default=str(REPO_ROOT / "benchmarks" / "results" / "serving.json"),
        help="JSON path",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    histories, texts, source = load_histories(args)
    histories = [h[-args.max_len :] for h in histories if h]
    if not histories:
        print("error: no histories to send", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    rng.shuffle(histories)

    process = None
    workdir = tempfile.mkdtemp(prefix="bench_serving-")
    model_name = args.model_name
    base_path = args.model_base_path
    if args.server:
        address = args.server
    else:
        process = ModelServerProcess.create(
            "export.serve", base_path, model_name, os.path.join(workdir, "server.log")
        ).start(timeout=600)
        address = process.address
    k = args.k
    try:
        with ServingClient(address, model_name, timeout=60.0) as client:
            version = client.status()
            requests = [
                client.predict_request(
                    {
                        HISTORY.alias: tf.make_tensor_proto(string_matrix([h]), HISTORY.dtype),
                        TOP_K.alias: tf.make_tensor_proto(k, TOP_K.dtype),
                    },
                    SERVING_DEFAULT,
                )
                for h in histories[: args.requests]
            ]
            run_load(client, requests, 1, min(50, len(requests)))
            loads = [run_load(client, requests, c, args.requests) for c in args.concurrency]
            signatures = sorted(client.metadata())
            encodes = []
            if texts and ENCODE_ITEMS in signatures:
                encodes = [
                    bench_encode_items(client, texts, b, args.encode_rounds)
                    for b in args.encode_batch_sizes
                    if b <= len(texts)
                ]
    finally:
        if process is not None:
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"model {model_name} at {base_path or address}, {source}")
    print(f"{len(histories)} histories, k={k}, {os.cpu_count()} CPUs\n")
    print(f"{'concurrency':>11}  {'p50 ms':>8}  {'p90 ms':>8}  {'p99 ms':>8}  {'req/s':>8}  errors")
    for r in loads:
        print(
            f"{r['concurrency']:>11}  {r['p50_ms']:>8.2f}  {r['p90_ms']:>8.2f}  "
            f"{r['p99_ms']:>8.2f}  {r['requests_per_s']:>8.1f}  {r['errors']}"
        )
    if encodes:
        print(f"\n{'encode batch':>12}  {'p50 ms':>8}  {'ms/item':>8}  {'items/s':>8}")
        for e in encodes:
            print(
                f"{e['batch_size']:>12}  {e['p50_ms']:>8.2f}  {e['p50_ms_per_item']:>8.3f}  "
                f"{e['items_per_s']:>8.1f}"
            )
    by_c = {r["concurrency"]: r for r in loads}
    targets = {}
    if 1 in by_c:
        targets["p50_ms_at_c1_under_10"] = by_c[1]["p50_ms"] < TARGET_P50_MS_C1
    if 8 in by_c:
        targets["rps_at_c8_at_least_300"] = by_c[8]["requests_per_s"] >= TARGET_RPS_C8
    summary = ", ".join(f"{name}={'met' if ok else 'MISSED'}" for name, ok in targets.items())
    print(f"\ntargets: {summary}")

    result = {
        "benchmark": "serving",
        "server": "export.serve" if process is not None else address,
        "model_name": model_name,
        "model_base_path": base_path,
        "model_status": version,
        "signatures": signatures,
        "source": source,
        "histories": len(histories),
        "k": k,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
        },
        "load": loads,
        "encode_items": encodes,
        "targets": targets,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    output = args.output
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
