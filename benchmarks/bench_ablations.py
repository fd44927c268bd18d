"""The paper's Figure 3 on Scientific: UniSRec without each of its parts, full ranking.

    python benchmarks/bench_ablations.py [--seeds 2020 2021 2022] [--work benchmarks/work]
        [--pretrain-epochs 2] [--pretrain-batch-size 2048] [--stage transductive]
        [--variants no-whitening ...] [--output benchmarks/results/ablations.json]

Every variant pre-trains on Office2014 + Games with its own switches (2 epochs at batch 2048 by
default), then fine-tunes on Scientific (parameter-efficient, `--init`) from that epoch. The full
model and "w/o pre-training" are bench_scientific.py's `{stage}-pt2` and `{stage}` runs, shared
with it. Finished runs are reused. Prints test NDCG@10 and Recall@10 per variant (mean ± std
over the seeds) as a Markdown table, writes benchmarks/results/ablations.json and the bar chart
ablations.png.
`--variants` trains only those (by slug), so two processes with different outputs can share the
work.

The results file is also the record of every finished fine-tuning: each variant keeps its
seeds' test metrics and is rewritten as soon as one finishes. A recorded seed counts as finished
even when its run folder is gone (delete it from the file to train it again), a variant whose
seeds are all recorded is not pre-trained again, and variants this command does not train are
kept as they are. The two rows shared with bench_scientific.py also count the runs recorded in
its results file (`--scientific`).
"""

from __future__ import annotations

import argparse
import pathlib

from bench_scientific import (
    PRETRAININGS,
    SHARED,
    dataset,
    mean_std,
    pretrain,
    pretrain_record,
    read_results,
    recorded_runs,
    train,
)

from data_pipeline.fileio import atomic_write_json

REPO = pathlib.Path(__file__).resolve().parents[1]
METRICS = ("ndcg@10", "recall@10")
# Pre-training switches per variant; None: no pre-training.
VARIANTS: dict[str, tuple[str, ...] | None] = {
    "UniSRec": (),
    "w/o whitening": ("--whitening", "none"),
    "w/o MoE": ("--num-experts", "1", "--gating", "false"),
    "w/o L_SS": ("--seq-seq-weight", "0"),
    "w/o L_SI": ("--seq-item-weight", "0"),
    "w/o pre-training": None,
    # The paper's Algorithm 1: a fixed BERT-whitening instead of the learned adaptor, and the
    # learned experts started from it.
    "BERT-whitening (fixed)": ("--whitening", "bert", "--num-experts", "1", "--gating", "false"),
    # Shared with bench_scientific.py's `-bert-init` rows, which tune from its later epochs.
    "BERT-whitening init": PRETRAININGS["-bert-init"][1],
}


def slug(name: str) -> str:
    name = name.lower().replace("w/o ", "no-").replace("(", "").replace(")", "")
    return name.replace(" ", "-").replace("_", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--work", type=pathlib.Path, default=REPO / "benchmarks" / "work")
    parser.add_argument("--pooling", default="mean", choices=("cls", "mean"))
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--pretrain-batch-size", type=int, default=2048)
    parser.add_argument("--stage", default="transductive", choices=("inductive", "transductive"))
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=[slug(name) for name in VARIANTS],
        help="only these variants (default: all)",
    )
    parser.add_argument(
        "--output", type=pathlib.Path, default=REPO / "benchmarks" / "results" / "ablations.json"
    )
    parser.add_argument(
        "--scientific",
        type=pathlib.Path,
        default=REPO / "benchmarks" / "results" / "scientific.json",
        help="bench_scientific.py's results, whose recorded runs the shared rows reuse",
    )
    args = parser.parse_args()
    chosen = {n: f for n, f in VARIANTS.items() if not args.variants or slug(n) in args.variants}

    scientific = dataset(args.work, "scientific", [SHARED / "Scientific"], args.pooling)
    previous = read_results(args.output)
    setting = {"stage": args.stage, "pretrain_epochs": args.pretrain_epochs}
    if previous and {key: previous.get(key) for key in setting} != setting:
        kept = {key: previous.get(key) for key in setting}
        parser.error(f"{args.output} records {kept}, not {setting}: choose another --output")
    scientific_results = read_results(args.scientific)
    shared = recorded_runs(scientific_results)
    tests: dict[str, dict[int, dict]] = {
        name: {int(seed): test for seed, test in row["per_seed"].items()}
        for name, row in previous.get("results", {}).items()
    }
    pretraining = dict(previous.get("pretraining", {}))
    if "UniSRec" in chosen and scientific_results.get("pretrain"):
        # The same pre-training as the Scientific table's, whose pace it records.
        pretraining.setdefault("UniSRec", scientific_results["pretrain"])
    runs = {}
    for name, flags in chosen.items():
        if flags is None:
            run = args.stage
        elif not flags:
            run = f"{args.stage}-pt{args.pretrain_epochs}"
        else:
            run = f"ablation-{slug(name)}-{args.stage}-pt{args.pretrain_epochs}"
        tests.setdefault(name, {})
        for seed in args.seeds:
            if seed not in tests[name] and (run, seed) in shared:
                tests[name][seed] = shared[run, seed]["test"]
        if flags is None:
            runs[name] = (args.stage, [])
            continue
        if all(seed in tests[name] for seed in args.seeds):
            continue  # every seed recorded: its pre-training is not needed
        pretrain_name = "pretrain" if not flags else f"pretrain-{slug(name)}"
        pretrained = pretrain(
            args.work,
            args.pooling,
            args.pretrain_epochs,
            args.pretrain_batch_size,
            pretrain_name,
            flags,
        )
        pretraining[name] = pretrain_record(pretrained)
        # The epoch's weights; the variant's adaptor shape comes with them.
        runs[name] = (run, ["--init", str(pretrained / "best" / f"ckpt-{args.pretrain_epochs}")])

    # Seed-major, so that a sweep stopped early leaves every variant with the same seeds.
    for seed in args.seeds:
        for name, (run, init) in runs.items():
            if seed in tests[name]:
                continue
            tune = ["--data", scientific, "--stage", args.stage, "--seed", str(seed), *init]
            tests[name][seed] = train(args.work / "runs" / f"{run}-s{seed}", *tune)["test"]
            atomic_write_json(args.output, summarize(setting, pretraining, tests))

    summary = summarize(setting, pretraining, tests)
    print(markdown_table(summary))
    out = args.output
    atomic_write_json(out, summary)
    plot(summary["results"], out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def summarize(setting: dict, pretraining: dict, tests: dict[str, dict[int, dict]]) -> dict:
    """The results file: per variant, in VARIANTS' order, its seeds' tests and their mean ± std."""
    results = {}
    for name in VARIANTS:
        per_seed = dict(sorted(tests.get(name, {}).items()))
        if not per_seed:
            continue
        results[name] = {
            "seeds": list(per_seed),
            **mean_std(list(per_seed.values()), METRICS),
            "per_seed": {str(seed): test for seed, test in per_seed.items()},
        }
    return {**setting, "pretraining": pretraining, "results": results}


def markdown_table(summary: dict) -> str:
    """Each variant's NDCG@10 and Recall@10 (mean ± std over seeds) and pre-training pace."""
    lines = [
        f"| variant ({summary['stage']}) | NDCG@10 | Recall@10 | pre-training s/epoch | seeds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in summary["results"].items():
        spread = len(r["seeds"]) > 1
        cells = [
            f"{r['mean'][k]:.4f}" + (f" ± {r['std'][k]:.4f}" if spread else "") for k in METRICS
        ]
        speed = summary["pretraining"].get(name, {}).get("seconds_per_epoch")
        cells.append("" if speed is None else str(round(speed)))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(r['seeds'])} |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, dict[str, float]]], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, label in zip(axes, METRICS, ("NDCG@10", "Recall@10"), strict=True):
        values = [results[n]["mean"][metric] for n in names]
        spread = [results[n]["std"][metric] for n in names]
        colors = ["#C44E52" if n == "UniSRec" else "#4C72B0" for n in names]
        ax.bar(names, values, yerr=spread if any(spread) else None, capsize=3, color=colors)
        ax.set_ylim(min(values) * 0.9, max(values) * 1.04)
        ax.set(ylabel=f"test {label}", title=f"Scientific: {label}")
        ax.tick_params(axis="x", labelrotation=30)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Ablations (the paper's Figure 3)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
