"""The main job: `python -m tf_unisrec.train` with no dataset, from raw data to a SavedModel.

Builds MovieLens-100K and its MiniLM text features in the cache, trains a small transductive
UniSRec, evaluates it, exports it for TF-Serving and prints where everything went. The one
module that uses all three packages (`data_pipeline`, `tf_unisrec`, `export`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from data_pipeline.build import build
from data_pipeline.dataset import DatasetDir
from data_pipeline.encode_text import encode_dataset
from data_pipeline.errors import DataError
from data_pipeline.sources.movielens import cache_dir
from export.saved_model import export_saved_model
from tf_unisrec.config import TrainConfig
from tf_unisrec.run_dir import METRICS, RunDir, RunError
from tf_unisrec.train import is_chief, make_strategy, train_or_explain

# A small, quick model; any flag given on the command line wins.
SETTINGS = {
    "stage": "transductive",
    "output": "runs/movielens",
    "hidden_dim": 64,
    "max_length": 30,
    "epochs": 3,
}
MODEL_NAME = "unisrec"


def default_dataset() -> str:
    """Builds MovieLens-100K and its MiniLM text features in the cache, if missing."""
    data_dir = cache_dir() / "datasets" / "ml-100k"
    print(f"dataset: MovieLens-100K in {data_dir}", flush=True)
    build([], data_dir)
    encode_dataset(data_dir)
    return str(data_dir)


def main(given: dict[str, Any], resume: bool = True) -> int:
    """Runs the main job with the options given on the command line over `SETTINGS`."""
    try:
        config = TrainConfig.from_dict({**SETTINGS, **given})
        strategy = make_strategy(config)
        config = dataclasses.replace(config, data=default_dataset())
        print(json.dumps(dataclasses.asdict(config), default=list), flush=True)
        metrics = train_or_explain(config, resume=resume, strategy=strategy)
    except (DataError, RunError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if is_chief(strategy):
        report(RunDir(config.output), DatasetDir.open(config.data), metrics)
    return 0


def report(run: RunDir, dataset: DatasetDir, metrics: dict[str, Any]) -> None:
    """Exports the run for TF-Serving and prints where everything went."""
    base_path = run.path / "serving" / MODEL_NAME
    export = export_saved_model(run.path, base_path, model_name=MODEL_NAME)
    example = " ".join(str(i) for i in dataset.item_ids[1:3])
    print()
    print(
        f"test recall@10 {metrics['test']['recall@10']:.4f}, ndcg@10 "
        f"{metrics['test']['ndcg@10']:.4f} (full ranking over all items)"
    )
    print(f"run folder         {run.path}")
    print(f"metrics            {run.path / METRICS}")
    print(f"TensorBoard        tensorboard --logdir {run.logs}")
    print(f"SavedModel         {export.path}  ({', '.join(export.signatures)})")
    print(f"TF-Serving config  {export.models_config}")
    print(
        f"serve locally      python -m export.serve --port 8500 --model_name {MODEL_NAME} "
        f"--model_base_path {base_path}"
    )
    print(
        f"query              python -m export.client --server 127.0.0.1:8500 --model "
        f"{MODEL_NAME} --history {example} --k 10"
    )
