"""Items per second of the TensorFlow text encoder on Scientific's 4,385 item texts.

    python benchmarks/bench_text_encoder.py [--data ../shared/data] [--batch-size 64] [--rounds 3]

Both sides see the same length-sorted batches of token ids (from our in-graph tokenizer), padded to
each batch's longest text. When torch and transformers are importable, the PyTorch reference
(`transformers.BertModel`, `torch.set_num_threads(2)`, inference mode) runs in the same process,
alternating rounds with ours so that both see the same machine load; the best round of each counts.
Tokenization is timed separately for our side (it is part of the SavedModel's work). Prints a table
and writes benchmarks/results/text_encoder.json.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data_pipeline.encode_text import encode_texts  # noqa: E402
from data_pipeline.fileio import atomic_write_json  # noqa: E402
from data_pipeline.text.encoder import TextEncoder  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "text_encoder.json"


def scientific_texts(data: pathlib.Path) -> list[str]:
    """The item texts of Scientific.text, in file order."""
    lines = (data / "Scientific" / "Scientific.text").read_text(encoding="utf-8").split("\n")
    return [line.split("\t", 1)[1] for line in lines[1:] if "\t" in line]


def length_sorted_batches(encoder: TextEncoder, texts: list[str], batch_size: int) -> list:
    """Token ids and padding masks, sorted by length, each batch padded to its longest text."""
    ragged = encoder.tokenizer.tokenize(tf.constant(texts))
    lengths = ragged.row_lengths().numpy()
    ids = ragged.to_list()
    order = np.argsort(lengths, kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        tokens = np.zeros((len(rows), lengths[rows].max()), np.int32)
        mask = np.zeros_like(tokens)
        for r, i in enumerate(rows):
            tokens[r, : lengths[i]] = ids[i]
            mask[r, : lengths[i]] = 1
        batches.append((tokens, mask))
    return batches


def pytorch_reference(path: pathlib.Path):
    """A callable running the PyTorch BertModel on one batch, or None without torch."""
    try:
        import torch
        import transformers
    except ImportError:
        return None
    torch.set_num_threads(2)
    model = transformers.BertModel.from_pretrained(str(path)).eval()

    def run(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(input_ids=torch.from_numpy(tokens), attention_mask=torch.from_numpy(mask))
            return out.last_hidden_state[:, 0].numpy()

    return run


def timed(run, batches: list) -> float:
    """Seconds to run every batch once."""
    start = time.perf_counter()
    for tokens, mask in batches:
        run(tokens, mask)
    return time.perf_counter() - start


def main() -> None:
    """Runs the benchmark, prints the table and writes the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=pathlib.Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    texts = scientific_texts(args.data)
    encoder = TextEncoder(pooling="cls", max_length=512)
    batches = length_sorted_batches(encoder, texts, args.batch_size)
    lengths = np.concatenate([m.sum(axis=1) for _, m in batches])
    padded = sum(m.size for _, m in batches)

    def ours(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return encoder.encode_tokens(tokens, mask).numpy()

    reference = pytorch_reference(encoder.path)
    runners = {"tensorflow (keras-hub)": ours}
    if reference is not None:
        runners["pytorch (transformers)"] = reference
    for run in runners.values():
        timed(run, batches[:2])
    seconds = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            seconds[name].append(timed(run, batches))

    start = time.perf_counter()
    encoder.tokenizer.tokenize(tf.constant(texts))
    tokenize_s = time.perf_counter() - start
    start = time.perf_counter()
    encode_texts(encoder, texts, batch_size=args.batch_size, progress=False)
    end_to_end_s = time.perf_counter() - start

    rows = {name: len(texts) / min(s) for name, s in seconds.items()}
    print(
        f"Scientific: {len(texts)} texts, tokens/text mean {lengths.mean():.1f} "
        f"max {lengths.max()}, padding {1 - lengths.sum() / padded:.1%} "
        f"(batch {args.batch_size}, max length 512, {os.cpu_count()} CPUs)"
    )
    print(f"{'encoder':<26}{'items/s (best)':>16}{'rounds (s)':>24}")
    for name, s in seconds.items():
        print(f"{name:<26}{rows[name]:>16.1f}{' '.join(f'{x:.1f}' for x in s):>24}")
    ratio = None
    if reference is not None:
        ratio = rows["tensorflow (keras-hub)"] / rows["pytorch (transformers)"]
        print(f"ratio tensorflow / pytorch: {ratio:.2f}")
    print(f"in-graph tokenization: {len(texts) / tokenize_s:.0f} texts/s")
    print(f"encode_texts end to end: {len(texts) / end_to_end_s:.1f} items/s")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "dataset": "Scientific",
        "texts": len(texts),
        "encoder": encoder.name,
        "pooling": "cls",
        "max_length": 512,
        "batch_size": args.batch_size,
        "mean_tokens": float(lengths.mean()),
        "max_tokens": int(lengths.max()),
        "padding_fraction": float(1 - lengths.sum() / padded),
        "items_per_s": rows,
        "round_seconds": seconds,
        "ratio_tf_over_pytorch": ratio,
        "tokenize_texts_per_s": len(texts) / tokenize_s,
        "encode_texts_items_per_s": len(texts) / end_to_end_s,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "tensorflow": tf.__version__,
    }
    atomic_write_json(RESULTS, result)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
