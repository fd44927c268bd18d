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
import os
import pathlib
import tempfile
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from data_pipeline.errors import DataError
from tf_unisrec.text.encoder import (
    POOLINGS,
    TextEncoder,
    check_bert_folder,
    default_encoder_path,
    file_sha256,
)

logger = logging.getLogger(__name__)

FEATURES_FILE = "text_features.npy"
WORD_DROP_FILE = "text_features_word_drop.npy"
WORD_DROP_RATIO = 0.15
WORD_DROP_SEED = 2022
_TOKENIZE_CHUNK = 1024


def read_item_texts(data_dir: str | pathlib.Path) -> list[str]:
    """Reads the item texts of a dataset folder's `items.tsv`.

    Args:
      data_dir: the dataset folder.

    Returns:
      The texts by item index, `[0]` being the padding row's empty text.
    """
    path = pathlib.Path(data_dir) / "items.tsv"
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines[0].split("\t") != ["index", "domain", "item_id", "text"]:
        raise DataError("expected the header index, domain, item_id, text", path, 1)
    texts = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split("\t", 3)
        if len(fields) != 4 or fields[0] != str(len(texts)):
            raise DataError(f"expected row {len(texts)} with 4 tab-separated fields", path, number)
        texts.append(fields[3])
    return texts


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
      encoder: a `tf_unisrec.text.TextEncoder`.
      texts: the texts.
      batch_size: texts per forward pass.
      progress: show a tqdm progress bar.

    Returns:
      float32 np.ndarray [len(texts), encoder.dim], in the order of `texts`.
    """
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


def _write_atomic(path: pathlib.Path, write) -> None:
    """Writes `path` through a temporary file in the same folder and `os.replace`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the data folder is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _save_matrix(path: pathlib.Path, matrix: np.ndarray) -> str:
    """Saves a .npy atomically and returns the sha256 of the file."""
    _write_atomic(path, lambda f: np.save(f, matrix))
    return file_sha256(path)


def _reusable(entry: dict | None, wanted: dict, data_dir: pathlib.Path) -> bool:
    """Whether an existing manifest entry was made from the same texts and encoder."""
    if not entry or any(entry.get(key) != value for key, value in wanted.items()):
        return False
    for file_key, digest_key in (("path", "sha256"), ("word_drop_path", "word_drop_sha256")):
        path = data_dir / entry.get(file_key, "")
        if not path.is_file() or file_sha256(path) != entry.get(digest_key):
            return False
    return True


def encode_dataset(
    data_dir: str | pathlib.Path,
    *,
    encoder_path: str | pathlib.Path | None = None,
    pooling: str = "cls",
    max_length: int = 512,
    batch_size: int = 64,
    progress: bool = True,
) -> dict:
    """Computes (or reuses) the item text features of a built dataset.

    Args:
      data_dir: the dataset folder (`items.tsv`, `manifest.json`).
      encoder_path: a Transformers-format BERT folder; `None` for the packaged all-MiniLM-L6-v2.
      pooling: `"cls"` or `"mean"` (see `tf_unisrec.text.TextEncoder`).
      max_length: the most tokens per text, `[CLS]` and `[SEP]` included.
      batch_size: texts per forward pass.
      progress: show a progress bar.

    Returns:
      The manifest's `"text_features"` entry.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    data_dir = pathlib.Path(data_dir)
    manifest_path = data_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    texts = read_item_texts(data_dir)
    if len(texts) != int(manifest["items"]) + 1:
        raise DataError(
            f"{len(texts)} rows, but manifest.json lists {manifest['items']} items + padding",
            data_dir / "items.tsv",
        )
    folder = check_bert_folder(default_encoder_path() if encoder_path is None else encoder_path)
    wanted = {
        "pooling": pooling,
        "max_length": max_length,
        "weights_sha256": file_sha256(folder / "model.safetensors"),
        "texts_sha256": hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest(),
        "word_drop_ratio": WORD_DROP_RATIO,
        "seed": WORD_DROP_SEED,
    }
    existing = manifest.get("text_features")
    if _reusable(existing, wanted, data_dir):
        logger.info("text features in %s are up to date; reusing them", data_dir)
        return existing

    encoder = TextEncoder(encoder_path, pooling=pooling, max_length=max_length)
    entry = {
        "encoder": encoder.name,
        "encoder_path": str(encoder.path),
        "dim": encoder.dim,
        **wanted,
        "path": FEATURES_FILE,
        "word_drop_path": WORD_DROP_FILE,
    }
    for key, file, variant in (
        ("sha256", FEATURES_FILE, texts[1:]),
        (
            "word_drop_sha256",
            WORD_DROP_FILE,
            drop_words(texts[1:], WORD_DROP_RATIO, WORD_DROP_SEED),
        ),
    ):
        logger.info("encoding %d item texts for %s", len(variant), file)
        matrix = np.zeros((len(texts), encoder.dim), dtype=np.float32)
        matrix[1:] = encode_texts(encoder, variant, batch_size=batch_size, progress=progress)
        entry[key] = _save_matrix(data_dir / file, matrix)

    # Re-read so that concurrent edits to other keys are kept.
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["text_features"] = entry
    payload = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    _write_atomic(manifest_path, lambda f: f.write(payload))
    return entry


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="built dataset folder")
    parser.add_argument(
        "--encoder", default=None, help="Transformers-format BERT folder (default: MiniLM)"
    )
    parser.add_argument("--pooling", choices=POOLINGS, default="cls")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    entry = encode_dataset(
        args.data,
        encoder_path=args.encoder,
        pooling=args.pooling,
        max_length=args.max_length,
        batch_size=args.batch_size,
    )
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
