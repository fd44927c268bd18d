"""Damaged files in a dataset or run folder: one line naming the file and the fix, exit 2."""

import shutil

import pytest
from unisrec_factory import write_dataset, write_run

from tf_unisrec import evaluate, train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("faults"))


@pytest.fixture
def dataset_copy(data_dir, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    return copy


def cut_short(path, keep=0.5):
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


def train_main(data, tmp_path, *flags):
    return train.main(["--data", str(data), "--output", str(tmp_path / "run"), "--epochs", "1",
                       "--hidden-dim", "16", "--num-experts", "2", *flags])  # fmt: skip


@pytest.mark.parametrize(
    "name, fix",
    [
        ("text_features.npy", "encode_text"),
        ("manifest.json", "rebuild"),
        ("items.tsv", "rebuild"),
    ],
)
def test_damaged_dataset_file(dataset_copy, tmp_path, capsys, name, fix):
    cut_short(dataset_copy / name)
    assert train_main(dataset_copy, tmp_path, "--stage", "inductive") == 2
    line = one_error_line(capsys)
    assert name in line and fix in line


def test_verify_data_finds_a_damaged_shard_before_training(dataset_copy, tmp_path, capsys):
    shard = next(dataset_copy.glob("valid-*.tfrecord"))
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF  # same size, other bytes: only the checksum can tell
    shard.write_bytes(bytes(data))
    assert train_main(dataset_copy, tmp_path, "--stage", "sasrec", "--verify-data", "true") == 2
    line = one_error_line(capsys)
    assert str(shard) in line and "sha256" in line and "data_pipeline.build" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.fixture
def run_copy(data_dir, tmp_path):
    return write_run(data_dir, tmp_path / "run", "inductive")


def test_damaged_config(run_copy, capsys):
    (run_copy / "config.yaml").write_text("stage: [unclosed\n")
    assert evaluate.main(["--run", str(run_copy)]) == 2
    line = one_error_line(capsys)
    assert "config.yaml" in line and "train it again" in line


def test_damaged_checkpoint(run_copy, capsys):
    cut_short(next((run_copy / "best").glob("*.data-*")))
    assert evaluate.main(["--run", str(run_copy)]) == 2
    line = one_error_line(capsys)
    assert "best/ckpt-1" in line and "damaged checkpoint" in line
