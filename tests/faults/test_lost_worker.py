"""A MultiWorkerMirroredStrategy worker killed mid-epoch: the other worker stops with one line
saying how to resume, and rerunning both workers resumes from the last checkpoint."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from unisrec_factory import loopback_ports, write_dataset

REPO = pathlib.Path(__file__).resolve().parents[2]
# 61 training rows in batches of 2: 31 steps, a few seconds an epoch, long enough to kill in.
FLAGS = ["--hidden-dim", "16", "--num-layers", "1", "--num-heads", "2", "--intermediate-dim",
         "16", "--max-length", "5", "--num-experts", "2", "--batch-size", "2",
         "--stage", "pretrain", "--strategy", "multi_worker", "--epochs", "4"]  # fmt: skip
BOUND = 120  # seconds the surviving worker may take to stop


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("lost_worker"))


class Worker:
    """One `tf_unisrec.train` worker process; its output is collected as it comes."""

    def __init__(self, workers, index, args):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CONFIG": json.dumps(tf_config)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tf_unisrec.train", *FLAGS, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines, self.errors = [], []
        pipes = ((self.process.stdout, self.lines), (self.process.stderr, self.errors))
        self.readers = [
            threading.Thread(target=self._read, args=pipe, daemon=True) for pipe in pipes
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(pipe, lines):
        for line in pipe:
            lines.append(line)

    def wait_for(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while not any(line.startswith(prefix) for line in self.lines):
            assert self.process.poll() is None and time.monotonic() < deadline, self.tail()
            time.sleep(0.1)

    def finish(self, timeout):
        self.process.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=10)
        return self.output()

    def output(self):
        return "".join(self.lines) + "".join(self.errors)

    def tail(self):
        return self.output()[-4000:]

    def epochs_started(self):
        return [int(m[1]) for line in self.lines if (m := re.match(r"epoch (\d+)/", line))]


@pytest.mark.slow
def test_killed_worker_stops_the_job_and_a_rerun_resumes(data_dir, tmp_path):
    run = tmp_path / "run"
    ports = loopback_ports(2)
    workers = [f"127.0.0.1:{p}" for p in ports]
    args = ["--data", str(data_dir), "--output", str(run)]
    started = [Worker(workers, i, args) for i in range(2)]
    try:
        # The chief starts epoch 3 once epoch 2's checkpoint is saved; a second later both
        # workers are a few steps into it.
        started[0].wait_for("epoch 3/", timeout=600)
        time.sleep(1)
        started[1].process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        started[0].finish(timeout=BOUND + 60)
        seconds = time.monotonic() - killed
        print(f"the surviving worker stopped {seconds:.1f} s after the kill")
    finally:
        for worker in started:
            worker.process.kill()
    assert started[0].process.returncode == 2, started[0].tail()
    assert seconds < BOUND, (seconds, started[0].tail())
    stderr = "".join(started[0].errors)
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in stderr and len(errors) == 1, started[0].tail()
    assert errors[0].startswith(f"error: worker 1 ({workers[1]}) of the cluster stopped responding")
    assert "restart all 2 workers with the same command" in errors[0]
    assert f"{run}/checkpoints/ckpt-2, saved at the end of epoch 2" in errors[0], errors[0]

    rerun = [Worker(workers, i, args) for i in range(2)]
    try:
        outputs = [worker.finish(timeout=900) for worker in rerun]
    finally:
        for worker in rerun:
            worker.process.kill()
    for worker, out in zip(rerun, outputs, strict=True):
        assert worker.process.returncode == 0, worker.tail()
        # Every worker resumes from the chief's checkpoint, not only the chief.
        assert f"resuming {run} at epoch 3, step 0" in out, worker.tail()
        assert worker.epochs_started() == [3, 4], worker.tail()
    assert [r["epoch"] for r in json.loads((run / "history.json").read_text())] == [1, 2, 3, 4]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 4 and metrics["best_epoch"] == 4


@pytest.mark.parametrize(
    "message, lost",
    [
        # What worker 0 raised when worker 1 was killed, and worker 1 when worker 0 was.
        (
            "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/"
            "replica:0/task:0/device:CPU:0}} Collective ops is aborted by: Error reported from "
            "/job:worker/task:1: The following tasks are unhealthy (stopped sending heartbeats):\n"
            "/job:worker/replica:0/task:1\nThe tasks have crashed.",
            "worker 1 (127.0.0.1:2001)",
        ),
        (
            "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/"
            "replica:0/task:1/device:CPU:0}} Collective ops is aborted by: recvmsg:Connection "
            "reset by peer\nAdditional GRPC error information from remote target "
            "/job:worker/replica:0/task:0 while calling /tensorflow.WorkerService/RecvBuf:",
            "worker 0 (127.0.0.1:2000)",
        ),
        ("Collective ops is aborted by: something else", "a worker"),
    ],
)
def test_the_error_names_the_lost_worker(message, lost):
    import tensorflow as tf

    from tf_unisrec.train import lost_worker

    cluster = tf.train.ClusterSpec({"worker": ["127.0.0.1:2000", "127.0.0.1:2001"]})
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(cluster, "worker", 0)
    strategy = type("Strategy", (), {"cluster_resolver": resolver})()
    error = tf.errors.UnavailableError(None, None, message)
    assert lost_worker(error, strategy) == (lost, 2)


def test_the_error_names_the_checkpoint_to_resume_from(tmp_path):
    import tensorflow as tf

    from tf_unisrec.run_dir import RunDir

    run = RunDir(tmp_path / "run")
    assert "to train from the start (no checkpoint" in str(run.lost_worker_error("a worker", 2))
    epoch = tf.Variable(2, dtype=tf.int64)
    step = tf.Variable(5, dtype=tf.int64)
    run.checkpoint_manager(tf.train.Checkpoint(epoch=epoch, step=step)).save()
    # A checkpoint saved on a signal, mid-epoch: the third epoch, after 5 steps.
    assert str(run.lost_worker_error("worker 1 (127.0.0.1:2001)", 2)) == (
        "worker 1 (127.0.0.1:2001) of the cluster stopped responding; the job stopped: restart "
        f"all 2 workers with the same command to resume from the last checkpoint, "
        f"{run.checkpoints}/ckpt-1, saved at epoch 3, step 5"
    )
