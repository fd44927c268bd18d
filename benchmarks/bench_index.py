"""What a partitioned catalogue index costs in quality, on a real trained model.

    python benchmarks/bench_index.py [--run benchmarks/work/runs/inductive-pt7-s2020]
        [--partitions 66 265] [--fractions 0.03 0.0625 0.125]

For every test user of the run's dataset, the exact top 50 (TFRS `BruteForce`) against
`PartitionedIndex` with each number of partitions, searching each fraction of them (1/16 is the
export's default): recall@10 and @50 of the partitioned answers against the exact ones, test
Recall@10 and NDCG@10 of both against the users' true next items, and the p50 of a one-user
query. Prints a table and writes benchmarks/results/index.json.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_pipeline.fileio import atomic_write_json  # noqa: E402

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_RUN = REPO / "benchmarks" / "work" / "runs" / "inductive-pt7-s2020"
TIMED_QUERIES = 200


def quality(found: np.ndarray, targets: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Recall@k and NDCG@k of ranked item indices `[users, >= k]` against true targets."""
    hits = found[:, :k] == targets[:, None]
    ranks = np.argmax(hits, axis=1)
    hit = hits.any(axis=1)
    return float(hit.mean()), float(np.where(hit, 1.0 / np.log2(ranks + 2), 0.0).mean())


def overlap(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    return float(
        np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(found, exact, strict=True)])
    )


def query_p50_ms(index, queries) -> float:
    import tensorflow as tf

    search = tf.function(lambda q: index(q, k=10))
    search(queries[:1])
    times = []
    for i in range(TIMED_QUERIES):
        start = time.perf_counter()
        search(queries[i : i + 1])
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(DEFAULT_RUN), help="a trained run folder")
    parser.add_argument("--partitions", nargs="+", type=int, help="default: sqrt(N), 4 sqrt(N)")
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.03, 0.0625, 0.125])
    args = parser.parse_args()

    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from data_pipeline.errors import DataError
    from data_pipeline.reader import parse_batch
    from tf_unisrec.layers import PartitionedIndex
    from tf_unisrec.run_dir import RunDir, RunError

    try:
        config, info, model = RunDir(args.run).load_model(strict=True)
    except (RunError, DataError) as error:
        parser.error(f"--run: {error}")
    test = tf.data.TFRecordDataset(info.split_files("test")).batch(4096)
    batches = [parse_batch(b, config.max_length) for b in test]
    queries = tf.concat([model.sequence_vectors(b["history"], b["length"]) for b in batches], 0)
    targets = np.concatenate([b["target"].numpy() for b in batches])
    items = model.item_vectors()[1:]
    ids = tf.range(1, info.num_items + 1)
    exact_index = tfrs.layers.factorized_top_k.BruteForce(k=50)
    exact_index.index(items, identifiers=ids)
    exact = exact_index(queries)[1].numpy()
    rows = [{
        "index": "exact", "partitions": None, "searched": None,
        "recall@10_vs_exact": 1.0, "recall@50_vs_exact": 1.0,
        **dict(zip(("test_recall@10", "test_ndcg@10"), quality(exact, targets), strict=True)),
        "query_p50_ms": query_p50_ms(exact_index, queries),
    }]  # fmt: skip
    root = math.sqrt(info.num_items)
    for partitions in args.partitions or [round(root), round(4 * root)]:
        for fraction in args.fractions:
            searched = max(1, round(fraction * partitions))
            index = PartitionedIndex(
                k=50, num_partitions=partitions, partitions_to_search=searched
            ).index(items, identifiers=ids)
            found = index(queries)[1].numpy()
            recall, ndcg = quality(found, targets)
            rows.append({
                "index": "partitioned", "partitions": partitions, "searched": searched,
                "recall@10_vs_exact": overlap(found, exact, 10),
                "recall@50_vs_exact": overlap(found, exact, 50),
                "test_recall@10": recall, "test_ndcg@10": ndcg,
                "query_p50_ms": query_p50_ms(index, queries),
            })  # fmt: skip

    header = ["index", "partitions", "searched", "R@10 vs exact", "R@50 vs exact",
              "test Recall@10", "test NDCG@10", "query p50 ms"]  # fmt: skip
    table = [[
        r["index"], str(r["partitions"] or "-"), str(r["searched"] or "-"),
        f"{r['recall@10_vs_exact']:.3f}", f"{r['recall@50_vs_exact']:.3f}",
        f"{r['test_recall@10']:.4f}", f"{r['test_ndcg@10']:.4f}", f"{r['query_p50_ms']:.2f}",
    ] for r in rows]  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    print(f"{args.run}: {info.num_items:,} items, {len(targets):,} test users")
    for row in [header, *table]:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    out = REPO / "benchmarks" / "results" / "index.json"
    summary = {"run": str(args.run), "items": info.num_items, "users": len(targets), "rows": rows}
    atomic_write_json(out, summary)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
