"""What a build engine hands back, and the local engine."""

from __future__ import annotations

import dataclasses
import pathlib

from data_pipeline import dataset, rejects
from data_pipeline.dataset import SPLITS
from data_pipeline.preprocess import merge, prepare
from data_pipeline.rejects import Rejection, Rejects
from data_pipeline.sources.atomic import AtomicPlan
from data_pipeline.sources.detect import read_plan
from data_pipeline.sources.log import LogPlan


@dataclasses.dataclass
class Built:
    """What an engine leaves in the staging folder and hands back for the manifest.

    Attributes:
        files: Split -> the manifest's entries of the TFRecord shards it wrote.
        items: (domain, original item ID, text) of items 1..N.
        domains: One manifest entry per domain (id, offsets, statistics; see `preprocess.merge`).
        rejected: The rejected rows, checked against `--max-rejected`, in file and line order.
    """

    files: dict[str, list[dict]]
    items: list[tuple[int, str, str]]
    domains: list[dict]
    rejected: list[Rejection]


def build_local(
    plans: list[LogPlan | AtomicPlan],
    staging: pathlib.Path,
    *,
    min_user: int,
    min_item: int,
    max_len: int,
    shards: int,
    max_rejected: int,
) -> Built:
    """The local engine: every row in this process's memory."""
    collector = Rejects()
    sources = [read_plan(plan, collector) for plan in plans]
    rejected = rejects.check(collector.rows, max_rejected)
    domains = [prepare(s, min_user=min_user, min_item=min_item, max_len=max_len) for s in sources]
    examples, entries = merge(domains)
    files = {s: dataset.write_split(staging, s, examples[s], shards) for s in SPLITS}
    items = [
        (d, item, text)
        for d, domain in enumerate(domains)
        for item, text in zip(domain.item_ids, domain.texts, strict=True)
    ]
    return Built(files, items, entries, rejected)
