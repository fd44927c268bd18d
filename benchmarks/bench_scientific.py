"""Scientific (the paper's exact split): SASRec and UniSRec, full ranking, beside the paper.

    python benchmarks/bench_scientific.py [--runs sasrec inductive ...] [--seeds 2020 2021 2022]
        [--work benchmarks/work] [--pooling mean] [--pretrain-epochs 2] [--report]

Runs `python -m tf_unisrec.train` with the official hyperparameters for each requested run and
seed, seed by seed (a finished run, one with metrics.json, is reused; an interrupted one
resumes; `--report` only tabulates the finished ones), then prints
test Recall/NDCG@10/50 as mean +- std over seeds next to the paper's Table 2, and writes
benchmarks/results/scientific.json and the validation curves scientific_valid_ndcg.png. Runs
ending in `-pt` fine-tune (parameter-efficient) from one multi-domain pre-training on
Office2014 + Games (`--pretrain-epochs`, default 2, at `--pretrain-batch-size`, default 2048);
the paper's UniSRec rows are of that kind (pre-trained on five Amazon domains).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tf_unisrec.run_dir import RunDir  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50")
PAPER = {
    "sasrec": ("SASRec (IDs only)", (0.1080, 0.0553, 0.2042, 0.0760)),
    "inductive": ("UniSRec text only (inductive)", (0.1188, 0.0641, 0.2394, 0.0903)),
    "transductive": ("UniSRec text + ID (transductive)", (0.1235, 0.0634, 0.2473, 0.0904)),
}
RUNS = ("sasrec", "inductive", "inductive-pt", "transductive", "transductive-pt")


def python(*args: str) -> None:
    print("$ python " + " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], cwd=REPO, check=True)


def dataset(work: pathlib.Path, name: str, inputs: list[pathlib.Path], pooling: str) -> str:
    out = work / "data" / name
    build = ["-m", "data_pipeline.build", "--output", str(out), "--pooling", pooling]
    for path in inputs:
        build += ["--input", str(path)]
    python(*build)
    return str(out)


def train(run_dir: pathlib.Path, *flags: str) -> dict:
    run = RunDir(run_dir)
    if not run.has_metrics():
        python("-m", "tf_unisrec.train", "--output", str(run_dir), *flags)
    return run.read_metrics()


def pretrain(
    work: pathlib.Path,
    pooling: str,
    epochs: int,
    batch_size: int,
    name: str = "pretrain",
    flags: tuple[str, ...] = (),
) -> pathlib.Path:
    """Pre-trains on Office2014 + Games (multi-domain) into `work/runs/name`; returns the run."""
    corpus = dataset(work, "office+games", [SHARED / "Office2014", SHARED / "Games"], pooling)
    run = work / "runs" / name
    options = ["--epochs", str(epochs), "--batch-size", str(batch_size), *flags]
    train(run, "--data", corpus, "--stage", "pretrain", *options)
    return run


def pretrain_record(run: pathlib.Path) -> dict:
    """What a (possibly reused) pre-training actually ran, whatever this command's flags say."""
    config = RunDir(run).read_config()
    return {"epochs": config.epochs, "batch_size": config.batch_size, **RunDir(run).read_metrics()}


def later(results: dict, run: str) -> list[str]:
    """The runs printed after `run`."""
    names = list(results)
    return names[names.index(run) + 1 :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--work", type=pathlib.Path, default=REPO / "benchmarks" / "work")
    parser.add_argument("--pooling", default="mean", choices=("cls", "mean"))
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--pretrain-batch-size", type=int, default=2048)
    parser.add_argument(
        "--report", action="store_true", help="tabulate the finished runs only; train nothing"
    )
    parser.add_argument(
        "--output", type=pathlib.Path, default=REPO / "benchmarks" / "results" / "scientific.json"
    )
    args = parser.parse_args()

    scientific = dataset(args.work, "scientific", [SHARED / "Scientific"], args.pooling)
    pretrained = None
    if not args.report and any(run.endswith("-pt") for run in args.runs):
        pretrained = pretrain(
            args.work, args.pooling, args.pretrain_epochs, args.pretrain_batch_size
        )

    finished: dict[tuple[str, int], dict] = {}
    # Seed-major, so that a sweep stopped early leaves every model with the same seeds.
    for seed in args.seeds:
        for run in args.runs:
            run_dir = args.work / "runs" / f"{run}-s{seed}"
            if args.report:
                if RunDir(run_dir).has_metrics():
                    finished[run, seed] = RunDir(run_dir).read_metrics()
                continue
            flags = ["--data", scientific, "--stage", run.removesuffix("-pt"), "--seed", str(seed)]
            if run.endswith("-pt"):
                flags += ["--init", str(pretrained)]
            finished[run, seed] = train(run_dir, *flags)

    results: dict[str, dict] = {}
    for run in args.runs:
        seeds = [seed for seed in args.seeds if (run, seed) in finished]
        if not seeds:
            continue
        per_seed = [finished[run, seed] for seed in seeds]
        values = np.array([[m["test"][k] for k in METRICS] for m in per_seed])
        results[run] = {
            "seeds": seeds,
            "mean": dict(zip(METRICS, values.mean(0).round(4).tolist(), strict=True)),
            "std": dict(zip(METRICS, values.std(0).round(4).tolist(), strict=True)),
            "best_epoch": [m["best_epoch"] for m in per_seed],
            "train_examples_per_second": [m["train_examples_per_second"] for m in per_seed],
            "seconds_per_epoch": [m["seconds_per_epoch"] for m in per_seed],
            "eval_seconds": [m["eval_seconds"] for m in per_seed],
        }

    header = f"{'model':<44}" + "".join(f"{k:>17}" for k in METRICS) + f"{'ex/s':>9}"
    print(header)
    print("-" * len(header))
    for run, r in results.items():
        cells = "".join(f"{r['mean'][k]:>10.4f} ±{r['std'][k]:.4f}" for k in METRICS)
        speed = np.mean(r["train_examples_per_second"])
        label = f"ours: {run} ({len(r['seeds'])} seed{'s' if len(r['seeds']) > 1 else ''})"
        print(f"{label:<44}{cells}{speed:>9.0f}")
        stage = run.removesuffix("-pt")
        if stage in PAPER and not any(o.startswith(stage) for o in later(results, run)):
            name, paper = PAPER[stage]
            print(f"{'paper: ' + name:<44}" + "".join(f"{v:>17.4f}" for v in paper))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    summary: dict = {"pooling": args.pooling, "runs": results}
    if any(run.endswith("-pt") for run in results):
        summary["pretrain"] = pretrain_record(args.work / "runs" / "pretrain")
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    curves = {run: f"{run}-s{r['seeds'][0]}" for run, r in results.items()}
    plot = plot_validation(args.work / "runs", curves, args.output)
    print(f"wrote {args.output} and {plot}")


def plot_validation(
    runs_dir: pathlib.Path, curves: dict[str, str], output: pathlib.Path
) -> pathlib.Path:
    """Validation NDCG@10 per epoch of each model (its first seed) as a PNG beside the JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, run_dir in curves.items():
        history = RunDir(runs_dir / run_dir).read_history()
        ax.plot([h["epoch"] for h in history], [h["valid_ndcg@10"] for h in history], label=label)
    ax.set(xlabel="epoch", ylabel="validation NDCG@10", title="Scientific, full ranking")
    ax.grid(alpha=0.3)
    ax.legend()
    path = output.with_name(output.stem + "_valid_ndcg.png")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


if __name__ == "__main__":
    main()
