"""Faults that are not bad input: commands killed with SIGKILL at random points, then rerun.

    python benchmarks/bench_faults.py [--kills 20] [--seed 0] [--work benchmarks/work/faults]

For each command (`--commands`, default all three) one uninterrupted run gives the reference
and its duration; then, for each of `--kills` moments drawn by a seeded sampler over that
duration (half anywhere, half in the last quarter, where outputs are written), the same
command is started, killed with SIGKILL at that moment, what it left is checked, and the
command is rerun, which must finish with the reference's result:

- `python -m data_pipeline.build` on a generated interaction log: the reader refuses the
  output or sees the finished dataset; the rerun gives the same manifest and file hashes.
- `python -m tf_unisrec.train` (a small inductive model, 3 epochs of 8 steps) on that
  dataset: the run folder has no metrics until the run finished; the rerun resumes and ends
  with the same test metrics.
- `python -m export.saved_model` of that run: every version folder that exists is complete;
  the rerun writes a version with the same signatures.

Prints a summary and writes benchmarks/results/faults.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def write_log(folder: pathlib.Path, users: int = 3000, items: int = 800) -> pathlib.Path:
    """An interaction log with an item table: Zipf items, 5 to 40 events per user, ties."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    weights = 1 / np.arange(1, items + 1)
    lines = ["user_id,item_id,timestamp"]
    for user in range(users):
        count = int(rng.integers(5, 41))
        chosen = rng.choice(items, size=count, p=weights / weights.sum())
        times = np.sort(rng.integers(0, 10**6, size=count)) // 100 * 100  # some ties
        lines += [f"u{user},i{item},{t}" for item, t in zip(chosen, times, strict=True)]
    (folder / "log.csv").write_text("\n".join(lines) + "\n")
    table = ["item_id,text"] + [f"i{i},item {i} of a generated shop" for i in range(items)]
    (folder / "items.csv").write_text("\n".join(table) + "\n")
    return folder


def build_command(source: pathlib.Path, output: pathlib.Path) -> list[str]:
    return [sys.executable, "-m", "data_pipeline.build", "--input", str(source),
            "--output", str(output), "--no-text-features"]  # fmt: skip


def fingerprint(output: pathlib.Path) -> dict:
    """The manifest's counts and every listed file's hash, as the reader sees them."""
    from data_pipeline.dataset import DatasetDir, listed_files

    dataset = DatasetDir.open(output, verify=True)
    files = {e["path"]: e["sha256"] for e in listed_files(dataset.manifest)}
    return {"splits": dataset.manifest["splits"], "items": dataset.num_items, "files": files}


def state_after_kill(output: pathlib.Path) -> str:
    """What a reader makes of the output folder: refused, or the finished dataset."""
    from data_pipeline.dataset import DatasetDir
    from data_pipeline.errors import DataError

    if not output.exists():
        return "absent"
    try:
        DatasetDir.open(output, verify=True)
    except DataError:
        return "refused"
    return "complete"


def bench_build(work: pathlib.Path, kills: int, seed: int) -> dict:
    source = write_log(work / "source")
    reference_dir = work / "reference"
    shutil.rmtree(reference_dir, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(build_command(source, reference_dir), cwd=REPO, env=ENV, check=True,
                   capture_output=True)  # fmt: skip
    duration = time.perf_counter() - start
    reference = fingerprint(reference_dir)
    moments = moments_for(duration, kills, seed)
    rows = []
    for moment in moments:
        output = work / "killed"
        shutil.rmtree(output, ignore_errors=True)
        kill_at(build_command(source, output), float(moment))
        state = state_after_kill(output)
        mid_write = any(p.name.startswith(".killed.staging-") for p in work.iterdir())
        rerun = subprocess.run(build_command(source, output), cwd=REPO, env=ENV,
                               capture_output=True, text=True)  # fmt: skip
        same = rerun.returncode == 0 and fingerprint(output) == reference
        leftovers = [p.name for p in work.iterdir() if p.name.startswith(".killed.")]
        rows.append({"killed_at_s": round(float(moment), 2), "while_writing": mid_write,
                     "reader_saw": state, "rerun_same_result": same,
                     "leftover_staging": leftovers})  # fmt: skip
        print(f"kill at {moment:6.2f} s: {'writing' if mid_write else '':<8} reader saw "
              f"{state:<9} rerun same: {same}", flush=True)  # fmt: skip
    return {"command": "data_pipeline.build", "uninterrupted_s": duration, "kills": rows}


TRAIN_FLAGS = ["--stage", "inductive", "--epochs", "3", "--steps-per-epoch", "8",
               "--hidden-dim", "32", "--num-experts", "2", "--batch-size", "256",
               "--seed", "3"]  # fmt: skip


def moments_for(duration: float, kills: int, seed: int) -> np.ndarray:
    """Half the moments anywhere in the run, half in its last quarter, where outputs are
    written (the start is mostly importing TensorFlow)."""
    rng = np.random.default_rng(seed)
    return np.sort(
        np.concatenate(
            [
                rng.uniform(0.2, duration, size=kills - kills // 2),
                rng.uniform(0.75 * duration, duration, size=kills // 2),
            ]
        )
    )


def kill_at(command: list[str], seconds: float) -> None:
    process = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def bench_train(work: pathlib.Path, data: pathlib.Path, kills: int, seed: int) -> dict:
    from tf_unisrec.run_dir import RunDir, RunError

    def command(run: pathlib.Path) -> list[str]:
        return [sys.executable, "-m", "tf_unisrec.train", "--data", str(data), "--output",
                str(run), *TRAIN_FLAGS]  # fmt: skip

    reference_run = work / "train-reference"
    shutil.rmtree(reference_run, ignore_errors=True)
    duration = timed(command(reference_run))
    reference = RunDir(reference_run).read_metrics()["test"]
    rows = []
    for moment in moments_for(duration, kills, seed):
        run = work / "train-killed"
        shutil.rmtree(run, ignore_errors=True)
        kill_at(command(run), float(moment))
        try:
            left = "metrics" if RunDir(run).has_metrics() else "no metrics"
            RunDir(run).read_metrics() if left == "metrics" else None
        except RunError:
            left = "unreadable metrics"
        rerun = subprocess.run(command(run), cwd=REPO, env=ENV, capture_output=True, text=True)
        same = rerun.returncode == 0 and RunDir(run).read_metrics()["test"] == reference
        rows.append({"killed_at_s": round(float(moment), 2), "left": left,
                     "rerun_same_result": same})  # fmt: skip
        print(f"train kill at {moment:6.1f} s: {left:<11} rerun same: {same}", flush=True)
    return {"command": "tf_unisrec.train", "uninterrupted_s": duration, "kills": rows}


def bench_export(work: pathlib.Path, run: pathlib.Path, kills: int, seed: int) -> dict:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the SavedModel tokenizes in-graph)

    def command(base: pathlib.Path) -> list[str]:
        return [sys.executable, "-m", "export.saved_model", "--run", str(run), "--output",
                str(base)]  # fmt: skip

    def signatures(version: pathlib.Path) -> dict:
        loaded = tf.saved_model.load(str(version))
        return {name: sorted(f.structured_outputs) for name, f in loaded.signatures.items()}

    reference_base = work / "export-reference" / "unisrec"
    shutil.rmtree(reference_base.parent, ignore_errors=True)
    duration = timed(command(reference_base))
    reference = signatures(reference_base / "1")
    rows = []
    for moment in moments_for(duration, kills, seed):
        base = work / "export-killed" / "unisrec"
        shutil.rmtree(base.parent, ignore_errors=True)
        kill_at(command(base), float(moment))
        versions = sorted(p for p in base.glob("[0-9]*")) if base.exists() else []
        whole = all((v / "saved_model.pb").is_file() and signatures(v) == reference
                    for v in versions)  # fmt: skip
        rerun = subprocess.run(command(base), cwd=REPO, env=ENV, capture_output=True, text=True)
        latest = max(base.glob("[0-9]*"), key=lambda p: int(p.name), default=None)
        same = rerun.returncode == 0 and latest is not None and signatures(latest) == reference
        staging = [p.name for p in base.iterdir() if p.name.startswith(".")]
        rows.append({"killed_at_s": round(float(moment), 2), "versions_left": len(versions),
                     "versions_whole": whole, "rerun_same_result": same,
                     "leftover_staging": staging})  # fmt: skip
        print(f"export kill at {moment:6.1f} s: {len(versions)} version(s), whole: {whole}, "
              f"rerun same: {same}", flush=True)  # fmt: skip
    return {"command": "export.saved_model", "uninterrupted_s": duration, "kills": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work", type=pathlib.Path, default=REPO / "benchmarks" / "work" / "faults"
    )
    parser.add_argument("--commands", nargs="+", default=["build", "train", "export"])
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict = {"seed": args.seed}
    build = results["build"] = bench_build(args.work, args.kills, args.seed)
    data = args.work / "reference"
    if "train" in args.commands or "export" in args.commands:
        from data_pipeline.encode_text import encode_dataset

        encode_dataset(data, pooling="mean", max_length=64, progress=False)
    if "train" in args.commands:
        results["train"] = bench_train(args.work, data, args.kills, args.seed)
    if "export" in args.commands:
        run = args.work / "train-reference"
        if not run.is_dir():
            subprocess.run([sys.executable, "-m", "tf_unisrec.train", "--data", str(data),
                            "--output", str(run), *TRAIN_FLAGS], cwd=REPO, env=ENV,
                           check=True, capture_output=True)  # fmt: skip
        results["export"] = bench_export(args.work, run, args.kills, args.seed)
    kills = build["kills"]
    trusted_half = [k for k in kills if k["reader_saw"] not in ("absent", "refused", "complete")]
    print(
        f"\ndata_pipeline.build: {len(kills)} SIGKILLs over {build['uninterrupted_s']:.1f} s; "
        f"reader refused or saw the finished dataset every time: {not trusted_half}; "
        f"killed while writing: {sum(k['while_writing'] for k in kills)}; "
        f"reruns with the reference result: {sum(k['rerun_same_result'] for k in kills)}"
        f"/{len(kills)}; staging folders left after the rerun: "
        f"{sum(bool(k['leftover_staging']) for k in kills)}"
    )
    for name in ("train", "export"):
        if name in results:
            rows = results[name]["kills"]
            print(f"{results[name]['command']}: {len(rows)} SIGKILLs over "
                  f"{results[name]['uninterrupted_s']:.1f} s; reruns with the reference result: "
                  f"{sum(r['rerun_same_result'] for r in rows)}/{len(rows)}")  # fmt: skip
    out = REPO / "benchmarks" / "results" / "faults.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
