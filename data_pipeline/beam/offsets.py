"""Dense numbering in a distributed job: running totals over a sorted key space."""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable

import apache_beam as beam


def _plus(a, b):
    return a + b if isinstance(a, int) else tuple(x + y for x, y in zip(a, b, strict=True))


def _total(weights):
    return functools.reduce(_plus, weights)


def _starts(totals: list[tuple[Hashable, object]]) -> dict:
    """Bucket -> the total weight of all earlier buckets; `None` -> the grand total."""
    starts, running = {}, None
    for bucket, total in sorted(totals, key=lambda bt: bt[0]):
        running = _zero(total) if running is None else running
        starts[bucket] = running
        running = _plus(running, total)
    starts[None] = running if running is not None else 0
    return starts


def _zero(weight):
    return 0 if isinstance(weight, int) else (0,) * len(weight)


def _assign(bucket_rows, starts: dict):
    bucket, rows = bucket_rows
    offset = starts[bucket]
    for key, weight, value in sorted(rows, key=lambda row: row[0]):
        yield key, offset, value
        offset = _plus(offset, weight)


def _assign_bucket(bucket_rows, starts: dict):
    return bucket_rows[0], list(_assign(bucket_rows, starts))


class OrderedOffsets(beam.PTransform):
    """`(key, weight, value)` -> `(key, offset, value)`, offset = total weight of smaller keys.

    Weights are ints, or tuples of ints summed element by element (several running counts in
    one pass: examples per split, say).

    With weight 1 the offset is the row's rank in key order, which numbers users, items and
    examples exactly as a sort of the whole collection would, without one: rows are grouped in
    buckets of neighbouring keys, each bucket is sorted on its own, and a small side input of
    bucket totals gives every bucket its starting offset.

    Args:
        bucket: Key -> bucket; monotone (a smaller key never has a later bucket). Buckets should
            be small enough to sort in one worker's memory.
        per_bucket: Give the numbered rows as one element per bucket,
            `(bucket, [(key, offset, value), ...])` in key order, for a step that handles a
            bucket's rows together (writing them as one piece of an ordered file, say).

    Returns:
        `(offsets, total)`: the numbered rows and a one-element collection of the total weight.

    Example:
    ```python
    ranks, count = users | OrderedOffsets(lambda key: key[0] >> 10)
    ```
    """

    def __init__(
        self,
        bucket: Callable[[tuple], Hashable],
        per_bucket: bool = False,
        label: str | None = None,
    ):
        super().__init__(label)
        self._bucket = bucket
        self._per_bucket = per_bucket

    def expand(self, rows):
        bucket = self._bucket
        keyed = rows | "Bucket" >> beam.Map(lambda row: (bucket(row[0]), row))
        starts = (
            keyed
            | "Weights" >> beam.Map(lambda b_row: (b_row[0], b_row[1][1]))
            | "Totals" >> beam.CombinePerKey(_total)
            | "AllTotals" >> beam.combiners.ToList()
            | "Starts" >> beam.Map(_starts)
        )
        side = beam.pvalue.AsSingleton(starts)
        assign = beam.Map(_assign_bucket, side) if self._per_bucket else beam.FlatMap(_assign, side)
        offsets = keyed | "Group" >> beam.GroupByKey() | "Assign" >> assign
        total = starts | "Total" >> beam.Map(lambda s: s[None])
        return offsets, total
