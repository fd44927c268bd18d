"""`python -m tf_unisrec.evaluate`: the run's own metrics, and refusal of a mismatched model."""

import pytest
from unisrec_factory import write_dataset, write_run

from tf_unisrec.config import TrainConfig
from tf_unisrec.evaluate import main
from tf_unisrec.run_dir import RunDir


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    return write_run(write_dataset(root), root / "run", "transductive")


def test_evaluates_the_best_weights(run, capsys):
    assert main(["--run", str(run), "--split", "valid", "--ks", "5"]) == 0
    out = capsys.readouterr().out
    assert "recall@5" in out and "ndcg@5" in out


def test_refuses_a_checkpoint_of_another_model(run, tmp_path, capsys):
    other = RunDir(tmp_path / "other")
    config = RunDir(run).read_config()
    other.write_config(TrainConfig.from_dict({**config.to_dict(), "num_experts": 3}))
    (other.path / "best").symlink_to(run / "best")
    assert main(["--run", str(other.path)]) == 2
    err = capsys.readouterr().err
    assert "does not match the model" in err and str(other.path) in err


def test_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path, capsys):
    assert main(["--run", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
