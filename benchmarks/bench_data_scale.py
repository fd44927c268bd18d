"""Dataset builds at shop scale: the local engine against the Beam engine.

    python benchmarks/bench_data_scale.py [--events 1000000 5000000 20000000]
        [--work benchmarks/work/data_scale] [--report]

For each size it generates an interaction log (Zipf item popularity, log-normal user activity,
timestamps on a coarse clock so many events tie, two log files and an item text table), then
runs `python -m data_pipeline.build --no-text-features` on it with the local engine, with Beam
in-process (`--runner=FnApiRunner`) and with Beam in two worker processes
(`--direct_running_mode=multi_processing --direct_num_workers=2`), each as a process of its
own. It records wall time, events per second, the peak resident memory of the whole process
tree (sampled every 0.2 s from /proc) and whether the output is byte-identical to the local
engine's (manifest file hashes). A finished measurement is kept in WORK/measurements.json and
not rerun; `--report` only tabulates. Prints a table and writes
benchmarks/results/data_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_pipeline.dataset import read_manifest  # noqa: E402
from data_pipeline.fileio import atomic_write_json  # noqa: E402
from export.server_process import process_tree_resident_bytes  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "data_scale.json"
ENGINES = {
    "local": ["--engine", "local"],
    "beam": ["--engine", "beam", "--", "--runner=FnApiRunner"],
    "beam-2proc": [
        "--engine",
        "beam",
        "--",
        "--runner=FnApiRunner",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
    ],
}
ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def generate(folder: pathlib.Path, events: int, seed: int = 0) -> None:
    """Writes a log of `events` rows in two files plus an item table (skipped if present)."""
    done = folder / ".complete"
    if done.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    num_items = max(1000, events // 20)
    # User activity: log-normal, mean about 10 events; users drawn in proportion to it.
    activity = rng.lognormal(mean=1.8, sigma=0.9, size=max(100, events // 10))
    users = rng.choice(len(activity), size=events, p=activity / activity.sum())
    ranks = np.arange(1, num_items + 1)
    popularity = 1.0 / ranks**1.05
    items = rng.choice(num_items, size=events, p=popularity / popularity.sum())
    clock = rng.integers(0, 10_000, size=events) * 60  # minute resolution: many ties
    half = events // 2
    for name, part in (("a_log.csv", slice(0, half)), ("b_log.csv", slice(half, events))):
        with (folder / name).open("w") as f:
            f.write("user_id,item_id,timestamp\n")
            for start in range(part.start, part.stop, 1_000_000):
                stop = min(start + 1_000_000, part.stop)
                rows = zip(users[start:stop], items[start:stop], clock[start:stop], strict=True)
                f.write("".join(f"u{u},p{i},{t}\n" for u, i, t in rows))
    words = np.array(["steel", "blue", "pack", "organic", "mini", "pro", "kit", "glass"])
    with (folder / "catalog.tsv").open("w") as f:
        f.write("item_id\ttitle\n")
        for i in range(num_items):
            title = " ".join(words[rng.integers(0, len(words), size=4)])
            f.write(f"p{i}\t{title} {i}\n")
    done.write_text("")


def measure(log: pathlib.Path, output: pathlib.Path, engine: str) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "data_pipeline.build",
        "--input",
        str(log),
        "--output",
        str(output),
        "--no-text-features",
        *ENGINES[engine],
    ]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = 0
    while process.poll() is None:
        peak = max(peak, process_tree_resident_bytes(process.pid))
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    out = process.stdout.read()
    if process.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{out[-3000:]}")
    manifest = read_manifest(output)
    hashes = sorted(e["sha256"] for split in manifest["files"].values() for e in split)
    return {
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(peak / 2**30, 2),
        "users": manifest["users"],
        "items": manifest["items"],
        "interactions": manifest["interactions"],
        "hashes": [*hashes, manifest["item_table"]["sha256"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 5_000_000, 20_000_000])
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES))
    parser.add_argument("--work", type=pathlib.Path, default=REPO / "benchmarks/work/data_scale")
    parser.add_argument("--report", action="store_true", help="only tabulate finished runs")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    store = args.work / "measurements.json"
    done = json.loads(store.read_text()) if store.exists() else {}
    for events in args.events:
        if args.report:
            break
        log = args.work / f"log-{events}"
        for engine in args.engines:
            key = f"{events}/{engine}"
            if key in done:
                continue
            generate(log, events)
            print(f"building {events:,} events with {engine} ...", flush=True)
            done[key] = measure(log, args.work / f"out-{events}-{engine}", engine)
            shutil.rmtree(args.work / f"out-{events}-{engine}", ignore_errors=True)
            atomic_write_json(store, done)

    rows = []
    header = ("events", "engine", "wall s", "events/s", "peak GB", "identical to local")
    for key, m in sorted(done.items(), key=lambda kv: (int(kv[0].split("/")[0]), kv[0])):
        events, engine = key.split("/")
        local = done.get(f"{events}/local")
        same = "-" if engine == "local" or local is None else str(m["hashes"] == local["hashes"])
        rows.append(
            {
                "events": int(events),
                "engine": engine,
                "seconds": m["seconds"],
                "events_per_s": round(int(events) / m["seconds"]),
                "peak_rss_gb": m["peak_rss_gb"],
                "identical_to_local": same,
                "users": m["users"],
                "items": m["items"],
                "interactions": m["interactions"],
            }
        )
    print(" | ".join(header))
    for r in rows:
        print(
            f"{r['events']:,} | {r['engine']} | {r['seconds']} | {r['events_per_s']:,} | "
            f"{r['peak_rss_gb']} | {r['identical_to_local']}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS, {"machine": f"{os.cpu_count()} cores", "rows": rows})


if __name__ == "__main__":
    main()
