"""RecBole / UniSRec atomic files: X.{train,valid,test}.inter, X.text or X.item, X.item2index."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator, Mapping

from data_pipeline.errors import DataError
from data_pipeline.sources.base import SPLITS, Row, SourceData
from data_pipeline.sources.items import read_item_table
from data_pipeline.sources.tables import Reject, Table, raise_error, read_index_map

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


@dataclasses.dataclass(frozen=True)
class AtomicPlan:
    """The files of one atomic source, by role ("train", "text", "item2index", ...)."""

    name: str
    files: dict[str, pathlib.Path]

    @property
    def has_split(self) -> bool:
        return "train" in self.files

    @property
    def used(self) -> list[pathlib.Path]:
        """The files the source reads, for the build's fingerprint."""
        kinds = ("train", "valid", "test", "text", "item", "item2index", "user2index")
        # Without a train file the valid rows are implied by the test rows and not read.
        skip = () if self.has_split else ("valid",)
        return [self.files[k] for k in kinds if k in self.files and k not in skip]

    def read_items(self, reject: Reject = raise_error) -> dict[str, str]:
        """Original item ID -> text ("" when it has none), in item-table order."""
        texts = read_item_table(self.files.get("text", self.files.get("item")), reject=reject)
        if "item2index" not in self.files:
            return texts
        originals = read_index_map(self.files["item2index"]).values()
        return {original: texts.get(original, "") for original in originals}

    def second_test_row(self, user: str, number: int) -> DataError:
        return DataError(f"user {user!r} has two test rows", self.files["test"], number)

    def read_rows(
        self, split: str, items: Mapping[str, str], reject: Reject = raise_error
    ) -> Iterator[tuple[int, Row]]:
        """(line, row) of a split file's well-formed rows; the others go to `reject`.

        Args:
            split: "train", "valid" or "test".
            items: `read_items()`'s result (the known items).
            reject: Where malformed rows go.
        """
        tokens = read_index_map(self.files["item2index"]) if "item2index" in self.files else None
        users = read_index_map(self.files["user2index"]) if "user2index" in self.files else None
        table_name = self.files.get("item2index", self.files.get("text", self.files.get("item")))
        path = self.files[split]
        table = Table(path)
        u = table.find(("user_id", "user"), "user")
        h = table.find(("item_id_list", "item_list"), "item history")
        t = table.find(("item_id", "item"), "target item")

        def item(token: str) -> str:
            original = tokens.get(token) if tokens is not None else token
            if original is None or original not in items:
                raise DataError(f"unknown item {token!r}: not in {table_name.name}")
            return original

        for number, fields in table.rows(reject):
            try:
                history_tokens = fields[h].split()
                if not history_tokens:
                    raise DataError("malformed row: empty item history")
                user = fields[u].strip()
                if users is not None:
                    if user not in users:
                        raise DataError(
                            f"unknown user {user!r}: not in {self.files['user2index'].name}"
                        )
                    user = users[user]
                row = Row(user, tuple(item(tok) for tok in history_tokens), item(fields[t].strip()))
            except DataError as e:
                reject(DataError(e.problem, path, number))
                continue
            yield number, row


def plan_atomic(paths: list[pathlib.Path], where: pathlib.Path) -> AtomicPlan:
    """Finds the atomic files among `paths`."""
    name, files = _locate(paths, where)
    return AtomicPlan(name, files)


def read_atomic(plan: AtomicPlan, reject: Reject = raise_error) -> SourceData:
    """Reads atomic files; the given split is kept, or rebuilt from test rows if there is no train.

    Without a train file, a user's sequence is their first test row's history and target; later
    test rows of the same user go to `reject`, like malformed rows.
    """
    items = plan.read_items(reject)
    if plan.has_split:
        splits = {s: [row for _, row in plan.read_rows(s, items, reject)] for s in SPLITS}
        return SourceData(plan.name, "atomic", items, {}, splits, plan.used)
    # No train file: full sequences are the test rows' history + target.
    sequences: dict[str, list[str]] = {}
    for number, row in plan.read_rows("test", items, reject):
        if row.user in sequences:
            reject(plan.second_test_row(row.user, number))
            continue
        sequences[row.user] = [*row.history, row.target]
    return SourceData(plan.name, "atomic", items, sequences, None, plan.used)
