"""Interaction logs: CSV/TSV rows of (user, item, timestamp) plus an item text table."""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from collections.abc import Iterator

from data_pipeline.errors import DataError
from data_pipeline.sources.base import SourceData
from data_pipeline.sources.items import ITEM_ID_COLUMNS, read_item_table
from data_pipeline.sources.tables import Reject, Table, raise_error, read_index_map

USER_COLUMNS = ("user_id", "user", "userid", "uid", "reviewerid", "customer_id", "visitor_id")
TIME_COLUMNS = ("timestamp", "time", "ts", "unixreviewtime", "datetime", "date")
TABLE_SUFFIXES = (".csv", ".tsv", ".inter", ".text", ".item")
# Preferred item table when a folder holds several candidates.
ITEM_TABLE_PRIORITY = {".text": 0, ".item": 1, ".jsonl": 2}


@dataclasses.dataclass(frozen=True)
class LogColumns:
    """Column names for logs and item tables; None means auto-detect."""

    user: str | None = None
    item: str | None = None
    time: str | None = None
    text: tuple[str, ...] | None = None


def _is_log(path: pathlib.Path, columns: LogColumns) -> bool:
    table = Table(path)
    found = [
        columns.user.lower() in table.columns
        if columns.user
        else any(c in table.columns for c in USER_COLUMNS),
        columns.item.lower() in table.columns
        if columns.item
        else any(c in table.columns for c in ITEM_ID_COLUMNS),
        columns.time.lower() in table.columns
        if columns.time
        else any(c in table.columns for c in TIME_COLUMNS),
    ]
    return all(found)


def _split_rank(path: pathlib.Path) -> tuple[int, str]:
    """Log files in train, valid/dev, test order, then by name: equal timestamps keep that order."""
    stem = path.stem.lower()
    for rank, words in enumerate((("train",), ("valid", "dev"), ("test",))):
        if any(w in stem for w in words):
            return rank, path.name
    return 3, path.name


def _timestamp(value: str, path: pathlib.Path, number: int) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise DataError(
            f"malformed row: timestamp {value!r} is neither a number nor ISO 8601", path, number
        ) from None


@dataclasses.dataclass(frozen=True)
class LogPlan:
    """What a log source reads: its files in tie-breaking order and the columns of each.

    Attributes:
        name: Domain name.
        logs: The interaction logs; equal timestamps keep this order, then line order.
        item_table: The item text table.
        id_map: An `X.item2index` whose indices the logs use as item IDs, or None.
        columns: The requested column names.
    """

    name: str
    logs: tuple[pathlib.Path, ...]
    item_table: pathlib.Path
    id_map: pathlib.Path | None
    columns: LogColumns

    @property
    def used(self) -> list[pathlib.Path]:
        """The files the source reads, for the build's fingerprint."""
        return [*self.logs, self.item_table, *([self.id_map] if self.id_map else [])]

    def read_items(self, reject: Reject = raise_error) -> dict[str, str]:
        """The item table: original item ID -> text, in file order."""
        return read_item_table(self.item_table, text_columns=self.columns.text, reject=reject)

    def read_events(
        self, log: pathlib.Path, reject: Reject = raise_error
    ) -> Iterator[tuple[int, str, float, str]]:
        """(line, user, timestamp, item) of one log's well-formed rows.

        Whether the item is in the item table is left to the caller (it is the last check).
        """
        id_map = read_index_map(self.id_map) if self.id_map else None
        table = Table(log)
        u = table.find(USER_COLUMNS, "user", self.columns.user)
        i = table.find(ITEM_ID_COLUMNS, "item", self.columns.item)
        t = table.find(TIME_COLUMNS, "timestamp", self.columns.time)
        for number, fields in table.rows(reject):
            try:
                item = fields[i].strip()
                if id_map is not None:
                    if item not in id_map:
                        raise DataError(
                            f"unknown item {item!r}: not in {self.id_map.name}", log, number
                        )
                    item = id_map[item]
                user = fields[u].strip()
                if not user:
                    raise DataError("malformed row: empty user ID", log, number)
                timestamp = _timestamp(fields[t], log, number)
            except DataError as e:
                reject(e)
                continue
            yield number, user, timestamp, item

    def unknown_item(self, item: str, log: pathlib.Path, number: int) -> DataError:
        return DataError(f"unknown item {item!r}: not in {self.item_table.name}", log, number)


def plan_log(
    paths: list[pathlib.Path], where: pathlib.Path, name: str, columns: LogColumns
) -> LogPlan:
    """Finds the logs, the item table and an optional X.item2index among `paths`.

    Args:
        paths: The candidate files (a folder's files, or the files named on the command line).
        where: The folder or first file, for error messages.
        name: Domain name.
        columns: Column names (auto-detected where None).
    """
    logs, tables, id_maps = [], [], []
    for path in paths:
        if path.name.endswith(".item2index"):
            id_maps.append(path)
        elif path.suffix == ".jsonl":
            tables.append(path)
        elif path.suffix in TABLE_SUFFIXES and not path.name.endswith(".user2index"):
            (logs if _is_log(path, columns) else tables).append(path)
    if not logs:
        raise DataError(
            "no interaction log (a CSV/TSV with user, item and timestamp columns)", where
        )
    if not tables:
        raise DataError(
            "no item text table (.text, .item, .jsonl, or a CSV/TSV keyed by item ID)", where
        )
    if len(id_maps) > 1:
        raise DataError(f"two item ID maps: {id_maps[0].name} and {id_maps[1].name}", where)
    best = min(ITEM_TABLE_PRIORITY.get(p.suffix, 3) for p in tables)
    tables = [p for p in tables if ITEM_TABLE_PRIORITY.get(p.suffix, 3) == best]
    if len(tables) > 1:
        raise DataError(
            f"several item tables ({', '.join(p.name for p in tables)}): name the files", where
        )
    logs.sort(key=_split_rank)
    return LogPlan(name, tuple(logs), tables[0], id_maps[0] if id_maps else None, columns)


def read_log(plan: LogPlan, reject: Reject = raise_error) -> SourceData:
    """Reads the logs, the item table and an optional X.item2index (log item IDs are its indices).

    Each user's events are sorted by timestamp; equal timestamps keep file order (`plan.logs`,
    then line). Malformed rows go to `reject`.
    """
    texts = plan.read_items(reject)
    events: dict[str, list[tuple[float, str]]] = {}
    for log in plan.logs:
        for number, user, timestamp, item in plan.read_events(log, reject):
            if item not in texts:
                reject(plan.unknown_item(item, log, number))
                continue
            events.setdefault(user, []).append((timestamp, item))
    sequences = {}
    for user, user_events in events.items():
        user_events.sort(key=lambda e: e[0])  # stable: ties keep file order
        sequences[user] = [item for _, item in user_events]
    return SourceData(plan.name, "log", texts, sequences, None, plan.used)
