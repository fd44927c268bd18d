"""Opening a built dataset directory: manifest, item table, shard files and text features."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from data_pipeline.errors import DataError
from data_pipeline.sources.base import SPLITS
from data_pipeline.sources.movielens import sha256_file

FORMAT_VERSION = 1
TEXT_FEATURE_VARIANTS = {"default": "path", "word_drop": "word_drop_path"}
TEXT_FEATURE_DIGESTS = {"default": "sha256", "word_drop": "word_drop_sha256"}


@dataclasses.dataclass
class DatasetInfo:
    """A built dataset: `manifest.json`, the item table and where the shards are.

    Attributes:
        path: The dataset folder.
        manifest: The parsed manifest.json.
        item_ids: Original item IDs by index; [0] is "" (padding).
        texts: Item texts by index; [0] is "".
    """

    path: pathlib.Path
    manifest: dict
    item_ids: np.ndarray
    texts: np.ndarray
    verified: bool = False

    @property
    def num_items(self) -> int:
        """Number of items, excluding the padding index 0."""
        return int(self.manifest["items"])

    def split_files(self, split: str) -> list[str]:
        """Paths of the TFRecord shards of `split` ("train", "valid" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
        return [str(self.path / entry["path"]) for entry in self.manifest["files"][split]]

    @property
    def text_features_meta(self) -> dict | None:
        """The manifest's "text_features" entry, or None if features were not computed."""
        return self.manifest.get("text_features")

    def text_features(self, variant: str = "default") -> np.ndarray:
        """Item text vectors, float32 [items + 1, d] with row 0 zero.

        Args:
            variant: "default", or "word_drop" (each text with some words removed).
        """
        if variant not in TEXT_FEATURE_VARIANTS:
            raise ValueError(f"unknown variant {variant!r}: expected default or word_drop")
        meta = self.text_features_meta
        if meta is None:
            raise DataError(
                "no text features: run `python -m data_pipeline.encode_text --data "
                f"{self.path}` first",
                self.path / "manifest.json",
            )
        path = self.path / meta[TEXT_FEATURE_VARIANTS[variant]]
        if not path.is_file():
            raise DataError("text feature file listed in manifest.json is missing", path)
        if self.verified and sha256_file(path) != meta[TEXT_FEATURE_DIGESTS[variant]]:
            raise DataError("sha256 does not match manifest.json", path)
        features = np.load(path)
        if features.dtype != np.float32 or features.shape[0] != self.num_items + 1:
            raise DataError(
                f"expected float32 [{self.num_items + 1}, d], "
                f"found {features.dtype} {features.shape}",
                path,
            )
        return features


def load_dataset(path: str | os.PathLike, verify: bool = False) -> DatasetInfo:
    """Opens a dataset folder written by `python -m data_pipeline.build`.

    A folder without manifest.json (for example one left by an interrupted build) is refused.

    Args:
        path: The dataset folder.
        verify: Also check every listed file's sha256 against the manifest.
    """
    path = pathlib.Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise DataError("not a dataset: no manifest.json (missing or interrupted build)", path)
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as e:
        raise DataError(f"unreadable manifest: {e}", manifest_path) from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"format_version {manifest.get('format_version')!r}, "
            f"expected {FORMAT_VERSION}: rebuild the dataset",
            manifest_path,
        )
    entries = [e for split in SPLITS for e in manifest["files"][split]] + [manifest["item_table"]]
    for entry in entries:
        file = path / entry["path"]
        if not file.is_file():
            raise DataError("file listed in manifest.json is missing", file)
        if verify and sha256_file(file) != entry["sha256"]:
            raise DataError("sha256 does not match manifest.json", file)

    table = path / manifest["item_table"]["path"]
    item_ids, texts = [], []
    with table.open(encoding="utf-8") as f:
        next(f)
        for number, line in enumerate(f, 2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 4 or fields[0] != str(number - 2):
                raise DataError("malformed item table row", table, number)
            item_ids.append(fields[2])
            texts.append(fields[3])
    if len(item_ids) != manifest["items"] + 1:
        raise DataError(f"{len(item_ids)} rows, expected {manifest['items'] + 1}", table)
    return DatasetInfo(
        path, manifest, np.array(item_ids, dtype=object), np.array(texts, dtype=object), verify
    )
