"""Item text features for a built dataset: one frozen-BERT vector per item.

    python -m data_pipeline.encode_text --data DATASET_DIR [--encoder DIR] [--pooling cls|mean]
        [--max-length 512] [--batch-size 64]

Reads `items.tsv` and `manifest.json`, writes `text_features.npy` and
`text_features_word_drop.npy` (float32 [items + 1, d], row 0 zeros) beside them and records them
under `manifest["text_features"]`. The word-drop variant encodes each text with 15% of its words
removed (UniSRec's augmentation for the sequence-sequence contrastive loss). A second run with the
same texts and encoder (weights, pooling, maximum length) reuses the files without loading the
encoder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import pathlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from data_pipeline.dataset import DatasetDir
from data_pipeline.errors import DataError
from data_pipeline.fileio import sha256_file
from data_pipeline.text.bert_folder import POOLINGS, check_bert_folder, default_encoder_path

if TYPE_CHECKING:
    from data_pipeline.text.encoder import TextEncoder

logger = logging.getLogger(__name__)

DEFAULT_POOLING = "cls"
DEFAULT_MAX_LENGTH = 512
WORD_DROP_RATIO = 0.15
WORD_DROP_SEED = 2022
_TOKENIZE_CHUNK = 1024


def drop_words(texts: Sequence[str], ratio: float, seed: int) -> list[str]:
    """Removes a random share of the words of each text (UniSRec's word-drop augmentation).

    Each word is dropped independently with probability `ratio`; a text keeps at least one word.
    Text `i` uses the random stream `(seed, i)`, so the result does not depend on batching.

    Args:
      texts: the texts.
      ratio: the probability of dropping each word.
      seed: the random seed.

    Returns:
      The shortened texts, words joined by single spaces.
    """
    dropped = []
    for i, text in enumerate(texts):
        words = text.split()
        keep = np.random.default_rng([seed, i]).random(len(words)) >= ratio
        if words and not keep.any():
            keep[0] = True
        dropped.append(" ".join(w for w, k in zip(words, keep, strict=True) if k))
    return dropped


def encode_texts(encoder, texts: Sequence[str], *, batch_size: int = 64, progress: bool = True):
    """Encodes texts in batches of similar token length.

    Texts are tokenized once, sorted by length and batched, so each batch is padded only to its
    own longest text.

    Args:
      encoder: a `data_pipeline.text.TextEncoder`.
      texts: the texts.
      batch_size: texts per forward pass.
      progress: show a tqdm progress bar.

    Returns:
      float32 np.ndarray [len(texts), encoder.dim], in the order of `texts`.
    """
    import tensorflow as tf

    token_ids = []
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        chunk = tf.constant(list(texts[start : start + _TOKENIZE_CHUNK]), tf.string)
        token_ids.extend(encoder.tokenizer.tokenize(chunk).to_list())
    lengths = np.array([len(ids) for ids in token_ids], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    vectors = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    with tqdm(total=len(texts), unit="text", disable=not progress, desc="encoding") as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids = np.full((len(rows), lengths[rows].max()), encoder.tokenizer.pad_id, np.int32)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                ids[r, : lengths[i]] = token_ids[i]
                mask[r, : lengths[i]] = 1
            vectors[rows] = encoder.encode_tokens(ids, mask).numpy()
            bar.update(len(rows))
    return vectors


def encode_dataset(
    data_dir: str | pathlib.Path,
    *,
    encoder_path: str | pathlib.Path | None = None,
    pooling: str = DEFAULT_POOLING,
    max_length: int = DEFAULT_MAX_LENGTH,
    word_drop_ratio: float = WORD_DROP_RATIO,
    batch_size: int = 64,
    progress: bool = True,
    encoder: TextEncoder | None = None,
    encode=None,
) -> dict:
    """Computes (or reuses) the item text features of a built dataset.

    Args:
      data_dir: the dataset folder (`items.tsv`, `manifest.json`).
      encoder_path: a Transformers-format BERT folder; `None` for the packaged all-MiniLM-L6-v2.
      pooling: `"cls"` or `"mean"` (see `data_pipeline.text.TextEncoder`).
      max_length: the most tokens per text, `[CLS]` and `[SEP]` included.
      word_drop_ratio: the share of words removed from each text for the word-drop variant.
      batch_size: texts per forward pass.
      progress: show a progress bar.
      encoder: an already loaded `TextEncoder`, used instead of `encoder_path`, `pooling` and
        `max_length`.
      encode: how texts become vectors: `encode_texts` (the default, in this process) or a
        function with its signature, such as `data_pipeline.beam.text.encode_texts`.

    Returns:
      The manifest's `"text_features"` entry.
    """
    if encoder is not None:
        encoder_path, pooling, max_length = encoder.path, encoder.pooling, encoder.max_length
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if not 0.0 <= word_drop_ratio < 1.0:
        raise ValueError(f"word drop ratio must be in [0, 1), got {word_drop_ratio}")
    dataset = DatasetDir.open(data_dir)
    texts = [str(t) for t in dataset.texts]
    folder = check_bert_folder(default_encoder_path() if encoder_path is None else encoder_path)
    wanted = {
        "pooling": pooling,
        "max_length": max_length,
        "weights_sha256": sha256_file(folder / "model.safetensors"),
        "texts_sha256": hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest(),
        "word_drop_ratio": word_drop_ratio,
        "seed": WORD_DROP_SEED,
    }
    if dataset.text_features_current(wanted):
        logger.info("text features in %s are up to date; reusing them", dataset.path)
        return dataset.text_features_meta

    if encoder is None:
        from data_pipeline.text.encoder import TextEncoder

        encoder = TextEncoder(encoder_path, pooling=pooling, max_length=max_length)
    variants = {
        "default": texts[1:],
        "word_drop": drop_words(texts[1:], word_drop_ratio, WORD_DROP_SEED),
    }
    matrices = {}
    for variant, variant_texts in variants.items():
        logger.info("encoding %d item texts (%s)", len(variant_texts), variant)
        matrix = np.zeros((len(texts), encoder.dim), dtype=np.float32)
        matrix[1:] = (encode or encode_texts)(
            encoder, variant_texts, batch_size=batch_size, progress=progress
        )
        matrices[variant] = matrix
    meta = {"encoder": encoder.name, "encoder_path": str(encoder.path), "dim": encoder.dim}
    return dataset.write_text_features({**meta, **wanted}, matrices)


def add_encoder_arguments(parser: argparse.ArgumentParser, max_length_flag: str) -> None:
    """The text-encoder flags shared by `encode_text` and `build`."""
    parser.add_argument(
        "--encoder", default=None, help="Transformers-format BERT folder (default: MiniLM)"
    )
    parser.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=DEFAULT_POOLING,
        help="cls: the [CLS] vector, as the paper; mean: the mean of the token vectors",
    )
    parser.add_argument(
        max_length_flag,
        dest="text_max_length",
        type=int,
        default=DEFAULT_MAX_LENGTH,
        help="most tokens per text, [CLS] and [SEP] included",
    )
    parser.add_argument(
        "--word-drop-ratio",
        type=float,
        default=WORD_DROP_RATIO,
        help="share of words removed from each text for the word-drop augmentation",
    )


def encode_from_args(args: argparse.Namespace, data_dir: str | pathlib.Path, **kwargs) -> dict:
    """`encode_dataset` with the flags of `add_encoder_arguments`."""
    return encode_dataset(
        data_dir,
        encoder_path=args.encoder,
        pooling=args.pooling,
        max_length=args.text_max_length,
        word_drop_ratio=args.word_drop_ratio,
        **kwargs,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="built dataset folder")
    add_encoder_arguments(parser, "--max-length")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        entry = encode_from_args(args, args.data, batch_size=args.batch_size)
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
