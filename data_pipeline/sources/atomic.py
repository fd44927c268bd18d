"""RecBole / UniSRec atomic files: X.{train,valid,test}.inter, X.text or X.item, X.item2index."""

from __future__ import annotations

import pathlib

from data_pipeline.errors import DataError
from data_pipeline.sources.base import SPLITS, Row, SourceData
from data_pipeline.sources.items import read_item_table
from data_pipeline.sources.tables import Table, read_index_map

KINDS = {
    ".train.inter": "train",
    ".valid.inter": "valid",
    ".test.inter": "test",
    ".text": "text",
    ".item": "item",
    ".item2index": "item2index",
    ".user2index": "user2index",
}


def atomic_kind(path: pathlib.Path) -> str | None:
    """The role of an atomic file from its name, or None."""
    for suffix, kind in KINDS.items():
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return kind
    return None


def _locate(paths: list[pathlib.Path], where: pathlib.Path) -> tuple[str, dict[str, pathlib.Path]]:
    files: dict[str, pathlib.Path] = {}
    for path in paths:
        kind = atomic_kind(path)
        if kind is None:
            continue
        if kind in files:
            raise DataError(f"two .{kind} files: {files[kind].name} and {path.name}", path)
        files[kind] = path
    required = ("train", "valid", "test") if "train" in files else ("test",)
    for kind in required:
        if kind not in files:
            raise DataError(f"no X.{kind}.inter file (atomic format)", where)
    if "text" not in files and "item" not in files:
        raise DataError("no item text file (X.text or X.item)", where)
    name = files["test"].name[: -len(".test.inter")]
    return name, files


def read_atomic(paths: list[pathlib.Path], where: pathlib.Path) -> SourceData:
    """Reads atomic files; the given split is kept, or rebuilt from test rows if there is no train.

    Args:
        paths: The candidate files (a folder's files, or the files named on the command line).
        where: The folder or first file, for error messages.
    """
    name, files = _locate(paths, where)
    text_file = files.get("text", files.get("item"))
    texts = read_item_table(text_file)
    item_tokens: dict[str, str]  # token used in .inter files -> original item ID
    if "item2index" in files:
        item_tokens = read_index_map(files["item2index"])
        item_table_file = files["item2index"]
    else:
        item_tokens = {item: item for item in texts}
        item_table_file = text_file
    items = {original: texts.get(original, "") for original in item_tokens.values()}
    users = read_index_map(files["user2index"]) if "user2index" in files else None

    def item(token: str, path: pathlib.Path, number: int) -> str:
        try:
            return item_tokens[token]
        except KeyError:
            raise DataError(
                f"unknown item {token!r}: not in {item_table_file.name}", path, number
            ) from None

    def read_rows(path: pathlib.Path) -> list[Row]:
        table = Table(path)
        u = table.find(("user_id", "user"), "user")
        h = table.find(("item_id_list", "item_list"), "item history")
        t = table.find(("item_id", "item"), "target item")
        rows = []
        for number, fields in table.rows():
            tokens = fields[h].split()
            if not tokens:
                raise DataError("malformed row: empty item history", path, number)
            user = fields[u].strip()
            if users is not None:
                if user not in users:
                    raise DataError(
                        f"unknown user {user!r}: not in {files['user2index'].name}", path, number
                    )
                user = users[user]
            history = tuple(item(tok, path, number) for tok in tokens)
            rows.append(Row(user, history, item(fields[t].strip(), path, number)))
        return rows

    used = [
        files[k]
        for k in ("train", "valid", "test", "text", "item", "item2index", "user2index")
        if k in files
    ]
    if "train" in files:
        splits = {split: read_rows(files[split]) for split in SPLITS}
        return SourceData(name, "atomic", items, {}, splits, used)
    # No train file: full sequences are the test rows' history + target; valid is implied by them.
    used = [f for f in used if f != files.get("valid")]
    sequences: dict[str, list[str]] = {}
    for row in read_rows(files["test"]):
        if row.user in sequences:
            raise DataError(f"user {row.user!r} has two test rows", files["test"])
        sequences[row.user] = [*row.history, row.target]
    return SourceData(name, "atomic", items, sequences, None, used)
