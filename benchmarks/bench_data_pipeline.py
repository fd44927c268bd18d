"""Data pipeline benchmark: Scientific build time and tf.data reader throughput.

    python benchmarks/bench_data_pipeline.py [--data ../shared/data/Scientific] [--json]

Targets (2 CPU cores): build < 30 s without text features; reader >= 50,000 examples/s over the
train split at batch 2048, with and without augmentation.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_pipeline.build import build  # noqa: E402
from data_pipeline.fileio import atomic_write_json  # noqa: E402
from data_pipeline.reader import Augmentation, make_dataset  # noqa: E402
from tf_unisrec.config import TrainConfig  # noqa: E402

BUILD_TARGET_S = 30.0
READER_TARGET = 50_000.0


def time_build(source: pathlib.Path, output: pathlib.Path) -> float:
    start = time.perf_counter()
    build([[source]], output)
    return time.perf_counter() - start


def reader_throughput(data: pathlib.Path, augment: bool, epochs: int) -> float:
    """Examples per second over whole shuffled epochs (after one warm-up epoch)."""
    defaults = TrainConfig.__dataclass_fields__
    augmentation = (
        Augmentation(defaults["item_drop_ratio"].default, defaults["item_drop_prob"].default)
        if augment
        else None
    )
    dataset = make_dataset(
        data, "train", batch_size=2048, shuffle=True, seed=0, augmentation=augmentation
    )
    for _ in dataset:
        pass
    examples = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in dataset:
            examples += int(batch["target"].shape[0])
    return examples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=REPO.parent / "shared/data/Scientific")
    parser.add_argument("--epochs", type=int, default=5, help="timed reader epochs")
    parser.add_argument(
        "--json", action="store_true", help="write benchmarks/results/data_pipeline.json"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        output = pathlib.Path(tmp) / "data"
        build_s = time_build(args.data, output)
        plain = reader_throughput(output, augment=False, epochs=args.epochs)
        augmented = reader_throughput(output, augment=True, epochs=args.epochs)

    rows = [
        (
            "build Scientific (s)",
            f"{build_s:.1f}",
            f"< {BUILD_TARGET_S:.0f}",
            build_s < BUILD_TARGET_S,
        ),
        (
            "reader, batch 2048 (ex/s)",
            f"{plain:,.0f}",
            f">= {READER_TARGET:,.0f}",
            plain >= READER_TARGET,
        ),
        (
            "reader + augmentation (ex/s)",
            f"{augmented:,.0f}",
            f">= {READER_TARGET:,.0f}",
            augmented >= READER_TARGET,
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'value':>10}  {'target':>10}  met")
    for name, value, target, met in rows:
        print(f"{name.ljust(width)}  {value:>10}  {target:>10}  {'yes' if met else 'NO'}")
    print(f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})")
    if args.json:
        results = REPO / "benchmarks/results"
        results.mkdir(parents=True, exist_ok=True)
        record = {
            "build_scientific_s": build_s,
            "reader_examples_per_s": plain,
            "reader_augment_examples_per_s": augmented,
            "batch_size": 2048,
            "cpus": os.cpu_count(),
        }
        atomic_write_json(results / "data_pipeline.json", record)


if __name__ == "__main__":
    main()
