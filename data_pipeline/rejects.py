"""Rejected input rows: the `--max-rejected` rule and the dataset's `rejected/` folder.

A malformed row (wrong width, bad timestamp, empty or unknown ID, a repeated item) is rejected
with its file, line and reason. Up to `--max-rejected` such rows (default 0) are tolerated: they
are left out, listed in `OUTPUT/rejected/rejected.tsv` and counted in the manifest. One more
fails the build with the first few reasons. Both engines follow this rule.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterable

from data_pipeline.errors import DataError
from data_pipeline.fileio import atomic_write

MAX_REJECTED = 0
REJECTED_DIR = "rejected"
REJECTED_FILE = "rejected.tsv"
REJECTED_HEADER = ("file", "line", "reason")
# How many reasons a failed build names.
SHOWN = 3


@dataclasses.dataclass(frozen=True, order=True)
class Rejection:
    """One rejected row; ordered by file, then line."""

    path: str
    line: int
    reason: str

    @classmethod
    def of(cls, error: DataError) -> Rejection:
        return cls(error.path or "", error.line or 0, error.problem)

    def error(self) -> DataError:
        return DataError(self.reason, self.path or None, self.line or None)


class Rejects:
    """Collects rejected rows (a `sources.tables.Reject`)."""

    def __init__(self) -> None:
        self.rows: list[Rejection] = []

    def __call__(self, error: DataError) -> None:
        self.rows.append(Rejection.of(error))


def check(rejections: Iterable[Rejection], max_rejected: int) -> list[Rejection]:
    """The rejections in file and line order, or a DataError if there are too many.

    The error is the first rejected row's (file, line, reason), followed by the count and the
    next few reasons, or, for a single row with no tolerance, by how to tolerate it.
    """
    rows = sorted(rejections)
    if len(rows) <= max_rejected:
        return rows
    first = rows[0]
    problem = first.reason
    if len(rows) > 1:
        more = "; ".join(str(r.error()) for r in rows[1:SHOWN])
        problem += (
            f" ({len(rows)} rejected rows, --max-rejected {max_rejected}; next: {more}"
            + ("; ..." if len(rows) > SHOWN else "")
            + ")"
        )
    elif max_rejected == 0:
        problem += " (use --max-rejected N to leave up to N such rows out)"
    raise DataError(problem, first.path or None, first.line or None)


def write_rejected(folder: pathlib.Path, rows: list[Rejection]) -> dict | None:
    """Writes `rejected/rejected.tsv` (when there are rows); returns the manifest's entry."""
    if not rows:
        return None
    path = folder / REJECTED_DIR / REJECTED_FILE
    path.parent.mkdir(exist_ok=True)
    lines = ["\t".join(REJECTED_HEADER)]
    lines += [f"{r.path}\t{r.line}\t{' '.join(r.reason.split())}" for r in rows]
    atomic_write(path, "\n".join(lines) + "\n")
    return {"path": f"{REJECTED_DIR}/{REJECTED_FILE}", "rows": len(rows)}
