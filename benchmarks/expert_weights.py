"""How large the adaptor's expert weights start, and how far fine-tuning moves them.

    python benchmarks/expert_weights.py [--runs RUN ...] [--work benchmarks/work]

For each finished fine-tuning run folder (by default every `inductive[-bert-init]-pt7-s*` and
`transductive[-bert-init]-pt7-s*` under `--work/runs`), compares the parametric-whitening
experts of the checkpoint it tuned from (`init` in its `config.yaml`) with its best weights:
the root mean square of the kernel entries at the start, of their change, and the change
relative to the start (Frobenius norms, averaged over the experts). Adam moves every weight by
about the learning rate per step whatever its size, so experts that start large (the
BERT-whitening init, `W = W_k R_e`) change by a smaller fraction of themselves per epoch than
experts started at N(0, 0.02). Prints a Markdown table and writes
benchmarks/results/expert_weights.json.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_pipeline.fileio import atomic_write_json  # noqa: E402
from tf_unisrec.run_dir import RunDir, RunError  # noqa: E402

EXPERT_KERNEL = re.compile(r"^model/item_tower/adaptor/experts/(\d+)/kernel/\.ATTRIBUTES/")
DEFAULT_RUNS = re.compile(r"^(inductive|transductive)(-bert-init)?-pt7-s\d+$")


def expert_kernels(prefix: str) -> list[np.ndarray]:
    """The experts' whitening kernels `W` in a checkpoint, in expert order."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    found = {}
    for key in reader.get_variable_to_shape_map():
        match = EXPERT_KERNEL.match(key)
        if match:
            found[int(match.group(1))] = reader.get_tensor(key)
    if not found:
        raise RunError(f"{prefix} holds no parametric-whitening experts")
    return [found[e] for e in sorted(found)]


def movement(start: list[np.ndarray], end: list[np.ndarray]) -> dict[str, float]:
    """Entry RMS at the start, RMS of the change, and the change over the start's norm."""
    if [w.shape for w in start] != [w.shape for w in end]:
        raise ValueError("the two checkpoints' experts differ in number or shape")
    rms = lambda w: float(np.sqrt(np.mean(np.square(w))))  # noqa: E731
    return {
        "start_rms": float(np.mean([rms(w) for w in start])),
        "change_rms": float(np.mean([rms(b - a) for a, b in zip(start, end, strict=True)])),
        "relative_change": float(
            np.mean(
                [np.linalg.norm(b - a) / np.linalg.norm(a) for a, b in zip(start, end, strict=True)]
            )
        ),
    }


def measure(run_path: pathlib.Path) -> dict:
    run = RunDir(run_path)
    config = run.read_config()
    if not config.init:
        raise RunError(f"{run.path} was not tuned from a checkpoint (no init in its config)")
    _, start = RunDir.resolve_init(config.init)
    best_epoch = run.read_metrics()["best_epoch"]
    return {
        "run": run.path.name,
        "init": str(pathlib.Path(*pathlib.Path(start).parts[-3:])),  # run/best/ckpt-N
        "best_epoch": best_epoch,
        **movement(expert_kernels(start), expert_kernels(run.best_checkpoint())),
    }


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| run | best epoch | kernel RMS at start | RMS change | change / start |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['best_epoch']} | {r['start_rms']:.4f} | {r['change_rms']:.4f} "
            f"| {r['relative_change']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=pathlib.Path, help="fine-tuned run folders")
    parser.add_argument("--work", type=pathlib.Path, default=REPO / "benchmarks" / "work")
    parser.add_argument(
        "--output",
        type=pathlib.Path,
        default=REPO / "benchmarks" / "results" / "expert_weights.json",
    )
    args = parser.parse_args()
    runs = args.runs or sorted(
        path
        for path in (args.work / "runs").glob("*-pt7-s*")
        if DEFAULT_RUNS.match(path.name) and RunDir(path).has_metrics()
    )
    if not runs:
        sys.exit("no finished fine-tuning runs to measure (give --runs or --work)")
    try:
        rows = [measure(path) for path in runs]
    except RunError as error:
        sys.exit(str(error))
    print(markdown_table(rows))
    atomic_write_json(args.output, {"runs": rows})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
