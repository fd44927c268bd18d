"""Faults that are not bad input: commands killed with SIGKILL at random points, then rerun.

    python benchmarks/bench_faults.py [--kills 20] [--seed 0] [--work benchmarks/work/faults]

For `python -m data_pipeline.build` on a generated interaction log: one uninterrupted build
gives the reference and its duration; then, for each of `--kills` moments drawn by a seeded
sampler over that duration, the same build is started, killed with SIGKILL at that moment,
the output is checked (it must be either refused by the reader or the finished dataset), and
the command is rerun, which must finish with the reference's manifest and file hashes.
Prints a table and writes benchmarks/results/faults.json.
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


def kill_build(source, output, seconds: float) -> None:
    process = subprocess.Popen(build_command(source, output), cwd=REPO, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def bench_build(work: pathlib.Path, kills: int, seed: int) -> dict:
    source = write_log(work / "source")
    reference_dir = work / "reference"
    shutil.rmtree(reference_dir, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(build_command(source, reference_dir), cwd=REPO, env=ENV, check=True,
                   capture_output=True)  # fmt: skip
    duration = time.perf_counter() - start
    reference = fingerprint(reference_dir)
    # Half the moments anywhere in the run, half in its last quarter, where the folder is
    # written (the start is mostly importing TensorFlow).
    rng = np.random.default_rng(seed)
    moments = np.sort(
        np.concatenate(
            [
                rng.uniform(0.2, duration, size=kills - kills // 2),
                rng.uniform(0.75 * duration, duration, size=kills // 2),
            ]
        )
    )
    rows = []
    for moment in moments:
        output = work / "killed"
        shutil.rmtree(output, ignore_errors=True)
        kill_build(source, output, float(moment))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work", type=pathlib.Path, default=REPO / "benchmarks" / "work" / "faults"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    build = bench_build(args.work, args.kills, args.seed)
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
    out = REPO / "benchmarks" / "results" / "faults.json"
    out.write_text(json.dumps({"seed": args.seed, "build": build}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
