"""`python -m tf_unisrec.evaluate`: the run's own metrics, and refusal of a mismatched model."""

import numpy as np
import pytest
from model_factory import tiny_config
from unisrec_factory import write_dataset, write_run

from data_pipeline.dataset import DatasetDir
from tf_unisrec.builder import build_model_from_tables
from tf_unisrec.config import TrainConfig
from tf_unisrec.evaluate import Evaluator, main
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


@pytest.mark.slow
def test_chunked_evaluation_equals_whole_catalogue_on_scientific(scientific):
    dataset = DatasetDir.open(scientific)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(dataset.num_items + 1, 24)).astype("float32")
    features[:50] = features[50]  # identical texts: exact ties, broken by item index
    features[0] = 0
    config = tiny_config("inductive", hidden_dim=16, max_length=50)
    model = build_model_from_tables(config, dataset.num_items, features)
    results = {
        chunk: Evaluator(
            model, dataset, ks=(10, 50), batch_size=4096, max_length=50, chunk_size=chunk
        )("test")  # fmt: skip
        for chunk in (None, 1000, 4096)
    }
    assert results[None]["recall@50"] > 0
    assert results[1000] == results[None] and results[4096] == results[None]
