"""`python -m tf_unisrec.train` with no data: MovieLens-100K end to end, through a gRPC query."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from data_pipeline.dataset import DatasetDir
from export.client import ServingClient
from export.server_process import ModelServerProcess

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_main_job_trains_exports_and_serves(tmp_path, pypi):
    env = {**os.environ, "TF_UNISREC_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    shortened = [
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--hidden-dim",
        "16",
        "--num-experts",
        "2",
        "--max-length",
        "10",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "tf_unisrec.train", *shortened],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = tmp_path / "runs" / "movielens"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stage"] == "transductive" and set(metrics["test"]) >= {"recall@10", "ndcg@10"}
    assert "SavedModel" in result.stdout and "recall@10" in result.stdout

    base_path = run / "serving" / "unisrec"
    assert (base_path / "1" / "saved_model.pb").is_file()
    server = ModelServerProcess.create(
        "export.serve", str(base_path), "unisrec", str(tmp_path / "server.log")
    )
    server.start()
    try:
        dataset = DatasetDir.open(tmp_path / "cache" / "datasets" / "ml-100k")
        item_ids = [str(i) for i in dataset.item_ids[1:4]]
        answer = ServingClient(server.address, "unisrec").recommend([item_ids], k=5)
        assert len(answer.item_ids[0]) == 5 and all(answer.item_ids[0])
    finally:
        server.stop()
