"""The dataset folder: the one place that knows its file names, format and record schema.

A dataset folder, written by `python -m data_pipeline.build`, holds

- `manifest.json`: format version, counts, options, the record schema, every file with its
  sha256, and (once computed) the text-feature entry;
- `items.tsv`: `index, domain, item_id, text`; row 0 is the padding item;
- `{split}-{shard:05d}-of-{count:05d}.tfrecord`: `tf.train.Example`s of `RECORD_SCHEMA`;
- `text_features.npy`, `text_features_word_drop.npy`: float32 `[items + 1, d]`, row 0 zero.

`DatasetDir` reads and writes all of them; nothing else names these files.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import shutil
from collections.abc import Iterable, Mapping

import numpy as np

from data_pipeline.errors import DataError
from data_pipeline.fileio import atomic_write, atomic_write_json, sha256_file

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
ITEM_TABLE = "items.tsv"
ITEM_TABLE_HEADER = ("index", "domain", "item_id", "text")
# Text-feature variants: file name, and the manifest keys of its path and digest.
TEXT_FEATURES = {
    "default": ("text_features.npy", "path", "sha256"),
    "word_drop": ("text_features_word_drop.npy", "word_drop_path", "word_drop_sha256"),
}
# Every record is a tf.train.Example of int64 features; "history" has variable length.
RECORD_SCHEMA = {
    "history": {"dtype": "int64", "shape": [None], "doc": "item indices, oldest first"},
    "target": {"dtype": "int64", "shape": [1], "doc": "item index to predict"},
    "user": {"dtype": "int64", "shape": [1], "doc": "user index (disjoint ranges per domain)"},
    "domain": {"dtype": "int64", "shape": [1], "doc": "domain id (0-based)"},
}
Example = tuple[list[int], int, int, int]  # (history, target, user, domain), global indices


@dataclasses.dataclass(frozen=True)
class ItemTable:
    """The rows of `items.tsv`, by item index; index 0 is padding (empty ID and text)."""

    item_ids: np.ndarray
    texts: np.ndarray
    domains: np.ndarray

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1


def read_item_table(path: str | os.PathLike) -> ItemTable:
    """Parses an `items.tsv`; a malformed row is a `DataError` naming its line."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError("item table missing", path)
    ids, texts, domains = [], [], []
    with path.open(encoding="utf-8", newline="\n") as f:
        header = f.readline().rstrip("\n").split("\t")
        if tuple(header) != ITEM_TABLE_HEADER:
            raise DataError(
                f"expected the header {', '.join(ITEM_TABLE_HEADER)}; rebuild the dataset", path, 1
            )
        for number, line in enumerate(f, 2):
            fields = line.rstrip("\n").split("\t", 3)
            if len(fields) != 4 or fields[0] != str(len(ids)):
                raise DataError(
                    f"malformed item table row: expected row {len(ids)} with 4 tab-separated "
                    "fields; rebuild the dataset",
                    path,
                    number,
                )
            try:
                domains.append(int(fields[1]))
            except ValueError:
                raise DataError(f"domain {fields[1]!r} is not an integer", path, number) from None
            ids.append(fields[2])
            texts.append(fields[3])
    if not ids or ids[0] != "":
        raise DataError("row 0 must be the padding item (empty ID)", path, 2)
    return ItemTable(
        np.array(ids, dtype=object), np.array(texts, dtype=object), np.array(domains, np.int64)
    )


def write_item_table(path: str | os.PathLike, rows: Iterable[tuple[int, str, str]]) -> None:
    """Writes `items.tsv` from `(domain, item_id, text)` rows of items 1..N (whitespace folded)."""
    lines = ["\t".join(ITEM_TABLE_HEADER), "0\t-1\t\t"]
    for index, (domain, item_id, text) in enumerate(rows, 1):
        lines.append(f"{index}\t{domain}\t{' '.join(item_id.split())}\t{' '.join(text.split())}")
    atomic_write(path, "\n".join(lines) + "\n")


def shard_name(split: str, shard: int, count: int) -> str:
    return f"{split}-{shard:05d}-of-{count:05d}.tfrecord"


@functools.cache
def _example_template() -> tuple[object, tuple]:
    """One reusable tf.train.Example (filling it is several times faster than building one)."""
    import tensorflow as tf

    example = tf.train.Example()
    feature = example.features.feature
    return example, tuple(feature[key].int64_list.value for key in RECORD_SCHEMA)


def serialize_example(history: list[int], target: int, user: int, domain: int) -> bytes:
    """One record of `RECORD_SCHEMA`, serialised deterministically."""
    example, (history_values, target_values, user_values, domain_values) = _example_template()
    history_values[:] = history
    target_values[:] = [target]
    user_values[:] = [user]
    domain_values[:] = [domain]
    return example.SerializeToString(deterministic=True)


def parse_spec() -> dict:
    """`tf.io.parse_example` features of `RECORD_SCHEMA` (histories ragged)."""
    import tensorflow as tf

    return {
        name: tf.io.RaggedFeature(tf.int64)
        if spec["shape"] == [None]
        else tf.io.FixedLenFeature([], tf.int64)
        for name, spec in RECORD_SCHEMA.items()
    }


def write_split(folder: pathlib.Path, split: str, examples: list[Example], shards: int) -> list:
    """Writes a split as TFRecord shards (round robin); returns the manifest's file entries."""
    count = shard_count(len(examples), shards)
    return [
        write_shard(folder, split, shard, count, examples[shard::count]) for shard in range(count)
    ]


def shard_count(rows: int, shards: int) -> int:
    """How many files a split of `rows` examples gets (at least one, none of them empty)."""
    return max(1, min(shards, rows))


def write_shard(
    folder: pathlib.Path, split: str, shard: int, count: int, rows: Iterable[Example]
) -> dict:
    """Writes one TFRecord shard; returns its manifest entry.

    Example `r` of a split (in split order) goes to shard `r % count`, in order.
    """
    path = folder / shard_name(split, shard, count)
    written = write_records(path, rows)
    return {"path": path.name, "rows": written, "sha256": sha256_file(path)}


def write_records(path: pathlib.Path, rows: Iterable[Example]) -> int:
    """Writes examples as one TFRecord file (a shard, or a piece of one); returns the count."""
    import tensorflow as tf

    written = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in rows:
            writer.write(serialize_example(*example))
            written += 1
    return written


def join_shard(
    folder: pathlib.Path, split: str, shard: int, count: int, pieces: Iterable[tuple[str, int]]
) -> dict:
    """Writes a shard from `(path, rows)` pieces written by `write_records`, concatenated in
    order; returns its manifest entry.

    TFRecord files have no header, so the shard's bytes are those `write_shard` writes for the
    pieces' rows in the same order.
    """
    path = folder / shard_name(split, shard, count)
    rows = 0
    with path.open("wb") as out:
        for piece, piece_rows in pieces:
            with open(piece, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
            rows += piece_rows
    return {"path": path.name, "rows": rows, "sha256": sha256_file(path)}


def read_manifest(folder: str | os.PathLike) -> dict:
    """The folder's manifest.json, checked for the format version."""
    path = pathlib.Path(folder) / MANIFEST
    if not path.is_file():
        raise DataError(
            "not a dataset: no manifest.json (missing or interrupted build)", path.parent
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"unreadable manifest ({e}): rebuild the dataset", path) from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise DataError(
            f"format_version {version!r}, expected {FORMAT_VERSION}: rebuild the dataset", path
        )
    return manifest


def write_manifest(folder: str | os.PathLike, manifest: Mapping) -> None:
    atomic_write_json(pathlib.Path(folder) / MANIFEST, dict(manifest))


def listed_files(manifest: Mapping) -> list[dict]:
    """The manifest's shard and item-table entries (path, sha256)."""
    return [e for split in SPLITS for e in manifest["files"][split]] + [manifest["item_table"]]


def verify_files(folder: pathlib.Path, manifest: Mapping) -> None:
    """Checks every file `manifest` lists against its sha256; a mismatch names the file."""
    for entry in listed_files(manifest):
        path = folder / entry["path"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            raise DataError(
                "damaged: its sha256 does not match manifest.json; rebuild the dataset "
                "with python -m data_pipeline.build",
                path,
            )


@dataclasses.dataclass
class DatasetDir:
    """A built dataset folder, opened for reading.

    Attributes:
        path: the folder (absolute).
        manifest: the parsed manifest.json.
        items: the item table.
        verified: whether files were checked against their sha256 when opened.
    """

    path: pathlib.Path
    manifest: dict
    items: ItemTable
    verified: bool = False

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = False) -> DatasetDir:
        """Opens a folder written by `python -m data_pipeline.build`.

        A folder without manifest.json (for example one left by an interrupted build) is
        refused, and so is one whose listed files are missing.

        Args:
            path: the dataset folder.
            verify: also check every listed file's sha256 against the manifest.
        """
        path = pathlib.Path(path).absolute()
        manifest = read_manifest(path)
        for entry in listed_files(manifest):
            file = path / entry["path"]
            if not file.is_file():
                raise DataError("file listed in manifest.json is missing: rebuild", file)
        if verify:
            verify_files(path, manifest)
        items = read_item_table(path / manifest["item_table"]["path"])
        if items.num_items != manifest["items"]:
            raise DataError(
                f"{items.num_items} items, manifest.json lists {manifest['items']}: rebuild",
                path / ITEM_TABLE,
            )
        return cls(path, manifest, items, verify)

    @property
    def num_items(self) -> int:
        """Number of items, excluding the padding index 0."""
        return int(self.manifest["items"])

    @property
    def item_ids(self) -> np.ndarray:
        """Original item IDs by index; [0] is "" (padding)."""
        return self.items.item_ids

    @property
    def texts(self) -> np.ndarray:
        """Item texts by index; [0] is ""."""
        return self.items.texts

    def split_rows(self, split: str) -> int:
        self._check_split(split)
        return int(self.manifest["splits"][split])

    def split_bytes(self, split: str) -> int:
        """Size of the TFRecord shards of `split`, in bytes."""
        return sum(os.path.getsize(path) for path in self.split_files(split))

    def split_files(self, split: str) -> list[str]:
        """Paths of the TFRecord shards of `split` ("train", "valid" or "test")."""
        self._check_split(split)
        return [str(self.path / entry["path"]) for entry in self.manifest["files"][split]]

    @staticmethod
    def _check_split(split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")

    def target_counts(self, split: str = "train") -> np.ndarray:
        """How often each item is the target of an example of `split`, int64 `[items + 1]`."""
        import tensorflow as tf

        spec = {"target": parse_spec()["target"]}
        counts = np.zeros(self.num_items + 1, np.int64)
        records = tf.data.TFRecordDataset(self.split_files(split)).batch(1 << 16)
        for batch in records.map(lambda s: tf.io.parse_example(s, spec)["target"]):
            counts += np.bincount(batch.numpy(), minlength=len(counts))[: len(counts)]
        return counts

    def verify_files(self) -> None:
        """Checks every listed file against its sha256; a mismatch is a `DataError` naming it."""
        verify_files(self.path, self.manifest)

    def explain_read_error(self, error: Exception) -> Exception:
        """The damaged file behind a failed read of the shards (checked only now, when a read
        failed), as a `DataError`; `error` itself if every file is intact."""
        try:
            self.verify_files()
        except DataError as damaged:
            return damaged
        return error

    @property
    def text_features_meta(self) -> dict | None:
        """The manifest's "text_features" entry, or None if features were not computed."""
        return self.manifest.get("text_features")

    def text_features(self, variant: str = "default") -> np.ndarray:
        """Item text vectors, float32 [items + 1, d] with row 0 zero.

        The array is mapped read-only from its file, so a million-item table is read as its
        rows are used rather than held twice while it is copied into a model.

        Args:
            variant: "default", or "word_drop" (each text with some words removed).
        """
        if variant not in TEXT_FEATURES:
            raise ValueError(f"unknown variant {variant!r}: expected one of {list(TEXT_FEATURES)}")
        meta = self.text_features_meta
        if meta is None:
            raise DataError(
                "no text features: run `python -m data_pipeline.encode_text --data "
                f"{self.path}` first",
                self.path / MANIFEST,
            )
        _, path_key, digest_key = TEXT_FEATURES[variant]
        path = self.path / meta[path_key]
        if not path.is_file():
            raise DataError("text feature file listed in manifest.json is missing", path)
        if self.verified and sha256_file(path) != meta[digest_key]:
            raise DataError("sha256 does not match manifest.json", path)
        try:
            features = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as e:
            raise DataError(
                f"unreadable text features ({e}): rerun `python -m data_pipeline.encode_text "
                f"--data {self.path}`",
                path,
            ) from None
        if features.dtype != np.float32 or features.shape[0] != self.num_items + 1:
            raise DataError(
                f"expected float32 [{self.num_items + 1}, d], "
                f"found {features.dtype} {features.shape}",
                path,
            )
        return features

    def text_features_current(self, wanted: Mapping) -> bool:
        """Whether the recorded text features were made as `wanted` says and are intact."""
        entry = self.text_features_meta
        if not entry or any(entry.get(key) != value for key, value in wanted.items()):
            return False
        for _, path_key, digest_key in TEXT_FEATURES.values():
            path = self.path / entry.get(path_key, "")
            if not path.is_file() or sha256_file(path) != entry.get(digest_key):
                return False
        return True

    def write_text_features(self, meta: Mapping, matrices: Mapping[str, np.ndarray]) -> dict:
        """Saves one matrix per variant atomically and records them in the manifest.

        Args:
            meta: the entry's description (encoder, pooling, ...); file names and digests are
                added here.
            matrices: float32 `[items + 1, d]` by variant; every variant is required.

        Returns:
            The manifest's new "text_features" entry.
        """
        entry = dict(meta)
        for variant, (file, path_key, digest_key) in TEXT_FEATURES.items():
            matrix = np.asarray(matrices[variant], np.float32)
            if matrix.shape[0] != self.num_items + 1:
                raise ValueError(f"{variant} features need {self.num_items + 1} rows")
            atomic_write(self.path / file, lambda f, m=matrix: np.save(f, m))
            entry[path_key] = file
            entry[digest_key] = sha256_file(self.path / file)
        # Re-read, so that concurrent edits to other keys are kept.
        manifest = read_manifest(self.path)
        manifest["text_features"] = entry
        write_manifest(self.path, manifest)
        self.manifest = manifest
        return entry
