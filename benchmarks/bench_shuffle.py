"""How evenly a shuffled epoch mixes the domains of a multi-domain corpus.

    python benchmarks/bench_shuffle.py [--work benchmarks/work] [--pooling mean] [--parts 10]

Reads one shuffled epoch of Office2014 + Games (the pre-training corpus, built as
bench_scientific.py builds it) at batch 2048 twice: with the reader's default (the whole split
shuffled) and with a shuffle buffer of 100,000 examples. Prints, for each tenth of the epoch,
the share of Office2014 sequences in its batches, against their share of the whole corpus, and
writes benchmarks/results/shuffle.json.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_scientific import SHARED, dataset  # noqa: E402

from data_pipeline.dataset import DatasetDir  # noqa: E402
from data_pipeline.fileio import atomic_write_json  # noqa: E402
from data_pipeline.reader import make_dataset  # noqa: E402

BUFFER_EXAMPLES = 100_000
BATCH = 2048


def domain_of_each_example(data: DatasetDir, buffer_bytes: int) -> np.ndarray:
    """The domain of every example of one shuffled epoch, in the order the epoch yields them."""
    epoch = make_dataset(
        data, "train", batch_size=BATCH, shuffle=True, seed=0, shuffle_buffer_bytes=buffer_bytes
    )
    return np.concatenate([batch["domain"].numpy() for batch in epoch])


def first_domain_shares(domains: np.ndarray, parts: int) -> list[float]:
    """Share of domain 0 in each of `parts` consecutive parts of an epoch."""
    return [round(float((part == 0).mean()), 3) for part in np.array_split(domains, parts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=pathlib.Path, default=REPO / "benchmarks" / "work")
    parser.add_argument("--pooling", default="mean", choices=("cls", "mean"))
    parser.add_argument("--parts", type=int, default=10)
    parser.add_argument(
        "--output", type=pathlib.Path, default=REPO / "benchmarks" / "results" / "shuffle.json"
    )
    args = parser.parse_args()
    if args.parts < 1:
        parser.error("--parts must be at least 1")

    domains = [SHARED / "Office2014", SHARED / "Games"]
    corpus = dataset(args.work, "office+games", domains, args.pooling)
    data = DatasetDir.open(corpus)
    rows, size = data.split_rows("train"), data.split_bytes("train")
    whole = domain_of_each_example(data, size)
    window = domain_of_each_example(data, size * BUFFER_EXAMPLES // rows)
    office = float((whole == 0).mean())
    results = {
        "whole split (default)": first_domain_shares(whole, args.parts),
        f"buffer of {BUFFER_EXAMPLES:,} examples": first_domain_shares(window, args.parts),
    }

    print(f"Office2014 share of each tenth of an epoch ({rows:,} sequences, {office:.1%} of them)")
    print("| shuffle | " + " | ".join(str(i + 1) for i in range(args.parts)) + " |")
    print("| --- |" + " --- |" * args.parts)
    for name, shares in results.items():
        print(f"| {name} | " + " | ".join(f"{s:.1%}" for s in shares) + " |")
    atomic_write_json(
        args.output,
        {"corpus": corpus, "rows": rows, "bytes": size, "office_share": round(office, 4),
         "batch_size": BATCH, "parts": args.parts, "shares": results},
    )  # fmt: skip
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
