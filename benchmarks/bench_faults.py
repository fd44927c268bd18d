"""Faults that are not bad input: commands killed with SIGKILL at random points, then rerun.

    python benchmarks/bench_faults.py [--kills 20] [--seed 0] [--work benchmarks/work/faults]
        [--commands build train export serve-kill serve-clients soak]

For each command (`--commands`, default build, train and export) one uninterrupted run gives
the reference and its duration; then, for each of `--kills` moments drawn by a seeded sampler
over that duration (half anywhere, half in the last quarter, where outputs are written), the
same command is started, killed with SIGKILL at that moment, what it left is checked, and the
command is rerun, which must finish with the reference's result:

- `python -m data_pipeline.build` on a generated interaction log: the reader refuses the
  output or sees the finished dataset; the rerun gives the same manifest and file hashes.
- `python -m tf_unisrec.train` (a small inductive model, 3 epochs of 8 steps) on that
  dataset: the run folder has no metrics until the run finished; the rerun resumes and ends
  with the same test metrics.
- `python -m export.saved_model` of that run: every version folder that exists is complete;
  the rerun writes a version with the same signatures.

Serving faults (`--commands serve-kill serve-clients soak`), on `python -m export.serve`
serving an export of that run, with `serving_default` requests built from 64 test histories
and every answer compared with the server's first answer to the same request:

- `serve-kill`: under load (8 clients), the server is killed with SIGKILL at `--server-kills`
  seeded moments and restarted on the same port; what the clients saw until it answered
  again, and whether it then gives the same answers.
- `serve-clients`: 4 clients under load while others misbehave: client processes killed
  mid-request, calls cancelled mid-request, HTTP/2 requests cut off after their first bytes,
  then one 64 MB request of item IDs and one of a single 64 MB text.
- `soak`: `--soak-minutes` (default 10) at concurrency 16 on loopback: p50/p99 per minute and
  the resident memory of the server's process tree every 5 s.

Prints a summary and writes benchmarks/results/faults.json (keeping the results of commands
not run this time).
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
from data_pipeline.fileio import atomic_write_json  # noqa: E402

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


# Serving: `python -m export.serve` on an export of the train reference run.

SERVE_MODEL = "unisrec"
SERVE_K = 10


def serving_base(work: pathlib.Path) -> pathlib.Path:
    """The train reference run exported once to `work/serve/unisrec` (version 1)."""
    base = work / "serve" / SERVE_MODEL
    if not (base / "1").is_dir():
        subprocess.run([sys.executable, "-m", "export.saved_model", "--run",
                        str(work / "train-reference"), "--output", str(base)], cwd=REPO,
                       env=ENV, check=True, capture_output=True)  # fmt: skip
    return base


def serving_requests(data: pathlib.Path, count: int = 64) -> list:
    """`serving_default` requests (one test history each, k=10) as a user would send them."""
    from data_pipeline.dataset import DatasetDir
    from export.client import ServingClient, string_matrix
    from export.saved_model import histories_from_split

    client = ServingClient("unused:0", SERVE_MODEL)
    histories = histories_from_split(DatasetDir.open(data), count)
    return [client.predict_request({"history": string_matrix([h]), "k": SERVE_K})
            for h in histories]  # fmt: skip


def answer(response) -> tuple:
    """The part of a response compared across runs: item IDs and scores."""
    import tensorflow as tf

    return (tuple(tf.make_ndarray(response.outputs["item_ids"]).ravel().tolist()),
            tuple(tf.make_ndarray(response.outputs["scores"]).ravel().tolist()))  # fmt: skip


def stub_for(address: str):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    # Reconnect within a second once the server is back (gRPC's default backoff grows to 120 s).
    channel = grpc.insecure_channel(address, options=[
        ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_receive_message_length", 2**31 - 1)])  # fmt: skip
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def reference_answers(address: str, requests: list) -> list[tuple]:
    channel, stub = stub_for(address)
    with channel:
        return [answer(stub.Predict(r, timeout=60)) for r in requests]


class Load:
    """`concurrency` clients, each on its own channel, sending the requests round-robin and
    comparing every answer with the reference; records (start, seconds, outcome) per request,
    the outcome being "ok", "wrong" or the gRPC status name."""

    def __init__(self, address: str, requests: list, reference: list, concurrency: int,
                 timeout: float = 10.0) -> None:  # fmt: skip
        import threading

        self.address, self.requests, self.reference = address, requests, reference
        self.concurrency, self.timeout = concurrency, timeout
        self.records: list[tuple[float, float, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                         for i in range(concurrency)]  # fmt: skip

    def _client(self, index: int) -> None:
        import grpc

        channel, stub = stub_for(self.address)
        i = index
        while not self._stop.is_set():
            request = i % len(self.requests)
            start = time.monotonic()
            try:
                ok = answer(stub.Predict(self.requests[request], timeout=self.timeout))
                outcome = "ok" if ok == self.reference[request] else "wrong"
            except grpc.RpcError as error:
                outcome = error.code().name
                if outcome == "UNAVAILABLE":
                    time.sleep(0.05)  # no server: do not spin
            self.records.append((start, time.monotonic() - start, outcome))
            i += self.concurrency
        channel.close()

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[tuple[float, float, str]]:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return sorted(self.records)


def summary(records: list, since: float = -1.0, until: float = float("inf")) -> dict:
    """Counts and latency percentiles (ms, successful requests) of the records in a window."""
    window = [r for r in records if since <= r[0] < until]
    latencies = [r[1] * 1000 for r in window if r[2] in ("ok", "wrong")]
    outcomes: dict[str, int] = {}
    for r in window:
        outcomes[r[2]] = outcomes.get(r[2], 0) + 1
    pct = (lambda q: round(float(np.percentile(latencies, q)), 2)) if latencies else None
    return {"requests": len(window), "outcomes": outcomes,
            "p50_ms": pct(50) if pct else None, "p99_ms": pct(99) if pct else None}  # fmt: skip


def start_server(base: pathlib.Path, log: pathlib.Path, port: int | None = None):
    from export.server_process import ModelServerProcess

    return ModelServerProcess.create("export.serve", str(base), SERVE_MODEL, str(log),
                                     port=port).start(timeout=300)  # fmt: skip


def bench_serve_kill(work: pathlib.Path, base: pathlib.Path, requests: list, kills: int,
                     seed: int, concurrency: int = 8) -> dict:  # fmt: skip
    """SIGKILL the server under load at seeded moments, restart it on the same port."""
    server = start_server(base, work / "serve-kill.log")
    reference = reference_answers(server.address, requests)
    port = int(server.address.rsplit(":", 1)[1])
    rng = np.random.default_rng(seed)
    rows = []
    for moment in np.sort(rng.uniform(1.0, 6.0, size=kills)):
        load = Load(server.address, requests, reference, concurrency).start()
        time.sleep(float(moment))
        server.kill()
        killed = time.monotonic()  # the process is gone: later answers come from the new one
        server = start_server(base, work / "serve-kill.log", port=port)
        ready = time.monotonic()
        time.sleep(5.0)
        records = load.stop()
        back = min(r[0] + r[1] for r in records if r[0] >= killed and r[2] == "ok")
        rows.append({
            "killed_after_s": round(float(moment), 2),
            "before_kill": summary(records, until=killed),
            "until_first_answer": summary(records, since=killed, until=back),
            "after_first_answer": summary(records, since=back),
            "kill_to_first_answer_s": round(back - killed, 2),
            "kill_to_ready_s": round(ready - killed, 2),
            "same_answers_after_restart": reference_answers(server.address, requests) == reference,
        })  # fmt: skip
        row = rows[-1]
        print(f"serve kill at {moment:4.1f} s: answers again after "
              f"{row['kill_to_first_answer_s']:.1f} s, until then "
              f"{row['until_first_answer']['outcomes']}, after "
              f"{row['after_first_answer']['outcomes']}, same answers "
              f"{row['same_answers_after_restart']}", flush=True)  # fmt: skip
    server.stop()
    return {"server": "export.serve", "concurrency": concurrency, "kills": rows}


KILLED_CLIENT = """
import sys, numpy as np, tensorflow as tf
from export.client import ServingClient
texts = np.array([b"a long product description, word %d " % i * 40
                  for i in range(int(sys.argv[2]))], object)
with ServingClient(sys.argv[1], "unisrec", timeout=600) as client:
    request = client.predict_request({"texts": tf.make_tensor_proto(texts)}, "encode_items")
    print("sending", flush=True)
    client.predict_raw(request)
"""


def misbehaving_clients(address: str, work: pathlib.Path, rounds: int, texts: int) -> dict:
    """Clients that go away mid-request: a killed process, a cancelled call, a half-sent
    HTTP/2 request on a raw socket."""
    import socket

    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    batch = np.array([b"word %d " % i * 40 for i in range(texts)], dtype=object)
    heavy = predict_pb2.PredictRequest()
    heavy.model_spec.name, heavy.model_spec.signature_name = SERVE_MODEL, "encode_items"
    heavy.inputs["texts"].CopyFrom(tf.make_tensor_proto(batch))
    host, port = address.rsplit(":", 1)
    script = work / "killed_client.py"
    script.write_text(KILLED_CLIENT)
    counts = {"killed_processes": 0, "cancelled_calls": 0, "half_sent_requests": 0}
    for _ in range(rounds):
        client = subprocess.Popen([sys.executable, str(script), address, str(texts)], cwd=REPO,
                                  env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        client.stdout.readline()  # "sending"
        time.sleep(0.3)
        client.kill()
        client.wait()
        counts["killed_processes"] += 1
        channel, stub = stub_for(address)
        future = stub.Predict.future(heavy, timeout=600)
        time.sleep(0.2)
        future.cancel()
        channel.close()
        counts["cancelled_calls"] += 1
        with socket.create_connection((host, int(port))) as raw:
            # The connection preface and the start of a HEADERS frame, then gone.
            raw.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x12\x04\x00\x00\x00\x00"
                        b"\x00" + b"\x00\x00\x40\x01\x04\x00\x00\x00\x01\x83\x86")  # fmt: skip
        counts["half_sent_requests"] += 1
    return counts


def large_message(address: str, kind: str) -> dict:
    """One 64 MB request: 1024 x 1024 item IDs of 64 bytes, or one 64 MB text."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = SERVE_MODEL
    if kind == "history":
        ids = np.array([b"i%063d" % (i % 800) for i in range(1 << 20)], dtype=object)
        request.inputs["history"].CopyFrom(tf.make_tensor_proto(ids.reshape(1024, 1024)))
    else:
        request.model_spec.signature_name = "encode_items"
        text = np.array([b"word " * ((64 << 20) // 5)], dtype=object)
        request.inputs["texts"].CopyFrom(tf.make_tensor_proto(text))
    channel, stub = stub_for(address)
    start = time.monotonic()
    try:
        stub.Predict(request, timeout=600)
        outcome = "OK"
    except grpc.RpcError as error:
        outcome = f"{error.code().name}: {(error.details() or '')[:200]}"
    channel.close()
    return {"kind": kind, "bytes": request.ByteSize(), "outcome": outcome,
            "seconds": round(time.monotonic() - start, 2)}  # fmt: skip


def bench_serve_clients(work: pathlib.Path, base: pathlib.Path, requests: list, texts: int,
                        rounds: int = 10, concurrency: int = 4) -> dict:  # fmt: skip
    """Well-behaved clients under load while others disconnect mid-request or send 64 MB."""
    import threading

    server = start_server(base, work / "serve-clients.log")
    reference = reference_answers(server.address, requests)
    load = Load(server.address, requests, reference, concurrency).start()
    # Each phase's window runs until the next one starts: what the others see includes the
    # aftermath (the server finishing work nobody waits for any more).
    phases, marks = {}, [("baseline", time.monotonic())]
    time.sleep(10.0)
    marks.append(("disconnects", time.monotonic()))
    phases["disconnects"] = misbehaving_clients(server.address, work, rounds, texts)
    time.sleep(20.0)
    for kind in ("history", "text"):
        marks.append((f"64MB {kind}", time.monotonic()))
        peak = [server.resident_bytes()]
        done = threading.Event()

        def sample(done: threading.Event, peak: list[int]) -> None:
            while not done.wait(0.1):
                peak[0] = max(peak[0], server.resident_bytes())

        sampler = threading.Thread(target=sample, args=(done, peak))
        sampler.start()
        phases[f"64MB {kind}"] = large_message(server.address, kind)
        done.set()
        sampler.join()
        phases[f"64MB {kind}"]["server_peak_rss_mb"] = round(peak[0] / 2**20)
        print(f"64 MB {kind}: {phases[f'64MB {kind}']}", flush=True)
        time.sleep(10.0)
    records = load.stop()
    marks.append(("end", time.monotonic()))
    others = {name: summary(records, since=t0, until=t1)
              for (name, t0), (_, t1) in zip(marks, marks[1:], strict=False)}  # fmt: skip
    alive = server.process.poll() is None
    same = alive and reference_answers(server.address, requests) == reference
    result = {"server": "export.serve", "concurrency": concurrency,
              "texts_per_abandoned_request": texts, "misbehaving": phases,
              "other_clients": others, "server_alive": alive, "same_answers_after": same,
              "server_rss_mb_after": round(server.resident_bytes() / 2**20)}  # fmt: skip
    for name, row in others.items():
        print(f"other clients during {name:<12}: {row}", flush=True)
    server.stop()
    return result


def bench_soak(work: pathlib.Path, base: pathlib.Path, requests: list, minutes: float,
               concurrency: int = 16) -> dict:  # fmt: skip
    """`minutes` of load at `concurrency` on loopback: p99 per minute and resident memory."""
    server = start_server(base, work / "soak.log")
    reference = reference_answers(server.address, requests)
    rss = [(0.0, server.resident_bytes())]
    load = Load(server.address, requests, reference, concurrency).start()
    begin = time.monotonic()
    while time.monotonic() - begin < minutes * 60:
        time.sleep(5.0)
        rss.append((time.monotonic() - begin, server.resident_bytes()))
    records = load.stop()
    per_minute = [summary(records, since=begin + 60 * m, until=begin + 60 * (m + 1))
                  for m in range(int(np.ceil(minutes)))]  # fmt: skip
    first = per_minute[0]["p99_ms"]
    warm = next(b for t, b in rss if t >= 60) if minutes > 1 else rss[1][1]
    result = {
        "server": "export.serve", "concurrency": concurrency, "minutes": minutes,
        "total": summary(records), "per_minute": per_minute,
        "worst_p99_over_first_minute": round(max(m["p99_ms"] for m in per_minute) / first, 2),
        "rss_mb": [[round(t), round(b / 2**20)] for t, b in rss],
        "rss_growth_after_first_minute": round(rss[-1][1] / warm - 1, 4),
        "rss_growth_from_idle": round(rss[-1][1] / rss[0][1] - 1, 4),
        "same_answers_after": reference_answers(server.address, requests) == reference,
    }  # fmt: skip
    server.stop()
    for m, row in enumerate(per_minute):
        print(f"soak minute {m + 1}: {row}", flush=True)
    print(f"soak: worst p99 / first minute {result['worst_p99_over_first_minute']}, RSS growth "
          f"after the first minute {result['rss_growth_after_first_minute']:.1%}, from idle "
          f"{result['rss_growth_from_idle']:.1%}", flush=True)  # fmt: skip
    return result


def main() -> None:
    from tf_unisrec.run_dir import RunDir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work", type=pathlib.Path, default=REPO / "benchmarks" / "work" / "faults"
    )
    parser.add_argument("--commands", nargs="+", default=["build", "train", "export"],
                        choices=["build", "train", "export", "serve-kill", "serve-clients",
                                 "soak"])  # fmt: skip
    parser.add_argument("--server-kills", type=int, default=5, help="SIGKILLs of export.serve")
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument(
        "--abandoned-texts",
        type=int,
        default=64,
        help="texts in each encode_items request whose client vanishes",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    out = REPO / "benchmarks" / "results" / "faults.json"
    results: dict = json.loads(out.read_text()) if out.exists() else {}
    results["seed"] = args.seed
    data = args.work / "reference"
    if "build" in args.commands:
        results["build"] = bench_build(args.work, args.kills, args.seed)
    elif not data.is_dir():
        subprocess.run(build_command(write_log(args.work / "source"), data), cwd=REPO, env=ENV,
                       check=True, capture_output=True)  # fmt: skip
    if set(args.commands) - {"build"}:
        from data_pipeline.encode_text import encode_dataset

        encode_dataset(data, pooling="mean", max_length=64, progress=False)
    if "train" in args.commands:
        results["train"] = bench_train(args.work, data, args.kills, args.seed)
    run = args.work / "train-reference"
    if set(args.commands) - {"build", "train"} and not RunDir(run).has_metrics():
        shutil.rmtree(run, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "tf_unisrec.train", "--data", str(data),
                        "--output", str(run), *TRAIN_FLAGS], cwd=REPO, env=ENV,
                       check=True, capture_output=True)  # fmt: skip
    if "export" in args.commands:
        results["export"] = bench_export(args.work, run, args.kills, args.seed)
    serving = [c for c in args.commands if c.startswith("serve") or c == "soak"]
    if serving:
        base, requests = serving_base(args.work), serving_requests(data)
    if "serve-kill" in serving:
        results["serve_kill"] = bench_serve_kill(args.work, base, requests, args.server_kills,
                                                 args.seed)  # fmt: skip
    if "serve-clients" in serving:
        key = "serve_clients" if args.abandoned_texts == 64 else "serve_clients_heavy"
        results[key] = bench_serve_clients(args.work, base, requests, args.abandoned_texts)
    if "soak" in serving:
        results["soak"] = bench_soak(args.work, base, requests, args.soak_minutes)
    if "build" in args.commands:
        kills = results["build"]["kills"]
        trusted_half = [k for k in kills
                        if k["reader_saw"] not in ("absent", "refused", "complete")]  # fmt: skip
        print(
            f"\ndata_pipeline.build: {len(kills)} SIGKILLs over "
            f"{results['build']['uninterrupted_s']:.1f} s; reader refused or saw the finished "
            f"dataset every time: {not trusted_half}; killed while writing: "
            f"{sum(k['while_writing'] for k in kills)}; reruns with the reference result: "
            f"{sum(k['rerun_same_result'] for k in kills)}/{len(kills)}; staging folders left "
            f"after the rerun: {sum(bool(k['leftover_staging']) for k in kills)}"
        )
    for name in ("train", "export"):
        if name in args.commands:
            rows = results[name]["kills"]
            print(f"{results[name]['command']}: {len(rows)} SIGKILLs over "
                  f"{results[name]['uninterrupted_s']:.1f} s; reruns with the reference result: "
                  f"{sum(r['rerun_same_result'] for r in rows)}/{len(rows)}")  # fmt: skip
    atomic_write_json(out, results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
