"""The paper's Figure 3 on Scientific: UniSRec without each of its parts, full ranking.

    python benchmarks/bench_ablations.py [--seeds 2020] [--work benchmarks/work]
        [--pretrain-epochs 10] [--stage inductive]

Every variant pre-trains on Office2014 + Games with its own switches, then fine-tunes on
Scientific (parameter-efficient, `--init`); "w/o pre-training" fine-tunes from scratch.
Finished runs are reused. Prints test NDCG@10 and Recall@10 per variant, writes
benchmarks/results/ablations.json and a bar chart benchmarks/results/ablations.png.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
from bench_scientific import SHARED, dataset, train

REPO = pathlib.Path(__file__).resolve().parents[1]
VARIANTS = {
    "UniSRec": [],
    "w/o whitening": ["--whitening", "false"],
    "w/o MoE": ["--num-experts", "1", "--gating", "false"],
    "w/o L_SS": ["--seq-seq-weight", "0"],
    "w/o L_SI": ["--seq-item-weight", "0"],
    "w/o pre-training": None,
}
ADAPTOR_FLAGS = ("--whitening", "--num-experts", "--gating")


def slug(name: str) -> str:
    return name.lower().replace("/", "").replace(" ", "-").replace("_", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020])
    parser.add_argument("--work", type=pathlib.Path, default=REPO / "benchmarks" / "work")
    parser.add_argument("--pooling", default="mean", choices=("cls", "mean"))
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--stage", default="inductive", choices=("inductive", "transductive"))
    args = parser.parse_args()

    scientific = dataset(args.work, "scientific", [SHARED / "Scientific"], args.pooling)
    corpus = dataset(
        args.work, "office+games", [SHARED / "Office2014", SHARED / "Games"], args.pooling
    )
    results = {}
    for name, flags in VARIANTS.items():
        runs = []
        for seed in args.seeds:
            tune = ["--data", scientific, "--stage", args.stage, "--seed", str(seed)]
            if flags is not None:
                pretrained = args.work / "runs" / f"pretrain-{slug(name)}-s{seed}"
                train(
                    pretrained,
                    "--data",
                    corpus,
                    "--stage",
                    "pretrain",
                    "--seed",
                    str(seed),
                    "--epochs",
                    str(args.pretrain_epochs),
                    *flags,
                )
                adaptor = [
                    f
                    for i, f in enumerate(flags)
                    if f in ADAPTOR_FLAGS or (i and flags[i - 1] in ADAPTOR_FLAGS)
                ]
                tune += ["--init", str(pretrained), *adaptor]
            run_dir = args.work / "runs" / f"ablation-{slug(name)}-{args.stage}-s{seed}"
            runs.append(train(run_dir, *tune)["test"])
        results[name] = {k: float(np.mean([r[k] for r in runs])) for k in ("ndcg@10", "recall@10")}

    print(f"{'variant':<20}{'NDCG@10':>10}{'Recall@10':>11}")
    for name, r in results.items():
        print(f"{name:<20}{r['ndcg@10']:>10.4f}{r['recall@10']:>11.4f}")
    out = REPO / "benchmarks" / "results" / "ablations.json"
    out.write_text(
        json.dumps({"stage": args.stage, "seeds": args.seeds, "results": results}, indent=2) + "\n"
    )
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def plot(results: dict[str, dict[str, float]], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(results)
    ax.bar(names, [results[n]["ndcg@10"] for n in names], color="#4C72B0")
    ax.set(ylabel="test NDCG@10", title="Scientific: ablations (Figure 3 of the paper)")
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
