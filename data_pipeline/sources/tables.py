"""Reading delimited and JSON-lines tables with file and line numbers for every error."""

from __future__ import annotations

import csv
import json
import pathlib
from collections.abc import Callable, Iterator

from data_pipeline.errors import DataError

# Where a malformed row goes: `raise_error` stops the read, a collector lets it go on.
Reject = Callable[[DataError], None]


def raise_error(error: DataError) -> None:
    raise error


TEXT_SUFFIXES = (".csv", ".tsv", ".inter", ".text", ".item", ".item2index", ".user2index")


def column_name(raw: str) -> str:
    """Normalises a header cell: RecBole's `name:type` suffix dropped, lower case."""
    return raw.split(":", 1)[0].strip().lower()


def check_file(path: pathlib.Path) -> None:
    if not path.is_file():
        raise DataError("file not found", path)
    if path.stat().st_size == 0:
        raise DataError("empty file", path, 1)


class Table:
    """A delimited text table with a header row (tab-separated unless a .csv header has no tab)."""

    def __init__(self, path: pathlib.Path, header: bool = True):
        check_file(path)
        self.path = path
        self.has_header = header
        with path.open(encoding="utf-8", newline="") as f:
            first = f.readline().rstrip("\r\n")
        if not first.strip():
            raise DataError("empty first line: expected a header row", path, 1)
        self.delimiter = "," if path.suffix == ".csv" and "\t" not in first else "\t"
        cells = (
            next(csv.reader([first], delimiter=",")) if self.delimiter == "," else first.split("\t")
        )
        self.columns = [column_name(c) for c in cells] if header else []
        self.width = len(cells)

    def rows(self, reject: Reject = raise_error) -> Iterator[tuple[int, list[str]]]:
        """Yields (line number, fields) for each data row; blank lines are skipped.

        Args:
            reject: called with the error for each row of the wrong width (which is skipped).
        """
        found = False
        with self.path.open(encoding="utf-8", newline="") as f:
            if self.delimiter == ",":
                reader = csv.reader(f)
                lines = ((reader.line_num, fields) for fields in reader)
            else:
                lines = ((n, line.rstrip("\r\n").split("\t")) for n, line in enumerate(f, 1))
            for number, fields in lines:
                if number == 1 and self.has_header:
                    continue
                if not fields or fields == [""]:
                    continue
                if len(fields) != self.width:
                    reject(
                        DataError(
                            f"malformed row: expected {self.width} fields, found {len(fields)}",
                            self.path,
                            number,
                        )
                    )
                    continue
                found = True
                yield number, fields
        if not found:
            raise DataError("no data rows", self.path, 2 if self.has_header else 1)

    def find(self, candidates: tuple[str, ...], what: str, given: str | None = None) -> int:
        """Index of the first column named in `candidates` (or exactly `given`)."""
        names = (given.lower(),) if given else candidates
        for name in names:
            if name in self.columns:
                return self.columns.index(name)
        raise DataError(
            f"no {what} column (looked for {', '.join(names)}; "
            f"header has {', '.join(self.columns)})",
            self.path,
            1,
        )


def read_jsonl(path: pathlib.Path, reject: Reject = raise_error) -> Iterator[tuple[int, dict]]:
    """Yields (line number, object) for each non-blank, well-formed line of a JSON-lines file."""
    check_file(path)
    found = False
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                reject(DataError(f"malformed row: invalid JSON ({e.msg})", path, number))
                continue
            if not isinstance(obj, dict):
                reject(DataError("malformed row: expected a JSON object", path, number))
                continue
            found = True
            yield number, {column_name(k): v for k, v in obj.items()}
    if not found:
        raise DataError("no data rows", path, 1)


def clean_text(value: object) -> str:
    """Text as one line with single spaces; lists (e.g. categories) are joined."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " ".join(clean_text(v) for v in value if clean_text(v))
    return " ".join(str(value).split())


def read_index_map(path: pathlib.Path) -> dict[str, str]:
    """`original ID<TAB>index` (.item2index / .user2index) -> {index token: original ID}.

    Rows are returned ordered by index, so the map's order is the item table's order.
    """
    table = Table(path, header=False)
    if table.width != 2:
        raise DataError(f"malformed row: expected 2 fields, found {table.width}", path, 1)
    entries: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    for number, (original, index) in table.rows():
        try:
            position = int(index)
        except ValueError:
            raise DataError(
                f"malformed row: index {index!r} is not an integer", path, number
            ) from None
        if index in seen:
            raise DataError(f"duplicate index {index}", path, number)
        seen.add(index)
        entries.append((position, index, original))
    entries.sort()
    return {index: original for _, index, original in entries}
