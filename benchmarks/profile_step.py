"""Where a training step's time goes: TensorFlow's profiler over a few steps of a run's setup.

    python benchmarks/profile_step.py --run benchmarks/work/runs/pretrain-b2048
        [--steps 3] [--warmup 2] [--top 15]

Builds the model, optimiser and training data of the run folder's `config.yaml` (its weights
are not needed; the run folder is only read), traces and warms the step, then profiles
`--steps` steps and sums the threads' time per TensorFlow op type. Prints the table and writes
`benchmarks/results/profile_{stage}.json`. Thread time is summed over the inter-op threads, so
it can exceed the wall time. Run it on a quiet machine with the thread settings under study
(`TF_NUM_INTRAOP_THREADS` and friends).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tf_unisrec  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from data_pipeline.errors import DataError  # noqa: E402
from data_pipeline.fileio import atomic_write_json  # noqa: E402
from tf_unisrec.run_dir import RunDir, RunError  # noqa: E402
from tf_unisrec.train import Trainer, make_strategy  # noqa: E402


def op_seconds(logdir: str) -> collections.Counter:
    """Thread seconds per op type in the host plane of the profile under `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = pathlib.Path(logdir).rglob("*.xplane.pb")
    space = xplane_pb2.XSpace.FromString(path.read_bytes())
    seconds: collections.Counter = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                # Kernels are named "node:OpType"; the executor's own events ("ExecutorState::
                # Process", which spans the kernels it runs, "MemoryAllocation") are not kernels.
                name = names.get(event.metadata_id, "")
                if ":" in name and "::" not in name:
                    seconds[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=pathlib.Path, required=True, help="a run folder")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=2, help="steps before profiling")
    parser.add_argument("--top", type=int, default=15, help="op types listed")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.top < 1:
        parser.error("--steps and --top must be at least 1, --warmup at least 0")
    try:
        run_config = RunDir(args.run).read_config()
    except RunError as error:
        parser.error(str(error))
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as scratch:
        config = dataclasses.replace(run_config, output=f"{scratch}/run")
        try:
            trainer = Trainer(config, make_strategy(config), resume=False)
        except DataError as error:
            parser.error(f"the run's data: {error}")
        dataset = trainer.strategy.experimental_distribute_dataset(trainer.train_dataset(0))
        batches = iter(dataset)
        for _ in range(args.warmup):
            trainer.train_step(next(batches))
        profiled = [next(batches) for _ in range(args.steps)]
        tf.profiler.experimental.start(f"{scratch}/profile")
        start = time.perf_counter()
        for batch in profiled:
            float(trainer.train_step(batch))
        wall = (time.perf_counter() - start) / args.steps
        tf.profiler.experimental.stop()
        seconds = op_seconds(f"{scratch}/profile")

    total = sum(seconds.values())
    rows = [
        {"op": op, "seconds_per_step": s / args.steps, "share": s / total}
        for op, s in seconds.most_common()
    ]
    print(f"{config.stage}, batch {config.batch_size}: {wall:.2f} s per step (wall), "
          f"{total / args.steps:.2f} s of op time per step over all threads")  # fmt: skip
    print(f"{'op type':<32}{'s/step':>9}{'share':>8}")
    for row in rows[: args.top]:
        print(f"{row['op']:<32}{row['seconds_per_step']:>9.3f}{row['share']:>8.1%}")
    rest = sum(row["share"] for row in rows[args.top :])
    print(f"{'(the other ' + str(max(len(rows) - args.top, 0)) + ')':<32}{'':>9}{rest:>8.1%}")
    out = REPO / "benchmarks" / "results" / f"profile_{config.stage}.json"
    summary = {
        "run": str(args.run),
        "stage": config.stage,
        "batch_size": config.batch_size,
        "steps": args.steps,
        "wall_seconds_per_step": wall,
        "op_seconds_per_step": total / args.steps,
        "ops": rows,
    }
    atomic_write_json(out, summary)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
