"""RecBole / UniSRec atomic files: X.{train,valid,test}.inter, X.text or X.item, X.item2index."""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Iterator

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


@dataclasses.dataclass(frozen=True, eq=False)
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
        texts = self._texts(reject)
        return {original: texts.get(original, "") for original in self._tokens(texts).values()}

    def _texts(self, reject: Reject) -> dict[str, str]:
        return read_item_table(self.files.get("text", self.files.get("item")), reject=reject)

    def _tokens(self, texts: dict[str, str]) -> dict[str, str]:
        """Token used in .inter files -> original item ID."""
        if "item2index" in self.files:
            return read_index_map(self.files["item2index"])
        return {item: item for item in texts}

    def second_test_row(self, user: str, number: int) -> DataError:
        return DataError(f"user {user!r} has two test rows", self.files["test"], number)

    def read_rows(self, split: str) -> Iterator[tuple[int, Row | DataError]]:
        """(line, row) of a split file, or (line, the error) for a malformed row."""
        tokens = _cached(self, "tokens")
        users = _cached(self, "users")
        table_name = self.files.get("item2index", self.files.get("text", self.files.get("item")))
        path = self.files[split]
        table = Table(path)
        u = table.find(("user_id", "user"), "user")
        h = table.find(("item_id_list", "item_list"), "item history")
        t = table.find(("item_id", "item"), "target item")
        bad: list[DataError] = []
        for number, fields in table.rows(bad.append):
            while bad:
                error = bad.pop(0)
                yield error.line, error
            try:
                yield number, self._row(fields, u, h, t, tokens, users, table_name.name)
            except DataError as e:
                yield number, DataError(e.problem, path, number)
        while bad:
            error = bad.pop(0)
            yield error.line, error

    def _row(self, fields, u, h, t, tokens, users, table_name) -> Row:
        history_tokens = fields[h].split()
        if not history_tokens:
            raise DataError("malformed row: empty item history")
        user = fields[u].strip()
        if users is not None:
            if user not in users:
                raise DataError(f"unknown user {user!r}: not in {self.files['user2index'].name}")
            user = users[user]

        def item(token: str) -> str:
            try:
                return tokens[token]
            except KeyError:
                raise DataError(f"unknown item {token!r}: not in {table_name}") from None

        history = tuple(item(tok) for tok in history_tokens)
        return Row(user, history, item(fields[t].strip()))


@functools.lru_cache(maxsize=8)
def _cached(plan: AtomicPlan, what: str):
    """The token and user maps, read once per process (each split file needs them)."""
    if what == "tokens":
        # Rows of the item table were already rejected (or not) by `read_items`.
        return plan._tokens(plan._texts(lambda error: None))
    return read_index_map(plan.files["user2index"]) if "user2index" in plan.files else None


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

    def rows(split: str) -> Iterator[tuple[int, Row]]:
        for number, row in plan.read_rows(split):
            if isinstance(row, DataError):
                reject(row)
            else:
                yield number, row

    if plan.has_split:
        splits = {split: [row for _, row in rows(split)] for split in SPLITS}
        return SourceData(plan.name, "atomic", items, {}, splits, plan.used)
    # No train file: full sequences are the test rows' history + target.
    sequences: dict[str, list[str]] = {}
    for number, row in rows("test"):
        if row.user in sequences:
            reject(plan.second_test_row(row.user, number))
            continue
        sequences[row.user] = [*row.history, row.target]
    return SourceData(plan.name, "atomic", items, sequences, None, plan.used)
