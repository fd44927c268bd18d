"""The canonical in-memory form every input reader produces."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

from data_pipeline.dataset import SPLITS

__all__ = ["SPLITS", "Row", "SourceData"]


@dataclasses.dataclass(frozen=True)
class Row:
    """One given example: a user's history (original item IDs, oldest first) and the next item."""

    user: str
    history: tuple[str, ...]
    target: str


@dataclasses.dataclass
class SourceData:
    """One domain as read from disk, before filtering, indexing and splitting.

    Attributes:
        name: Domain name (the dataset's file prefix or folder name).
        kind: "log" for raw interaction logs (k-core filtered, item table reduced to the items
            that remain), "atomic" for RecBole/UniSRec files (item table kept whole).
        items: Original item ID -> text ("" when the item has none), in item-table order.
        sequences: User -> original item IDs in time order; empty when `splits` is given.
        splits: The given train/valid/test rows, kept exactly; None when the split is to be made.
        files: The input files that were read.
    """

    name: str
    kind: Literal["log", "atomic"]
    items: dict[str, str]
    sequences: dict[str, list[str]]
    splits: dict[str, list[Row]] | None
    files: list[pathlib.Path]

    def sequence_lengths(self) -> dict[str, int]:
        """Interactions per user.

        With a given split (one row per prefix), a user's sequence is the shortest row's history
        plus one target per row, which counts interactions even where histories were truncated.
        """
        if self.splits is None:
            return {user: len(seq) for user, seq in self.sequences.items()}
        shortest: dict[str, int] = {}
        rows: dict[str, int] = {}
        for split in SPLITS:
            for row in self.splits[split]:
                shortest[row.user] = min(shortest.get(row.user, len(row.history)), len(row.history))
                rows[row.user] = rows.get(row.user, 0) + 1
        return {user: shortest[user] + rows[user] for user in rows}
