"""End-to-end training runs on a tiny dataset with real MiniLM features."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import yaml
from unisrec_factory import loopback_ports, write_dataset

REPO = pathlib.Path(__file__).resolve().parents[2]
ARCHITECTURE = ["--hidden-dim", "16", "--num-layers", "1", "--num-heads", "2",
                "--intermediate-dim", "16", "--max-length", "5", "--num-experts", "2"]  # fmt: skip
TINY = [*ARCHITECTURE, "--batch-size", "8", "--eval-batch-size", "64"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("tiny"))


def run_train(args, tiny=TINY, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tf_unisrec.train", *tiny, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        **kwargs,
    )


def finish(process, timeout=240):
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-4000:]
    return out


def checkpoint_values(directory, prefix="model/"):
    reader = tf.train.load_checkpoint(str(directory))
    return {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if key.startswith(prefix) and "OPTIMIZER_SLOT" not in key
    }


def test_train_writes_run_directory(data_dir, tmp_path):
    run = tmp_path / "run"
    finish(
        run_train(
            [
                "--data",
                str(data_dir),
                "--stage",
                "transductive",
                "--output",
                str(run),
                "--epochs",
                "2",
            ]
        )
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["stage"] == "transductive"
    for split in ("valid", "test"):
        assert set(metrics[split]) == {"recall@10", "ndcg@10", "recall@50", "ndcg@50"}
        assert 0.0 <= metrics[split]["ndcg@10"] <= metrics[split]["recall@10"] <= 1.0
    assert metrics["train_examples_per_second"] > 0
    assert [r["epoch"] for r in json.loads((run / "history.json").read_text())] == [1, 2]
    assert (run / "config.yaml").is_file() and list((run / "logs").iterdir())
    assert tf.train.latest_checkpoint(str(run / "best"))

    evaluate = subprocess.run(
        [sys.executable, "-m", "tf_unisrec.evaluate", "--run", str(run)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    reported = json.loads(evaluate.stdout.strip().splitlines()[-1])
    assert reported["ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"], abs=1e-6)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_state(data_dir, tmp_path):
    common = ["--data", str(data_dir), "--stage", "pretrain", "--epochs", "4", "--batch-size", "4"]
    finish(run_train([*common, "--output", str(tmp_path / "whole")]))

    interrupted = tmp_path / "interrupted"
    process = run_train([*common, "--output", str(interrupted)])
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("epoch 2/"):
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            break
    rest, _ = process.communicate(timeout=240)
    assert process.returncode != 0 and "stopped by signal" in rest, "".join(lines) + rest
    out = finish(run_train([*common, "--output", str(interrupted)]))
    assert "resuming" in out

    whole = checkpoint_values(tmp_path / "whole" / "checkpoints", prefix="")
    resumed = checkpoint_values(interrupted / "checkpoints", prefix="")
    assert whole.keys() == resumed.keys()
    for key in whole:
        if key.startswith("model/") or key.startswith("optimizer/"):
            np.testing.assert_array_equal(resumed[key], whole[key], err_msg=key)

    # The interrupted epoch logs the mean loss of all its steps, not only of those after resuming.
    def losses(run):
        return [record["loss"] for record in json.loads((run / "history.json").read_text())]

    np.testing.assert_allclose(losses(interrupted), losses(tmp_path / "whole"), rtol=1e-9)


@pytest.mark.slow
def test_fine_tuning_from_pretrained_trains_only_adaptor_norm_and_ids(data_dir, tmp_path):
    pretrained = tmp_path / "pretrain"
    finish(
        run_train(
            [
                "--data",
                str(data_dir),
                "--stage",
                "pretrain",
                "--epochs",
                "1",
                "--output",
                str(pretrained),
            ]
        )
    )
    tuned = tmp_path / "tuned"
    finish(
        run_train(
            [
                "--data",
                str(data_dir),
                "--stage",
                "transductive",
                "--epochs",
                "2",
                "--init",
                str(pretrained),
                "--output",
                str(tuned),
            ]
        )
    )
    before = checkpoint_values(pretrained / "best")
    after = checkpoint_values(tuned / "checkpoints")
    frozen = [k for k in before if "sequence_encoder" in k and "input_norm" not in k]
    trained = [k for k in before if "item_tower/adaptor" in k and "kernel" in k]
    assert frozen and trained
    for key in frozen:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert any(not np.array_equal(after[k], before[k]) for k in trained)
    ids = [k for k in after if "id_embedding" in k]
    assert ids and not any(k in before for k in ids)


@pytest.mark.slow
def test_init_takes_the_source_architecture(data_dir, tmp_path):
    pretrained = tmp_path / "pretrain"
    common = ["--data", str(data_dir), "--epochs", "1"]
    finish(run_train([*common, "--stage", "pretrain", "--output", str(pretrained)]))
    # A second pre-training continues from the first: same weights to start, nothing frozen.
    again = tmp_path / "again"
    finish(
        run_train(
            [*common, "--stage", "pretrain", "--init", str(pretrained), "--output", str(again)],
            tiny=["--batch-size", "8"],
        )
    )
    config = yaml.safe_load((again / "config.yaml").read_text())
    assert config["hidden_dim"] == 16 and config["num_experts"] == 2
    assert config["data"] == str(data_dir.absolute()) and config["init"] == str(pretrained)
    first, second = checkpoint_values(pretrained / "best"), checkpoint_values(again / "best")
    blocks = [k for k in first if "sequence_encoder" in k and "block" in k and "kernel" in k]
    assert blocks and any(not np.array_equal(first[k], second[k]) for k in blocks)

    conflict = run_train(
        [*common, "--stage", "inductive", "--init", str(pretrained), "--hidden-dim", "32",
         "--output", str(tmp_path / "conflict")],
        tiny=[],
    )  # fmt: skip
    out, _ = conflict.communicate(timeout=120)
    assert conflict.returncode == 2 and "--hidden-dim 32 (the run has 16)" in out, out
    assert "Traceback" not in out


def test_init_from_a_missing_run_is_a_clear_error(data_dir, tmp_path):
    process = run_train(
        [
            "--data",
            str(data_dir),
            "--stage",
            "inductive",
            "--init",
            str(tmp_path / "nope"),
            "--output",
            str(tmp_path / "r"),
        ]
    )
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 2 and "--init" in out and "nope" in out
    assert "Traceback" not in out


def test_missing_dataset_is_a_clear_error(tmp_path):
    process = run_train(["--data", str(tmp_path / "absent"), "--output", str(tmp_path / "r")])
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 2 and "absent" in out and "no manifest.json" in out
    assert "Traceback" not in out


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_trains_on_loopback(data_dir, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in loopback_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CONFIG": json.dumps(tf_config)}
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tf_unisrec.train",
                    *TINY,
                    "--data",
                    str(data_dir),
                    "--stage",
                    "pretrain",
                    "--strategy",
                    "multi_worker",
                    "--epochs",
                    "1",
                    "--steps-per-epoch",
                    "3",
                    "--output",
                    str(tmp_path / "mw"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
        )
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    for process, out in zip(processes, outputs, strict=True):
        assert process.returncode == 0, out[-4000:]
    metrics = json.loads((tmp_path / "mw" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1


@pytest.mark.slow
def test_mirrored_strategy_over_logical_cpus(data_dir, tmp_path):
    out = finish(
        run_train(
            ["--data", str(data_dir), "--stage", "pretrain", "--strategy", "mirrored",
             "--cpu-replicas", "2", "--epochs", "1", "--output", str(tmp_path / "m")]
        )
    )  # fmt: skip
    assert "training on 2 replicas" in out
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["train_examples_per_second"] > 0


def test_a_checkpoint_from_before_the_epoch_loss_resumes(data_dir, tmp_path):
    from tf_unisrec.config import parse_args
    from tf_unisrec.train import Trainer, make_strategy

    def trainer(name, resume=True):
        flags = [*TINY, "--data", str(data_dir), "--stage", "pretrain", "--output", str(name)]
        config = parse_args(flags)[0]
        return Trainer(config, make_strategy(config), resume=resume)

    older, newer = tmp_path / "older", tmp_path / "newer"
    for run in (older, newer):
        stopped = trainer(run, resume=False)
        stopped.step.assign(3)
        stopped.epoch_loss.assign(12.0)
        # What an earlier version saved mid-epoch: the same state without the epoch's loss.
        saved = stopped.required_checkpoint if run == older else stopped.checkpoint
        stopped.run_dir.checkpoint_manager(saved).save()

    resumed = trainer(older)
    assert resumed.restore() and int(resumed.step.numpy()) == 3
    # Its epoch's mean loss covers the steps from the resume on.
    assert resumed.loss_from_step == 3 and float(resumed.epoch_loss.numpy()) == 0.0
    resumed = trainer(newer)
    assert resumed.restore() and int(resumed.step.numpy()) == 3
    assert resumed.loss_from_step == 0 and float(resumed.epoch_loss.numpy()) == 12.0


def test_early_stopping_follows_recbole():
    from tf_unisrec.train import early_stopping

    scores = [0.1, 0.2, 0.2, 0.15, 0.19, 0.2, 0.1, 0.1, 0.1, 0.3]
    best, bad, best_epoch, stopped_after = -1.0, 0, None, None
    for epoch, score in enumerate(scores):
        best, bad, stop, improved = early_stopping(score, best, bad, patience=2)
        if improved:
            best_epoch = epoch
        if stop:
            stopped_after = epoch
            break
    # An equal score is an improvement (epoch 5 ties epoch 1's 0.2 and becomes the best);
    # training stops once more than `patience` epochs in a row bring none.
    assert (best, best_epoch, stopped_after) == (0.2, 5, 8)


def test_truncated_shard_names_the_file_and_the_fix(data_dir, tmp_path):
    damaged = tmp_path / "data"
    shutil.copytree(data_dir, damaged)
    shard = next(damaged.glob("train-*.tfrecord"))
    shard.write_bytes(shard.read_bytes()[:-7])  # a copy cut short
    process = run_train(
        ["--data", str(damaged), "--stage", "sasrec", "--epochs", "1", "--output",
         str(tmp_path / "r")]
    )  # fmt: skip
    out, _ = process.communicate(timeout=240)
    assert process.returncode == 2, out[-3000:]
    assert f"error: {shard}: damaged" in out and "data_pipeline.build" in out
    assert "Traceback" not in out
