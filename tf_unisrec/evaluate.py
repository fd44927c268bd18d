"""Full-ranking evaluation: Recall@K and NDCG@K over all items, leave-one-out."""

import argparse
import json
import pathlib
import sys
import time
import weakref
from collections.abc import Callable, Sequence

import tensorflow as tf

from data_pipeline.dataset import DatasetInfo, load_dataset
from data_pipeline.errors import DataError
from data_pipeline.reader import make_dataset
from tf_unisrec.config import TrainConfig
from tf_unisrec.metrics import FullRankingMetrics
from tf_unisrec.model import UniSRec

_QUERY_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def query_function(model: UniSRec) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """`model.sequence_vectors` as one traced graph, reused by every evaluation of `model`."""
    if model not in _QUERY_FUNCTIONS:
        _QUERY_FUNCTIONS[model] = tf.function(
            model.sequence_vectors,
            input_signature=[
                tf.TensorSpec([None, None], tf.int32, name="history"),
                tf.TensorSpec([None], tf.int32, name="length"),
            ],
        )
    return _QUERY_FUNCTIONS[model]


def evaluate(
    model: UniSRec,
    info: DatasetInfo,
    split: str,
    ks: Sequence[int] = (10, 50),
    batch_size: int = 4096,
    max_length: int = 50,
) -> dict[str, float]:
    """Ranks every item for every example of `split` (padding excluded, history items kept)."""
    items = model.item_vectors()[1:]
    metrics = FullRankingMetrics(items, tf.range(1, info.num_items + 1), ks=ks)
    queries = query_function(model)
    examples = make_dataset(info.path, split, batch_size=batch_size, max_len=max_length)
    for batch in examples:
        metrics.update_state(queries(batch["history"], batch["length"]), batch["target"])
    return metrics.result()


def format_metrics(rows: dict[str, dict[str, float]], ks: Sequence[int]) -> str:
    """A small text table, one row per split."""
    names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
    lines = ["split  " + "  ".join(f"{n:>9}" for n in names)]
    for split, values in rows.items():
        lines.append(f"{split:<6} " + "  ".join(f"{values[n]:9.4f}" for n in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tf_unisrec.evaluate",
        description="Full-ranking Recall@K / NDCG@K of a trained run.",
    )
    parser.add_argument("--run", required=True, help="run directory written by tf_unisrec.train")
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--ks", type=int, nargs="+", default=None)
    parser.add_argument("--batch-size", type=int, default=4096)
    args = parser.parse_args(argv)

    from tf_unisrec.modeling import build_model

    run = pathlib.Path(args.run)
    config_path = run / "config.yaml"
    if not config_path.is_file():
        print(f"error: {run} is not a run directory (no config.yaml)", file=sys.stderr)
        return 2
    config = TrainConfig.load(config_path)
    ks = tuple(args.ks or config.ks)
    try:
        info = load_dataset(config.data)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model = build_model(config, info)
    prefix = tf.train.latest_checkpoint(str(run / "best"))
    if prefix is None:
        print(f"error: {run}/best holds no checkpoint", file=sys.stderr)
        return 2
    tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
    start = time.perf_counter()
    results = evaluate(
        model, info, args.split, ks=ks, batch_size=args.batch_size, max_length=config.max_length
    )
    seconds = time.perf_counter() - start
    print(format_metrics({args.split: results}, ks))
    print(json.dumps({"split": args.split, **results, "seconds": round(seconds, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
