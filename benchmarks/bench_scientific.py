"""Scientific (the paper's exact split): SASRec and UniSRec beside the official code and the paper.

    python benchmarks/bench_scientific.py [--runs sasrec inductive ...] [--seeds 2020 2021 2022]
        [--work benchmarks/work] [--pooling mean] [--pretrain-epochs 7] [--from-epochs 2 7]
        [--pretrain-only] [--report] [--output benchmarks/results/scientific.json]

Runs `python -m tf_unisrec.train` with the official hyperparameters for each requested run and
seed, seed by seed (a finished run is reused, an interrupted one resumes; `--report` only
tabulates the finished ones), then prints test Recall/NDCG@10/50 as mean +- std over seeds in a
Markdown table, next to the official code's converged results on the same features and the
paper's Table 2, and writes benchmarks/results/scientific.json and the validation curves
scientific_valid_ndcg.png.

The results file is also the record of every finished run: each row keeps its seeds' test
metrics, speed and validation curve, and is rewritten as soon as a run finishes. A run recorded
there counts as finished even when its folder under `--work` is gone (delete its seed from the
row to train it again), and rows that this command does not compute are kept as they are.
Commands running side by side on different runs (say one per core) may share the file: each
records its runs into the file as it then stands, under a lock.

Runs ending in `-pt` fine-tune (parameter-efficient) from one multi-domain pre-training on
Office2014 + Games at `--pretrain-batch-size` (default 2048, as the official run), trained for
`--pretrain-epochs` (default 7) and keeping every epoch's weights: each of `--from-epochs`
gives its own rows (`inductive-pt7` fine-tunes from epoch 7). A longer pre-training resumes
the existing one. `--pretrain-only` stops after pre-training. `inductive-sampled` and
`transductive-sampled` train from scratch with 1,024 sampled negatives per step instead of the
full softmax; run beside `inductive` or `transductive`, each gets a line with its relative change
against that full-softmax row (on the means over the seeds both have). `sasrec-cosine` is SASRec
trained with UniSRec's loss (`--scoring cosine`) instead of RecBole's. `inductive-bert-init-pt`
and `transductive-bert-init-pt` are this project's variant beyond the official code: they tune
from a second pre-training (same data, epochs and batch) whose experts' whitening starts from
the paper's Algorithm 1 (`--whitening-init bert`), recorded under `pretrain-bert-whitening-init`.
`inductive-pretrain-seed2021-pt` and `transductive-pretrain-seed2021-pt` tune from the official
pre-training run again with seed 2021 (recorded under `pretrain-seed2021`), to show how much the
pre-trained rows move with the pre-training itself.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import pathlib
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_pipeline.fileio import atomic_write_json  # noqa: E402
from tf_unisrec.run_dir import RunDir  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50")
STAGE_LABELS = {
    "sasrec": "SASRec (IDs only)",
    "inductive": "UniSRec inductive (text only)",
    "transductive": "UniSRec transductive (text + ID)",
}
# Table 2 of the paper: bert-base features, pre-trained 300 epochs on five Amazon domains.
PAPER = {
    "sasrec": ("SASRec", (0.1080, 0.0553, 0.2042, 0.0760)),
    "inductive": ("UniSRec inductive", (0.1188, 0.0641, 0.2394, 0.0903)),
    "transductive": ("UniSRec transductive", (0.1235, 0.0634, 0.2473, 0.0904)),
}
# The official PyTorch code (RecBole 1.2.1, UniSRec at 05aa5cb) run to convergence on the same
# MiniLM mean-pooled features, batch 2048, one seed (../shared/GUIDE.md).
OFFICIAL = {
    "sasrec": (0.1064, 0.0547, 0.2018, 0.0754),
    "inductive": (0.1235, 0.0666, 0.2393, 0.0918),
    "transductive": (0.1204, 0.0591, 0.2367, 0.0844),
    "inductive-pt2": (0.1282, 0.0677, 0.2491, 0.0939),
    "transductive-pt2": (0.1233, 0.0624, 0.2440, 0.0887),
    "inductive-pt7": (0.1290, 0.0691, 0.2540, 0.0964),
    "transductive-pt7": (0.1269, 0.0657, 0.2428, 0.0910),
}
STAGES = ("sasrec", "inductive", "transductive")
RUNS = (
    "sasrec",
    "sasrec-cosine",
    "inductive",
    "inductive-pt",
    "inductive-bert-init-pt",
    "inductive-pretrain-seed2021-pt",
    "transductive",
    "transductive-pt",
    "transductive-bert-init-pt",
    "transductive-pretrain-seed2021-pt",
)
# The pre-trainings that `-pt` runs tune from, by the infix before `-pt`: the run folder's name
# (before `-bBATCH`), its flags and the rows' label. `-bert-init` is this project's variant, not
# the official code's: every expert's whitening starts from the paper's Algorithm 1
# (`--whitening-init bert`); bench_ablations.py reads the same pre-training for its
# "BERT-whitening init" row. `-pretrain-seed2021` repeats the official pre-training with
# another seed (the default is 2020): fine-tuning seeds alone do not show how much a row moves
# with the pre-training it tunes from, and the official rows are one pre-training each.
PRETRAININGS = {
    "": ("pretrain", (), ""),
    "-bert-init": (
        "pretrain-bert-whitening-init",
        ("--whitening-init", "bert"),
        "BERT-whitening init (ours)",
    ),
    "-pretrain-seed2021": ("pretrain-seed2021", ("--seed", "2021"), "pre-training seed 2021"),
}
# From scratch with sampled negatives instead of the full softmax (the catalogue-scale setting).
SAMPLED = ("inductive-sampled", "transductive-sampled")
SAMPLED_FLAGS = ("--negatives", "sampled", "--num-negatives", "1024")
# SASRec trained with UniSRec's loss (cosine scores at temperature 0.07) instead of RecBole's.
COSINE = ("sasrec-cosine",)
COSINE_FLAGS = ("--scoring", "cosine")
# Kept per seed beside the test metrics.
RUN_FIELDS = (
    "best_epoch",
    "epochs_run",
    "train_examples_per_second",
    "seconds_per_epoch",
    "eval_seconds",
)


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
    """Pre-trains on Office2014 + Games into `work/runs/NAME-bBATCH` for at least `epochs`."""
    corpus = dataset(work, "office+games", [SHARED / "Office2014", SHARED / "Games"], pooling)
    run = RunDir(work / "runs" / f"{name}-b{batch_size}")
    if not run.has_metrics() or run.read_metrics()["epochs_run"] < epochs:
        options = ["--epochs", str(epochs), "--batch-size", str(batch_size), *flags]
        python("-m", "tf_unisrec.train", "--output", str(run.path), "--data", corpus,
               "--stage", "pretrain", *options)  # fmt: skip
    return run.path


def pretrain_record(run: pathlib.Path) -> dict:
    """What a (possibly reused) pre-training actually ran, whatever this command's flags say."""
    config = RunDir(run).read_config()
    return {"batch_size": config.batch_size, **RunDir(run).read_metrics()}


def run_names(runs: list[str], from_epochs: list[int]) -> list[str]:
    """`inductive-pt` becomes one name per pre-training epoch fine-tuned from."""
    return [
        name
        for run in runs
        for name in ([f"{run}{e}" for e in from_epochs] if run.endswith("-pt") else [run])
    ]


def stage_of(run: str) -> str:
    base = run.split("-pt")[0]
    for suffix in ("-sampled", "-cosine", *filter(None, PRETRAININGS)):
        base = base.removesuffix(suffix)
    return base


def pretraining_of(run: str) -> str:
    """The PRETRAININGS key a `-pt` run tunes from: `inductive-bert-init-pt7` -> `-bert-init`."""
    base = run.split("-pt")[0]
    return next((key for key in PRETRAININGS if key and base.endswith(key)), "")


def pretraining_paths(work: pathlib.Path, batch_size: int) -> dict[str, pathlib.Path]:
    """Each pre-training's run folder under `work`, by its PRETRAININGS key."""
    return {key: work / "runs" / f"{spec[0]}-b{batch_size}" for key, spec in PRETRAININGS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS + SAMPLED)
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--work", type=pathlib.Path, default=REPO / "benchmarks" / "work")
    parser.add_argument("--pooling", default="mean", choices=("cls", "mean"))
    parser.add_argument("--pretrain-epochs", type=int, default=7)
    parser.add_argument("--pretrain-batch-size", type=int, default=2048)
    parser.add_argument(
        "--from-epochs",
        nargs="+",
        type=int,
        default=[2, 7],
        help="pre-training epochs to tune from",
    )
    parser.add_argument("--pretrain-only", action="store_true", help="stop after pre-training")
    parser.add_argument(
        "--report", action="store_true", help="tabulate the finished runs only; train nothing"
    )
    parser.add_argument(
        "--output", type=pathlib.Path, default=REPO / "benchmarks" / "results" / "scientific.json"
    )
    args = parser.parse_args()
    tunes_pretrained = any(run.endswith("-pt") for run in args.runs) and not args.pretrain_only
    if tunes_pretrained and not args.report and max(args.from_epochs) > args.pretrain_epochs:
        parser.error("--from-epochs must not exceed --pretrain-epochs")

    scientific = dataset(args.work, "scientific", [SHARED / "Scientific"], args.pooling)
    pretrained = pretraining_paths(args.work, args.pretrain_batch_size)
    needed = {pretraining_of(run) for run in args.runs if run.endswith("-pt")}
    for key in () if args.report else sorted(needed):
        name, flags, _ = PRETRAININGS[key]
        pretrained[key] = pretrain(
            args.work, args.pooling, args.pretrain_epochs, args.pretrain_batch_size, name, flags
        )
    if args.pretrain_only:
        return

    names = run_names(args.runs, args.from_epochs)
    finished = recorded_runs(read_results(args.output))
    # Seed-major, so that a sweep stopped early leaves every model with the same seeds.
    for seed in args.seeds:
        for name in names:
            run = RunDir(args.work / "runs" / f"{name}-s{seed}")
            if run.has_metrics():
                finished[name, seed] = seed_record(run)
            if (name, seed) in finished or args.report:
                continue
            flags = ["--data", scientific, "--stage", stage_of(name), "--seed", str(seed)]
            if "-pt" in name:
                source = pretrained[pretraining_of(name)]
                flags += ["--init", str(source / "best" / f"ckpt-{name.split('-pt')[1]}")]
            if name.endswith("-sampled"):
                flags += SAMPLED_FLAGS
            if name in COSINE:
                flags += COSINE_FLAGS
            train(run.path, *flags)
            finished[name, seed] = seed_record(run)
            record(args.output, finished, pretrained, args.pooling)

    summary = record(args.output, finished, pretrained, args.pooling)
    with results_lock(args.output):
        plot = plot_validation(args.work / "runs", summary["runs"], args.output)
    print(markdown_table(summary["runs"]))
    print(f"wrote {args.output} and {plot}")


def read_results(path: pathlib.Path) -> dict:
    """A results file as last written, or `{}`; exits with one line if it cannot be read."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise SystemExit(
            f"error: {path} is unreadable ({error}); restore it (git checkout) or move it aside "
            "to start a new one"
        ) from None


def write_results(path: pathlib.Path, summary: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, summary)


@contextlib.contextmanager
def results_lock(path: pathlib.Path):
    """Holds `.NAME.lock` beside the results file, so that side-by-side commands take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def record(
    path: pathlib.Path,
    finished: dict[tuple[str, int], dict],
    pretrained: dict[str, pathlib.Path],
    pooling: str,
) -> dict:
    """Adds `finished` to the results file as it stands now, runs recorded since included."""
    with results_lock(path):
        previous = read_results(path)
        summary = summarize({**recorded_runs(previous), **finished}, previous, pretrained, pooling)
        write_results(path, summary)
    return summary


def seed_record(run: RunDir) -> dict:
    """What the results file keeps of one finished run."""
    metrics = run.read_metrics()
    return {
        "test": metrics["test"],
        **{key: metrics[key] for key in RUN_FIELDS},
        "valid_ndcg@10": [epoch["valid_ndcg@10"] for epoch in run.read_history()],
    }


def recorded_runs(results: dict) -> dict[tuple[str, int], dict]:
    """`{(run name, seed): seed_record}` for every run the results file records."""
    return {
        (name, int(seed)): record
        for name, row in results.get("runs", {}).items()
        for seed, record in row.get("per_seed", {}).items()
    }


def summarize(
    finished: dict[tuple[str, int], dict],
    previous: dict,
    pretrained: dict[str, pathlib.Path],
    pooling: str,
) -> dict:
    """The results file: a row per run over its finished seeds, beside the earlier rows.

    An earlier row is kept when it covers more seeds than the records at hand (rows written
    before per-seed records were kept have only their means).
    """
    rows = dict(previous.get("runs", {}))
    for name in {name for name, _ in finished}:
        seeds = sorted(seed for run, seed in finished if run == name)
        if name in rows and len(rows[name]["seeds"]) > len(seeds):
            continue
        rows[name] = summarize_run(name, {seed: finished[name, seed] for seed in seeds})
    for name in rows:
        full = name.removesuffix("-sampled")
        common = sorted(
            set(rows[name].get("per_seed", {})) & set(rows.get(full, {}).get("per_seed", {}))
        )
        if name in SAMPLED and common:
            # Sampled negatives against the full softmax, relative, on means over shared seeds.
            sampled, exact = (
                np.array(
                    [[rows[run]["per_seed"][seed]["test"][k] for k in METRICS] for seed in common]
                )
                for run in (name, full)
            )
            change = sampled.mean(0) / exact.mean(0) - 1
            rows[name]["against_full"] = {
                "seeds": [int(seed) for seed in common],
                **dict(zip(METRICS, change.round(4).tolist(), strict=True)),
            }
    summary: dict = {
        "pooling": pooling,
        "runs": dict(sorted(rows.items(), key=lambda r: order(r[0]))),
    }
    for key, (field, *_) in PRETRAININGS.items():
        # Each pre-training's record, under its folder's name, beside the rows tuned from it.
        if any("-pt" in name and pretraining_of(name) == key for name in rows):
            recorded = RunDir(pretrained[key]).has_metrics()
            summary[field] = pretrain_record(pretrained[key]) if recorded else previous.get(field)
    return summary


def mean_std(tests: list[dict[str, float]], metrics: tuple[str, ...] = METRICS) -> dict:
    """`{"mean": ..., "std": ...}` of each metric over the seeds' test results, to 4 places."""
    values = np.array([[test[k] for k in metrics] for test in tests])
    return {
        "mean": dict(zip(metrics, values.mean(0).round(4).tolist(), strict=True)),
        "std": dict(zip(metrics, values.std(0).round(4).tolist(), strict=True)),
    }


def summarize_run(name: str, per_seed: dict[int, dict]) -> dict:
    """Mean and standard deviation over the seeds, beside each seed's record."""
    return {
        "seeds": list(per_seed),
        **mean_std([record["test"] for record in per_seed.values()]),
        "official": dict(zip(METRICS, OFFICIAL[name], strict=True)) if name in OFFICIAL else None,
        **{key: [record[key] for record in per_seed.values()] for key in RUN_FIELDS},
        "per_seed": {str(seed): record for seed, record in per_seed.items()},
    }


def order(name: str) -> tuple[int, int]:
    """Table order: RUNS then SAMPLED, pre-trained rows by their epoch."""
    base, _, epoch = name.partition("-pt")
    if epoch:
        base += "-pt"
    return (RUNS + SAMPLED).index(base), int(epoch or 0)


def describe(name: str, short: bool = False) -> str:
    """`inductive-pt7` -> `UniSRec inductive (text only), pre-trained 7 epochs`."""
    stage = stage_of(name)
    label = STAGE_LABELS[stage].split(" (")[0] if short else STAGE_LABELS[stage]
    if pretraining_of(name):
        label += ", " + PRETRAININGS[pretraining_of(name)][2]
    if "-pt" in name:
        label += f", pre-trained {name.split('-pt')[1]} epochs"
    elif stage != "sasrec":
        label += ", from scratch"
    if name.endswith("-sampled"):
        label += ", 1,024 sampled negatives"
    if name in COSINE:
        label += ", UniSRec's loss (cosine scores, temperature 0.07)"
    return label


def markdown_table(results: dict[str, dict]) -> str:
    """Ours (mean ± std over seeds) beside the official code's run and the paper, as Markdown."""

    def row(label: str, cells: list[str], seeds: str) -> str:
        return f"| {label} | " + " | ".join(cells) + f" | {seeds} |"

    lines = [
        row("model", ["Recall@10", "NDCG@10", "Recall@50", "NDCG@50"], "seeds"),
        row("---", ["---"] * len(METRICS), "---"),
    ]
    names = list(results)
    for i, name in enumerate(names):
        r = results[name]
        spread = len(r["seeds"]) > 1
        cells = [
            f"{r['mean'][k]:.4f}" + (f" ± {r['std'][k]:.4f}" if spread else "") for k in METRICS
        ]
        lines.append(row(f"ours: {describe(name)}", cells, str(len(r["seeds"]))))
        if name in OFFICIAL:
            cells = [f"{v:.4f}" for v in OFFICIAL[name]]
            lines.append(row(f"official code: {describe(name, short=True)}", cells, "1"))
        if "against_full" in r:
            cells = [f"{r['against_full'][k]:+.1%}" for k in METRICS]
            lines.append(
                row("sampled against full", cells, f"{len(r['against_full']['seeds'])} shared")
            )
        last_of_stage = all(stage_of(n) != stage_of(name) for n in names[i + 1 :])
        if stage_of(name) in PAPER and last_of_stage:
            label, paper = PAPER[stage_of(name)]
            lines.append(row(f"paper: {label}", [f"{v:.4f}" for v in paper], ""))
    return "\n".join(lines)


def plot_validation(
    runs_dir: pathlib.Path, rows: dict[str, dict], output: pathlib.Path
) -> pathlib.Path:
    """Validation NDCG@10 per epoch of each model (its first seed) as a PNG beside the JSON.

    Curves come from the rows' records, or from the run folder for rows written without them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, row in rows.items():
        seed = row["seeds"][0]
        if "per_seed" in row:
            curve = row["per_seed"][str(seed)]["valid_ndcg@10"]
        else:
            curve = [
                e["valid_ndcg@10"] for e in RunDir(runs_dir / f"{name}-s{seed}").read_history()
            ]
        if curve:
            ax.plot(range(1, len(curve) + 1), curve, label=name)
    ax.set(xlabel="epoch", ylabel="validation NDCG@10", title="Scientific, full ranking")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    path = output.with_name(output.stem + "_valid_ndcg.png")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


if __name__ == "__main__":
    main()
