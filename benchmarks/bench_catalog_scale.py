"""Catalogue scale: what a training step, an evaluation pass and a served request cost.

    python benchmarks/bench_catalog_scale.py [--sizes 4385 100000 1000000]
        [--parts train eval serve serve-partitioned] [--work benchmarks/work/catalog] [--report]

Synthetic catalogues of the given sizes with 384-d text vectors (random, the size of MiniLM's)
and Scientific-like histories (lengths drawn from Scientific's training histories, items by a
Zipf law over the catalogue), the official inductive model (hidden 300, 8 experts) at batch
2048, on whatever cores the machine has. Every measurement runs in a process of its own, so its
peak memory (`ru_maxrss`) is its own; a process the kernel kills for memory is reported as such:

- train: seconds per training step and peak memory, `--negatives full` (the paper's softmax
  over the whole catalogue) and `--negatives sampled --num-negatives 1024`;
- eval: a full-ranking pass over 10,000 users (`tf_unisrec.evaluate.Evaluator`, chunked);
- serve: the SavedModel's size, the server's resident memory after the load, and gRPC
  `serving_default` p50/p99 at concurrency 1 and 8 through `python -m export.serve`;
- serve-partitioned: the same with `--index partitioned` (default partitions), and the recall
  of its top 10 against the exact top 10 of the same requests. Random text vectors have no
  cluster structure, the worst case for a partitioned index; `bench_index.py` measures it on
  a real catalogue.

Finished measurements are kept in WORK/measurements.json and reused (`--report` only
tabulates them). Prints a table and writes benchmarks/results/catalog_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_pipeline.fileio import atomic_write_json  # noqa: E402

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TEXT_DIM = 384
BATCH = 2048
NEGATIVES = 1024
EVAL_USERS = 10_000
TIMED_STEPS = 5
WARMUP_STEPS = 2
PARTS = ("train", "eval", "serve", "serve-partitioned")
SCIENTIFIC = REPO.parent / "shared" / "data" / "Scientific" / "Scientific.train.inter"


def history_lengths(count: int, seed: int) -> np.ndarray:
    """History lengths drawn from Scientific's training rows (capped at 50)."""
    if SCIENTIFIC.is_file():
        with SCIENTIFIC.open() as f:
            next(f)
            observed = np.array([len(line.split("\t")[1].split()) for line in f])
    else:  # the shape of Scientific's: mostly short, a long tail
        observed = np.minimum(np.random.default_rng(0).geometric(1 / 7.0, 34_101), 50)
    return np.random.default_rng(seed).choice(observed, size=count)


def zipf_items(count: int, num_items: int, seed: int) -> np.ndarray:
    """Item indices 1..num_items with Zipf-like popularity (exponent 1.1), shuffled ranks."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_items + 1) ** 1.1
    ranks = rng.choice(num_items, size=count, p=weights / weights.sum())
    return rng.permutation(num_items)[ranks] + 1


def synthetic_batch(num_items: int, seed: int) -> dict[str, np.ndarray]:
    lengths = history_lengths(BATCH, seed)
    items = zipf_items(int(lengths.sum()) + BATCH, num_items, seed)
    history = np.zeros((BATCH, int(lengths.max())), np.int32)
    offset = 0
    for row, length in enumerate(lengths):
        history[row, :length] = items[offset : offset + length]
        offset += length
    seed_rows = np.tile(np.array([[seed, 1]], np.int64), (BATCH, 1))
    return {
        "history": history,
        "length": lengths.astype(np.int32),
        "target": items[offset : offset + BATCH].astype(np.int32),
        "seed": seed_rows,
    }


def features(num_items: int) -> np.ndarray:
    table = np.random.default_rng(1).normal(size=(num_items + 1, TEXT_DIM)).astype(np.float32)
    table[0] = 0
    return table


def config(negatives: str = "full", **overrides):
    from tf_unisrec.config import TrainConfig

    return TrainConfig(
        stage="inductive", negatives=negatives, num_negatives=NEGATIVES, batch_size=BATCH,
        **overrides,
    )  # fmt: skip


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure_train(num_items: int, negatives: str) -> dict:
    import tensorflow as tf

    from tf_unisrec.builder import build_model_from_tables
    from tf_unisrec.train import make_train_step

    model = build_model_from_tables(config(negatives), num_items, features(num_items))
    if negatives != "full":
        model.set_sampling(np.bincount(zipf_items(200_000, num_items, 9), minlength=num_items + 1))
    optimizer = tf.keras.optimizers.Adam(1e-3, epsilon=1e-8)
    strategy = tf.distribute.get_strategy()
    batches = [synthetic_batch(num_items, seed) for seed in range(WARMUP_STEPS + TIMED_STEPS)]
    spec = {
        key: tf.TensorSpec([None] * value.ndim, tf.as_dtype(value.dtype))
        for key, value in batches[0].items()
    }
    step = make_train_step(model, optimizer, strategy, spec)
    for batch in batches[:WARMUP_STEPS]:
        float(step(batch))
    start = time.perf_counter()
    for batch in batches[WARMUP_STEPS:]:
        float(step(batch))
    return {"seconds_per_step": (time.perf_counter() - start) / TIMED_STEPS}


def synthetic_dataset(folder: pathlib.Path, num_items: int) -> pathlib.Path:
    """A dataset folder (10,000 test users) whose text features are random 384-d vectors."""
    from data_pipeline import dataset
    from data_pipeline.dataset import DatasetDir
    from data_pipeline.fileio import sha256_file, staged_directory
    from data_pipeline.text.bert_folder import DEFAULT_ENCODER_NAME, default_encoder_path

    if (folder / dataset.MANIFEST).is_file():
        return folder
    lengths = history_lengths(EVAL_USERS, 5)
    items = zipf_items(int(lengths.sum()) + EVAL_USERS, num_items, 5)
    examples, offset = [], 0
    for user, length in enumerate(lengths):
        history = items[offset : offset + length].tolist()
        examples.append((history, int(items[offset + length]), user, 0))
        offset += length + 1
    with staged_directory(folder, replace=True) as staging:
        files = {
            split: dataset.write_split(staging, split, examples, 4) for split in dataset.SPLITS
        }
        table = staging / dataset.ITEM_TABLE
        dataset.write_item_table(
            table, ((0, f"I{i}", f"item {i}") for i in range(1, num_items + 1))
        )
        manifest = {
            "format_version": dataset.FORMAT_VERSION, "name": f"synthetic-{num_items}",
            "items": num_items, "users": EVAL_USERS, "max_seq_len": 50,
            "splits": {split: EVAL_USERS for split in dataset.SPLITS},
            "schema": dataset.RECORD_SCHEMA, "files": files,
            "item_table": {"path": table.name, "sha256": sha256_file(table)},
        }  # fmt: skip
        dataset.write_manifest(staging, manifest)
        encoder = default_encoder_path()
        table = features(num_items)
        DatasetDir.open(staging).write_text_features(
            {
                "encoder": DEFAULT_ENCODER_NAME,
                "encoder_path": str(encoder),
                "pooling": "mean",
                "max_length": 512,
                "dim": TEXT_DIM,
                "weights_sha256": sha256_file(encoder / "model.safetensors"),
            },  # fmt: skip
            {"default": table, "word_drop": table},
        )
    return folder


def measure_eval(num_items: int, work: pathlib.Path) -> dict:
    from data_pipeline.dataset import DatasetDir
    from tf_unisrec.builder import build_model
    from tf_unisrec.evaluate import Evaluator

    data = synthetic_dataset(work / f"data-{num_items}", num_items)
    settings = config()
    dataset = DatasetDir.open(data)
    model = build_model(settings, dataset)
    evaluator = Evaluator(
        model, dataset, ks=settings.eval_ks, batch_size=settings.eval_batch_size,
        max_length=settings.max_length, chunk_size=settings.eval_chunk_size,
    )  # fmt: skip
    start = time.perf_counter()
    metrics = evaluator("test")
    return {"seconds_per_10k_users": time.perf_counter() - start, "recall@10": metrics["recall@10"]}


def measure_serve(num_items: int, work: pathlib.Path, index: str = "exact") -> dict:
    import tensorflow as tf
    from bench_serving import run_load

    from data_pipeline.dataset import DatasetDir
    from export.client import ServingClient
    from export.contract import HISTORY
    from export.saved_model import export_saved_model
    from export.server_process import ModelServerProcess
    from tf_unisrec.builder import build_model
    from tf_unisrec.run_dir import RunDir

    data = synthetic_dataset(work / f"data-{num_items}", num_items)
    run = RunDir(work / f"run-{num_items}")
    if not run.best.is_dir():
        settings = config(data=str(data), output=str(run.path))
        run.write_config(settings)
        run.best_manager(build_model(settings, DatasetDir.open(data))).save(checkpoint_number=1)
    name = "serving" if index == "exact" else f"serving-{index}"
    base = work / f"{name}-{num_items}" / "unisrec"
    if not (base / "1" / "saved_model.pb").is_file():
        start = time.perf_counter()
        export_saved_model(run.path, base, version=1, index=index)
        (base.parent / "export_seconds").write_text(f"{time.perf_counter() - start:.1f}")
    size = sum(p.stat().st_size for p in (base / "1").rglob("*") if p.is_file())
    server = ModelServerProcess.create(
        "export.serve", str(base), "unisrec", str(work / f"server-{num_items}.log")
    ).start(timeout=900)
    try:
        histories = []
        for record in tf.data.TFRecordDataset(DatasetDir.open(data).split_files("test")).take(256):
            history = tf.train.Example.FromString(record.numpy()).features.feature["history"]
            histories.append([f"I{i}" for i in history.int64_list.value])
        with ServingClient(server.address, "unisrec", timeout=30.0) as client:
            requests = [client.predict_request({HISTORY.alias: np.array([h], dtype=object)})
                        for h in histories]  # fmt: skip
            run_load(client, requests, 1, 20)  # warm up
            load = {f"c{c}": run_load(client, requests, c, 200) for c in (1, 8)}
            server_gb = server.resident_bytes() / 2**30
            answers = [client.predict({HISTORY.alias: np.array([h], dtype=object)})
                       for h in histories] if index != "exact" else []  # fmt: skip
    finally:
        server.stop()
    result = {"export_gb": size / 2**30, "server_gb": server_gb, **load}
    seconds = base.parent / "export_seconds"
    if seconds.is_file():
        result["export_s"] = float(seconds.read_text())
    if answers:
        result.update(recall_against_exact(base / "1", histories, answers))
    return result


def recall_against_exact(export: pathlib.Path, histories: list, answers: list) -> dict:
    """Recall@10 of served answers against the exact top 10 over the index's own vectors."""
    import tensorflow as tf

    from export.contract import HISTORY, ITEM_IDS, SEQUENCE_VECTORS

    model = tf.saved_model.load(str(export))
    encode = model.signatures["encode_sequence"]
    queries = np.concatenate([
        encode(**{HISTORY.alias: tf.constant([h])})[SEQUENCE_VECTORS.alias].numpy()
        for h in histories
    ])  # fmt: skip
    candidates = model.index._candidates.numpy()
    identifiers = model.index._identifiers.numpy()
    hits = []
    for query, answer in zip(queries, answers, strict=True):
        exact = identifiers[np.argsort(-(candidates @ query), kind="stable")[:10]]
        hits.append(len(set(exact) & set(answer.outputs[ITEM_IDS.alias][0])) / 10)
    return {
        "recall_at_10_vs_exact": float(np.mean(hits)),
        "partitions": int(model.index._centroids.shape[0]),
    }


def measure(args: argparse.Namespace) -> None:
    """One measurement in this process; prints its JSON as the last line."""
    work = pathlib.Path(args.work)
    if args.measure == "train":
        result = measure_train(args.size, args.negatives)
    elif args.measure == "eval":
        result = measure_eval(args.size, work)
    elif args.measure == "serve":
        result = measure_serve(args.size, work)
    else:
        result = measure_serve(args.size, work, index="partitioned")
    print(json.dumps({**result, "peak_gb": peak_gb()}))


def run_measurement(work: pathlib.Path, part: str, size: int, negatives: str = "") -> dict:
    command = [sys.executable, __file__, "--measure", part, "--size", str(size),
               "--work", str(work)] + (["--negatives", negatives] if negatives else [])  # fmt: skip
    print("$ " + " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        killed = done.returncode in (-9, 137)
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"failed": "killed (out of memory)" if killed else " | ".join(tail)}
    return {
        **json.loads(done.stdout.strip().splitlines()[-1]),
        "wall_s": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[4385, 100_000, 1_000_000])
    parser.add_argument("--parts", nargs="+", default=list(PARTS))
    parser.add_argument("--work", default=str(REPO / "benchmarks" / "work" / "catalog"))
    parser.add_argument("--report", action="store_true", help="tabulate kept measurements only")
    parser.add_argument("--measure", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--negatives", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args)
        return

    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    kept_path = work / "measurements.json"
    kept = json.loads(kept_path.read_text()) if kept_path.is_file() else {}
    plan = [("train", n, mode) for n in args.sizes for mode in ("full", "sampled")]
    plan += [(part, n, "") for part in PARTS[1:] for n in args.sizes]
    for part, size, mode in plan:
        key = f"{part}/{size}" + (f"/{mode}" if mode else "")
        if part not in args.parts or key in kept or args.report:
            continue
        kept[key] = run_measurement(work, part, size, mode)
        atomic_write_json(kept_path, kept)

    def cell(key: str, field: str, fmt: str) -> str:
        value = kept.get(key, {})
        if "failed" in value:
            return value["failed"].split(" (")[0]
        return format(value[field], fmt) if field in value else "-"

    header = ["items", "step full s", "GB", "step sampled s", "GB", "eval 10k s", "GB",
              "export GB", "server GB", "p50 c1 ms", "p99 c1 ms",
              "p50 c8 ms", "p99 c8 ms"]  # fmt: skip
    rows = []
    for n in args.sizes:
        serve = kept.get(f"serve/{n}", {})
        rows.append([
            f"{n:,}",
            cell(f"train/{n}/full", "seconds_per_step", ".2f"),
            cell(f"train/{n}/full", "peak_gb", ".1f"),
            cell(f"train/{n}/sampled", "seconds_per_step", ".2f"),
            cell(f"train/{n}/sampled", "peak_gb", ".1f"),
            cell(f"eval/{n}", "seconds_per_10k_users", ".1f"),
            cell(f"eval/{n}", "peak_gb", ".1f"),
            cell(f"serve/{n}", "export_gb", ".2f"),
            cell(f"serve/{n}", "server_gb", ".2f"),
            *(format(serve[c][q], ".1f") if c in serve else "-"
              for c in ("c1", "c8") for q in ("p50_ms", "p99_ms")),
        ])  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    partitioned = [
        [f"{n:,}", str(m.get("partitions", "-")), format(m["recall_at_10_vs_exact"], ".3f"),
         format(m["export_s"], ".0f") if "export_s" in m else "-", format(m["export_gb"], ".2f"),
         format(m["server_gb"], ".2f") if "server_gb" in m else "-",
         *(format(m[c][q], ".1f") for c in ("c1", "c8") for q in ("p50_ms", "p99_ms"))]
        for n in args.sizes
        if "recall_at_10_vs_exact" in (m := kept.get(f"serve-partitioned/{n}", {}))
    ]  # fmt: skip
    if partitioned:
        header = ["items", "partitions", "recall@10 vs exact", "export s", "export GB",
                  "server GB", "p50 c1 ms", "p99 c1 ms", "p50 c8 ms", "p99 c8 ms"]  # fmt: skip
        widths = [max(len(r[i]) for r in [header, *partitioned]) for i in range(len(header))]
        print("\n--index partitioned (searching 1/16 of the partitions)")
        for row in [header, *partitioned]:
            print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    out = REPO / "benchmarks" / "results" / "catalog_scale.json"
    summary = {"cpus": os.cpu_count(), "batch": BATCH, "num_negatives": NEGATIVES,
               "measurements": kept}  # fmt: skip
    atomic_write_json(out, summary)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
