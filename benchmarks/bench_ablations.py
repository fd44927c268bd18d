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
`--variants` trains and reports only those (by slug), so two processes can share the work.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
from bench_scientific import SHARED, dataset, pretrain, pretrain_record, train

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
    "BERT-whitening init": ("--whitening-init", "bert"),
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
    args = parser.parse_args()
    chosen = {n: f for n, f in VARIANTS.items() if not args.variants or slug(n) in args.variants}

    scientific = dataset(args.work, "scientific", [SHARED / "Scientific"], args.pooling)
    runs, pretraining = {}, {}
    for name, flags in chosen.items():
        if flags is None:
            runs[name] = (args.stage, [])
            continue
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
        run = (
            f"{args.stage}-pt{args.pretrain_epochs}"
            if not flags
            else f"ablation-{slug(name)}-{args.stage}-pt{args.pretrain_epochs}"
        )
        # The epoch's weights; the variant's adaptor shape comes with them.
        runs[name] = (run, ["--init", str(pretrained / "best" / f"ckpt-{args.pretrain_epochs}")])

    # Seed-major, so that a sweep stopped early leaves every variant with the same seeds.
    tests: dict[str, list[dict]] = {name: [] for name in runs}
    for seed in args.seeds:
        for name, (run, init) in runs.items():
            tune = ["--data", scientific, "--stage", args.stage, "--seed", str(seed), *init]
            tests[name].append(train(args.work / "runs" / f"{run}-s{seed}", *tune)["test"])
    results = {}
    for name, per_seed in tests.items():
        values = np.array([[t[k] for k in METRICS] for t in per_seed])
        results[name] = {
            "mean": dict(zip(METRICS, values.mean(0).round(4).tolist(), strict=True)),
            "std": dict(zip(METRICS, values.std(0).round(4).tolist(), strict=True)),
        }

    seeds = " ".join(map(str, args.seeds))
    print(f"| variant ({args.stage}, seeds {seeds}) | NDCG@10 | Recall@10 | pre-training s/epoch |")
    print("| --- | --- | --- | --- |")
    for name, r in results.items():
        cells = [f"{r['mean'][k]:.4f}" + (f" ± {r['std'][k]:.4f}" if len(args.seeds) > 1 else "")
                 for k in METRICS]  # fmt: skip
        speed = pretraining[name]["seconds_per_epoch"] if name in pretraining else None
        print(f"| {name} | " + " | ".join(cells) + f" | {'' if speed is None else round(speed)} |")
    out = args.output
    summary = {
        "stage": args.stage,
        "seeds": args.seeds,
        "pretraining": pretraining,
        "results": results,
    }
    atomic_write_json(out, summary)
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


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
