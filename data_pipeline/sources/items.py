"""Item text tables: CSV/TSV/RecBole (.text, .item) or JSON lines, keyed by original item ID."""

from __future__ import annotations

import pathlib

from data_pipeline.errors import DataError
from data_pipeline.sources.tables import Reject, Table, clean_text, raise_error, read_jsonl

ITEM_ID_COLUMNS = (
    "item_id",
    "id",
    "asin",
    "parent_asin",
    "item",
    "itemid",
    "movie_id",
    "movieid",
    "product_id",
    "iid",
)


def _text_columns(columns: list[str], id_column: str, given: tuple[str, ...] | None) -> list[str]:
    if given:
        return [c.lower() for c in given]
    if "text" in columns:
        return ["text"]
    return [c for c in columns if c != id_column]


def read_item_table(
    path: pathlib.Path,
    id_column: str | None = None,
    text_columns: tuple[str, ...] | None = None,
    reject: Reject = raise_error,
) -> dict[str, str]:
    """Original item ID -> text (text columns joined by spaces), in file order.

    Rows that are malformed, have no ID or repeat an earlier ID go to `reject`.

    The text is the `text` column when there is one, otherwise every column but the ID
    (e.g. MovieLens: title, release year, genres), unless `text_columns` names them.
    """
    items: dict[str, str] = {}

    def add(item: str, text: str, number: int) -> None:
        if not item:
            reject(DataError("malformed row: empty item ID", path, number))
        elif item in items:
            reject(DataError(f"duplicate item ID {item!r}", path, number))
        else:
            items[item] = text

    if path.suffix == ".jsonl":
        key = None
        for number, obj in read_jsonl(path, reject):
            if key is None:
                names = (id_column.lower(),) if id_column else ITEM_ID_COLUMNS
                key = next((n for n in names if n in obj), None)
                if key is None:
                    raise DataError(f"no item ID key (looked for {', '.join(names)})", path, number)
                fields = _text_columns(list(obj), key, text_columns)
            if key not in obj:
                reject(DataError(f"malformed row: no {key!r} key", path, number))
                continue
            text = " ".join(t for t in (clean_text(obj.get(f)) for f in fields) if t)
            add(str(obj[key]).strip(), text, number)
        return items

    table = Table(path)
    key = table.find(ITEM_ID_COLUMNS, "item ID", id_column)
    fields = _text_columns(table.columns, table.columns[key], text_columns)
    missing = [f for f in fields if f not in table.columns]
    if missing:
        raise DataError(f"no text column {missing[0]!r} in header", path, 1)
    positions = [table.columns.index(f) for f in fields]
    for number, row in table.rows(reject):
        text = " ".join(t for t in (clean_text(row[p]) for p in positions) if t)
        add(row[key].strip(), text, number)
    return items
