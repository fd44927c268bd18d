"""A full disk, simulated with a file-size limit (RLIMIT_FSIZE) on the command's process: one
error line, exit 2, nothing half-written left for a reader, earlier outputs intact."""

import hashlib
import os
import pathlib
import resource
import signal
import subprocess
import sys

import pytest
from unisrec_factory import write_dataset, write_run

from data_pipeline.build import build
from data_pipeline.dataset import DatasetDir
from export.saved_model import export_saved_model
from tf_unisrec import train
from tf_unisrec.run_dir import RunDir

REPO = pathlib.Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_with_file_size_limit(module: str, *args: str, limit: int) -> subprocess.CompletedProcess:
    """`python -m module args` where no file may grow past `limit` bytes (writes fail with
    EFBIG, as on a full disk, instead of the process being killed by SIGXFSZ)."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=ENV,
                          preexec_fn=limit_files, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def tree(folder: pathlib.Path) -> dict[str, str]:
    """Every file and folder under `folder` (hidden ones too), files with their sha256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "/"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("full-disk"))


def write_log(folder: pathlib.Path, users: int) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["user_id,item_id,timestamp"]
    rows += [f"u{u},i{(u + s) % 20},{100 * s}" for u in range(users) for s in range(6)]
    (folder / "log.csv").write_text("\n".join(rows) + "\n")
    items = ["item_id,text"] + [f"i{i},item number {i}" for i in range(20)]
    (folder / "items.csv").write_text("\n".join(items) + "\n")
    return folder


def build_with_limit(source: pathlib.Path, output: pathlib.Path) -> subprocess.CompletedProcess:
    return run_with_file_size_limit("data_pipeline.build", "--input", str(source), "--output",
                                    str(output), "--min-user", "0", "--min-item", "0",
                                    "--shards", "1", "--no-text-features", limit=1024)  # fmt: skip


@pytest.fixture
def rebuilt_on_full_disk(tmp_path):
    """A dataset built once, then built again from a longer log with no room to write."""
    output = tmp_path / "data"
    build([[write_log(tmp_path / "source", users=30)]], output, min_user=0, min_item=0, shards=1)
    before = tree(tmp_path)
    result = build_with_limit(write_log(tmp_path / "source", users=60), output)
    return tmp_path, output, before, result


def test_full_disk_during_build_keeps_the_previous_build(rebuilt_on_full_disk):
    root, output, before, result = rebuilt_on_full_disk
    assert result.returncode != 0
    after = tree(root)
    assert {k: v for k, v in after.items() if k.startswith("data")} == {
        k: v for k, v in before.items() if k.startswith("data")
    }
    assert not [name for name in os.listdir(root) if name.startswith(".")]  # no staging left
    DatasetDir.open(output, verify=True)  # the reader accepts it, checksums included


def test_full_disk_during_build_is_one_line(rebuilt_on_full_disk):
    _, output, _, result = rebuilt_on_full_disk
    assert result.returncode == 2
    line = one_error_line(result)
    assert "out of disk space" in line and str(output) in line and "intact" in line


TRAIN_FLAGS = ["--stage", "inductive", "--hidden-dim", "16", "--num-layers", "1",
               "--intermediate-dim", "16", "--max-length", "5", "--num-experts", "2",
               "--batch-size", "16", "--seed", "1"]  # fmt: skip


@pytest.fixture
def run_out_of_space(data_dir, tmp_path):
    """A run with one epoch done, then resumed for a second one with no room for its
    checkpoint (the training state with the optimizer's slots: larger than best/)."""
    run = tmp_path / "run"
    flags = ["--data", str(data_dir), "--output", str(run), *TRAIN_FLAGS]
    assert train.main([*flags, "--epochs", "1"]) == 0
    saved = tree(run / "checkpoints")
    [best] = run.glob("best/ckpt-1.data-*")
    [state] = run.glob("checkpoints/ckpt-1.data-*")
    assert best.stat().st_size < state.stat().st_size
    limit = (best.stat().st_size + state.stat().st_size) // 2
    result = run_with_file_size_limit("tf_unisrec.train", *flags, "--epochs", "2", limit=limit)
    return run, flags, saved, result


@pytest.mark.slow  # two trainings, one in a fresh process: about a minute on 2 cores
def test_full_disk_while_checkpointing_keeps_the_last_checkpoint(run_out_of_space):
    run, flags, saved, result = run_out_of_space
    assert result.returncode == 2
    line = one_error_line(result)
    assert f"out of disk space writing a checkpoint in {run / 'checkpoints'}" in line
    assert "File too large" in line
    assert f"the last checkpoint, {run / 'checkpoints' / 'ckpt-1'}, is intact" in line
    # Nothing of the failed save is left where a reader (resume, evaluate, --init) looks.
    assert tree(run / "checkpoints") == saved
    RunDir(run).load_model(strict=True)  # best/ holds whole checkpoints only
    assert [r["epoch"] for r in RunDir(run).read_history()] == [1, 2]  # logged, not saved
    assert RunDir(run).read_metrics()["epochs_run"] == 1  # the first run's, untouched

    # Rerun with room: it resumes from ckpt-1, trains epoch 2 again and logs it once.
    assert train.main([*flags, "--epochs", "2"]) == 0
    assert [r["epoch"] for r in RunDir(run).read_history()] == [1, 2]
    assert RunDir(run).read_metrics()["epochs_run"] == 2


@pytest.mark.slow
def test_full_disk_rerun_ends_as_an_uninterrupted_run(run_out_of_space, data_dir, tmp_path):
    run, flags, _, _ = run_out_of_space
    assert train.main([*flags, "--epochs", "2"]) == 0
    reference = tmp_path / "reference"
    reference_flags = ["--data", str(data_dir), "--output", str(reference), *TRAIN_FLAGS]
    assert train.main([*reference_flags, "--epochs", "2"]) == 0
    assert RunDir(run).read_metrics()["test"] == RunDir(reference).read_metrics()["test"]


@pytest.mark.slow  # a fresh process importing the export's stack: about 30 s on 2 cores
def test_full_disk_during_export_keeps_the_previous_version(data_dir, tmp_path):
    run = write_run(data_dir, tmp_path / "run", "sasrec")  # no text encoder: a quick export
    base = tmp_path / "models" / "unisrec"
    export_saved_model(run, base, max_k=5)
    before = tree(tmp_path / "models")
    result = run_with_file_size_limit("export.saved_model", "--run", str(run), "--output",
                                      str(base), "--max-k", "5", limit=4096)  # fmt: skip
    assert result.returncode == 2
    line = one_error_line(result)
    assert f"out of disk space writing {base / '2'}" in line and "File too large" in line
    assert f"the earlier version 1 under {base} is intact" in line
    # No version 2, no staging folder, models.config and version 1 byte for byte as they were.
    assert tree(tmp_path / "models") == before
