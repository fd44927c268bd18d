"""Choosing the reader for an input: a folder or a list of files."""

from __future__ import annotations

import pathlib

from data_pipeline.errors import DataError
from data_pipeline.sources.atomic import AtomicPlan, atomic_kind, plan_atomic, read_atomic
from data_pipeline.sources.base import SourceData
from data_pipeline.sources.log import TABLE_SUFFIXES, LogColumns, LogPlan, plan_log, read_log
from data_pipeline.sources.movielens import ensure_movielens
from data_pipeline.sources.tables import Reject, raise_error

FORMATS = ("auto", "atomic", "log", "movielens")
KNOWN_SUFFIXES = (*TABLE_SUFFIXES, ".jsonl", ".item2index", ".user2index")


def _files(inputs: list[pathlib.Path]) -> tuple[list[pathlib.Path], pathlib.Path, str]:
    """(candidate files, where, domain name) for one input: one folder or several files."""
    for path in inputs:
        if not path.exists():
            raise DataError("file not found", path)
    if len(inputs) == 1 and inputs[0].is_dir():
        folder = inputs[0]
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError("empty folder", folder)
        return files, folder, folder.resolve().name
    for path in inputs:
        if path.is_dir():
            raise DataError("a folder must be the only path of its --input", path)
        if not path.name.endswith(KNOWN_SUFFIXES):
            raise DataError(f"unknown format: expected one of {', '.join(KNOWN_SUFFIXES)}", path)
    return list(inputs), inputs[0], inputs[0].resolve().parent.name


def plan_source(
    inputs: list[pathlib.Path], fmt: str = "auto", columns: LogColumns | None = None
) -> LogPlan | AtomicPlan:
    """Finds what one domain's input holds, reading only file names and headers.

    Args:
        inputs: One folder or several files; empty for the MovieLens-100K default.
        fmt: "atomic", "log", "movielens" or "auto" (atomic when there are X.*.inter split files).
        columns: Column names for log sources.
    """
    columns = columns or LogColumns()
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "movielens" or not inputs:
        if inputs:
            raise DataError("--format movielens takes no --input (it is downloaded)", inputs[0])
        if fmt != "movielens" and fmt != "auto":
            raise DataError(f"--format {fmt} needs --input")
        folder = ensure_movielens()
        return plan_log(sorted(folder.iterdir()), folder, folder.name, columns)
    files, where, name = _files(inputs)
    if fmt == "auto":
        split_files = [p for p in files if atomic_kind(p) in ("train", "valid", "test")]
        fmt = "atomic" if split_files else "log"
        if fmt == "log" and not any(p.name.endswith(TABLE_SUFFIXES) for p in files):
            raise DataError(
                "unknown format: no atomic split files and no CSV/TSV interaction log", where
            )
    if fmt == "atomic":
        return plan_atomic(files, where)
    return plan_log(files, where, name, columns)


def read_source(
    inputs: list[pathlib.Path],
    fmt: str = "auto",
    columns: LogColumns | None = None,
    reject: Reject = raise_error,
) -> SourceData:
    """Reads one domain (see `plan_source`); malformed rows go to `reject`."""
    return read_plan(plan_source(inputs, fmt, columns), reject)


def read_plan(plan: LogPlan | AtomicPlan, reject: Reject = raise_error) -> SourceData:
    """Reads a planned source into memory; malformed rows go to `reject`."""
    if isinstance(plan, AtomicPlan):
        return read_atomic(plan, reject)
    return read_log(plan, reject)
