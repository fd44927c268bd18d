"""Short training runs of every stage, for checking that a change leaves results unchanged.

    python scripts/stage_metrics.py --data DATASET_DIR --work WORK_DIR [--output FILE.json]

Trains, through the command line only, a small model for each stage on a built dataset with
text features (pre-training, inductive and transductive from scratch, SASRec, and inductive and
transductive fine-tuned from the pre-training), a few short epochs each, with fixed seeds, and
writes every run's per-epoch losses and validation metrics and its final test metrics as JSON.
Run it before and after a refactoring and compare the two files: the numbers must be equal.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tf_unisrec.run_dir import RunDir  # noqa: E402

SMALL = [
    "--hidden-dim", "32", "--num-layers", "1", "--intermediate-dim", "32", "--num-experts", "2",
    "--epochs", "2", "--steps-per-epoch", "6", "--batch-size", "256", "--seed", "7",
]  # fmt: skip
RUNS = {
    "pretrain": ["--stage", "pretrain", "--seq-seq-weight", "0.1"],
    "inductive": ["--stage", "inductive"],
    "transductive": ["--stage", "transductive"],
    "sasrec": ["--stage", "sasrec"],
    "inductive-pt": ["--stage", "inductive", "--init", "{work}/pretrain"],
    "transductive-pt": ["--stage", "transductive", "--init", "{work}/pretrain"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=pathlib.Path)
    parser.add_argument("--work", required=True, type=pathlib.Path)
    parser.add_argument("--output", type=pathlib.Path)
    args = parser.parse_args()
    results = {}
    for name, flags in RUNS.items():
        run = args.work / name
        command = [
            sys.executable, "-m", "tf_unisrec.train", "--data", str(args.data),
            "--output", str(run), "--no-resume", *SMALL,
            *(f.format(work=args.work) for f in flags),
        ]  # fmt: skip
        print("$ " + " ".join(command[1:]), flush=True)
        subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        metrics = RunDir(run).read_metrics()
        results[name] = {
            "history": RunDir(run).read_history(),
            **{split: metrics[split] for split in ("valid", "test") if split in metrics},
        }
    text = json.dumps(results, indent=2, sort_keys=True)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
