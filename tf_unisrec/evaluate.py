"""Full-ranking evaluation: Recall@K and NDCG@K over all items, leave-one-out.

python -m tf_unisrec.evaluate --run RUN_DIR [--split test] [--ks 10 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import tensorflow as tf

from data_pipeline.dataset import DatasetDir
from data_pipeline.errors import DataError
from data_pipeline.reader import make_dataset
from tf_unisrec.config import FIELDS
from tf_unisrec.metrics import FullRankingMetrics
from tf_unisrec.model import UniSRec
from tf_unisrec.run_dir import RunDir, RunError


class Evaluator:
    """Ranks every item for every example of a split (padding excluded, history items kept).

    The query encoder is traced once, when the evaluator is made, and reused by every pass.
    With `chunk_size`, the item table is adapted and scored that many items at a time with a
    running top-K, so memory stays bounded whatever the catalogue size; the metrics are the
    same.

    Args:
        model: the model to evaluate.
        dataset: the dataset whose splits are ranked.
        ks: the cut-offs.
        batch_size: histories per batch.
        max_length: histories keep their last `max_length` items.
        chunk_size: items adapted and scored at once; None: the whole catalogue.
    """

    def __init__(
        self,
        model: UniSRec,
        dataset: DatasetDir,
        *,
        ks: Sequence[int],
        batch_size: int,
        max_length: int,
        chunk_size: int | None = None,
    ) -> None:
        self.model = model
        self.chunk_size = chunk_size
        self.dataset = dataset
        self.ks = tuple(ks)
        self.batch_size = batch_size
        self.max_length = max_length
        self.queries = tf.function(
            model.sequence_vectors,
            input_signature=[
                tf.TensorSpec([None, None], tf.int32, name="history"),
                tf.TensorSpec([None], tf.int32, name="length"),
            ],
        )

    def __call__(self, split: str) -> dict[str, float]:
        """Recall@K and NDCG@K of `split` ("valid" or "test"), keyed "recall@10", ..."""
        chunk = self.chunk_size or max(self.dataset.num_items, 1)
        metrics = FullRankingMetrics(self.model.item_vector_chunks(chunk), ks=self.ks)
        examples = make_dataset(
            self.dataset, split, batch_size=self.batch_size, max_len=self.max_length
        )
        for batch in examples:
            metrics.update_state(self.queries(batch["history"], batch["length"]), batch["target"])
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
        description="Full-ranking Recall@K / NDCG@K of a trained run's best weights.",
    )
    parser.add_argument("--run", required=True, help="run folder written by tf_unisrec.train")
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--ks", type=int, nargs="+", help="cut-offs (default: the run's)")
    parser.add_argument(
        "--batch-size",
        type=int,
        help=f"histories per batch (default: the run's, {FIELDS['eval_batch_size'].default})",
    )
    args = parser.parse_args(argv)
    try:
        config, dataset, model = RunDir(args.run).load_model(strict=True)
    except (RunError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    ks = tuple(args.ks or config.ks)
    evaluator = Evaluator(
        model,
        dataset,
        ks=ks,
        batch_size=args.batch_size or config.eval_batch_size,
        max_length=config.max_length,
        chunk_size=config.eval_chunk_size,
    )
    start = time.perf_counter()
    try:
        results = evaluator(args.split)
    except tf.errors.DataLossError as error:
        print(f"error: {dataset.explain_read_error(error)}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(format_metrics({args.split: results}, ks))
    print(json.dumps({"split": args.split, **results, "seconds": round(seconds, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
