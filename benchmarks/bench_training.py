"""Training and evaluation speed on Scientific fine-tuning (transductive, batch 2048).

    python benchmarks/bench_training.py [--work benchmarks/work] [--steps 8]

Times whole training steps (forward, backward, Adam) of the official model and batch size,
once with length-bucketed encoding (the default) and once over fully padded batches, in the
same process, and one full-ranking validation pass over all 4,385 items. The official PyTorch
code's figures, measured on one of these 2-core machines on the same fine-tuning (first epoch
383.5 s, validation pass 28.4 s, 7.35 GB peak), are printed beside them for the ratio. Writes
benchmarks/results/training.json.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tf_unisrec  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from data_pipeline.fileio import atomic_write_json  # noqa: E402
from tf_unisrec.config import TrainConfig  # noqa: E402
from tf_unisrec.train import Trainer, make_strategy, make_train_step  # noqa: E402

# The official PyTorch code on this fine-tuning, measured on one of these 2-core machines, one
# run after the other with ours (../shared/GUIDE.md): its first training epoch, its
# validation pass and its peak memory.
OFFICIAL = {
    "seconds_per_epoch": 383.5,
    "examples_per_second": 34101 / 383.5,
    "eval_seconds": 28.4,
    "peak_gb": 7.35,
}


def timed_steps(trainer: Trainer, steps: int) -> float:
    """Examples per second over `steps` training steps, after `steps` untimed warm-up steps.

    The step is made afresh, so it is traced for the model's current encoding mode.
    """
    strategy = trainer.strategy
    batches = strategy.experimental_distribute_dataset(trainer.train_dataset(0).take(steps))
    step = make_train_step(trainer.model, trainer.optimizer, strategy, batches.element_spec)
    for batch in batches:
        step(batch)
    examples, start = 0, time.perf_counter()
    for batch in batches:
        float(step(batch))
        examples += trainer.local_batch_size(batch)
    return examples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=pathlib.Path, default=REPO / "benchmarks" / "work")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    args = parser.parse_args()

    data = args.work / "data" / "scientific"
    source = REPO.parent / "shared" / "data" / "Scientific"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "data_pipeline.build",
            "--input",
            str(source),
            "--output",
            str(data),
            "--pooling",
            "mean",
        ],
        cwd=REPO,
        check=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(data=str(data), stage="transductive", output=tmp)
        trainer = Trainer(config, make_strategy(config), resume=False)
        train_rows = trainer.dataset.split_rows("train")
        bucketed = timed_steps(trainer, args.steps)
        trainer.model.bucket_by_length = False
        padded = timed_steps(trainer, max(2, args.steps // 4))
        trainer.model.bucket_by_length = True
        trainer.evaluator("valid")
        start = time.perf_counter()
        trainer.evaluator("valid")
        eval_seconds = time.perf_counter() - start

    rows = [
        (
            "official PyTorch (measured apart)",
            OFFICIAL["examples_per_second"],
            OFFICIAL["eval_seconds"],
        ),
        ("ours, fully padded batches", padded, None),
        ("ours, length-bucketed (default)", bucketed, eval_seconds),
    ]
    print(f"{'variant':<34}{'examples/s':>12}{'s/epoch':>10}{'x official':>12}{'eval s':>9}")
    for name, speed, seconds in rows:
        ratio = speed / OFFICIAL["examples_per_second"]
        eval_cell = f"{seconds:9.2f}" if seconds is not None else f"{'':>9}"
        print(f"{name:<34}{speed:12.0f}{train_rows / speed:10.0f}{ratio:12.1f}{eval_cell}")
    result = {
        "dataset": "Scientific",
        "stage": "transductive",
        "batch_size": config.batch_size,
        "train_rows": train_rows,
        "timed_steps": args.steps,
        "examples_per_second": {"length_bucketed": bucketed, "padded": padded},
        "seconds_per_epoch": {
            "length_bucketed": train_rows / bucketed,
            "padded": train_rows / padded,
        },
        "bucketed_over_padded": bucketed / padded,
        "eval_seconds": eval_seconds,
        "official_pytorch_measured_apart": OFFICIAL,
        "cpus": os.cpu_count(),
    }
    out = REPO / "benchmarks" / "results" / "training.json"
    atomic_write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
