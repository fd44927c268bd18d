"""Canonical source data -> indexed, filtered, split examples for one or several domains."""

from __future__ import annotations

import dataclasses

from data_pipeline.dataset import SPLITS, Example
from data_pipeline.sources.base import SourceData

# Leave-one-out needs a valid and a test target, each after a non-empty history.
MIN_SEQUENCE = 3


@dataclasses.dataclass
class Domain:
    """One domain after filtering and indexing (item indices local, 1-based)."""

    name: str
    item_ids: list[str]
    texts: list[str]
    users: int
    interactions: int
    examples: dict[str, list[tuple[list[int], int, int]]]  # (history, target, user)
    raw: dict[str, int]
    dropped_users: int = 0

    def stats(self) -> dict:
        words = sum(len(t.split()) for t in self.texts)
        return {
            "users": self.users,
            "items": len(self.item_ids),
            "interactions": self.interactions,
            "avg_seq_len": self.interactions / max(self.users, 1),
            "avg_text_words": words / max(len(self.item_ids), 1),
            "items_without_text": sum(1 for t in self.texts if not t),
        }


def k_core(sequences: dict[str, list[str]], min_user: int, min_item: int) -> dict[str, list[str]]:
    """Iteratively drops users with < min_user and items with < min_item interactions (0 = off)."""
    while True:
        counts: dict[str, int] = {}
        for seq in sequences.values():
            for item in seq:
                counts[item] = counts.get(item, 0) + 1
        rare = {item for item, n in counts.items() if n < min_item}
        kept = {}
        for user, seq in sequences.items():
            seq = [item for item in seq if item not in rare] if rare else seq
            if len(seq) >= max(min_user, 1):
                kept[user] = seq
        if not rare and len(kept) == len(sequences):
            return kept
        sequences = kept


def leave_one_out(seq: list[int], max_len: int) -> dict[str, list[tuple[list[int], int]]]:
    """Test predicts the last item, valid the one before, train one row per earlier prefix."""
    n = len(seq)
    return {
        "train": [(seq[max(0, t - max_len) : t], seq[t]) for t in range(1, n - 2)],
        "valid": [(seq[max(0, n - 2 - max_len) : n - 2], seq[n - 2])],
        "test": [(seq[max(0, n - 1 - max_len) : n - 1], seq[n - 1])],
    }


def prepare(source: SourceData, *, min_user: int, min_item: int, max_len: int) -> Domain:
    """Filters (log sources), indexes items and users, and makes or keeps the split."""
    lengths = source.sequence_lengths()
    raw_items = (
        {i for rows in source.splits.values() for r in rows for i in (*r.history, r.target)}
        if source.splits is not None
        else {i for seq in source.sequences.values() for i in seq}
    )
    raw = {"users": len(lengths), "items": len(raw_items), "interactions": sum(lengths.values())}
    examples: dict[str, list[tuple[list[int], int, int]]] = {s: [] for s in SPLITS}

    if source.splits is not None:
        item_index = {item: i for i, item in enumerate(source.items, 1)}
        user_index: dict[str, int] = {}
        for split in SPLITS:
            for row in source.splits[split]:
                user = user_index.setdefault(row.user, len(user_index))
                history = [item_index[i] for i in row.history[-max_len:]]
                examples[split].append((history, item_index[row.target], user))
        return Domain(
            source.name,
            list(source.items),
            list(source.items.values()),
            len(user_index),
            raw["interactions"],
            examples,
            raw,
        )

    sequences = source.sequences
    if source.kind == "log":
        sequences = k_core(sequences, min_user, min_item)
    kept = {u: s for u, s in sequences.items() if len(s) >= MIN_SEQUENCE}
    dropped = len(sequences) - len(kept)
    if source.kind == "log":
        item_ids = list(dict.fromkeys(i for seq in kept.values() for i in seq))
    else:
        item_ids = list(source.items)
    item_index = {item: i for i, item in enumerate(item_ids, 1)}
    for user, (_, seq) in enumerate(kept.items()):
        for split, rows in leave_one_out([item_index[i] for i in seq], max_len).items():
            examples[split].extend((history, target, user) for history, target in rows)
    return Domain(
        source.name,
        item_ids,
        [source.items[i] for i in item_ids],
        len(kept),
        sum(len(s) for s in kept.values()),
        examples,
        raw,
        dropped,
    )


def merge(domains: list[Domain]) -> tuple[dict[str, list[Example]], list[dict]]:
    """Concatenates domains with disjoint item and user index ranges.

    Returns:
        (examples per split, with global indices and the domain id; one dict per domain with its
        id, offsets and statistics).
    """
    examples: dict[str, list[Example]] = {s: [] for s in SPLITS}
    entries = []
    item_offset = user_offset = 0
    for domain_id, domain in enumerate(domains):
        for split in SPLITS:
            examples[split].extend(
                (
                    [i + item_offset for i in h] if item_offset else h,
                    t + item_offset,
                    u + user_offset,
                    domain_id,
                )
                for h, t, u in domain.examples[split]
            )
        entries.append(
            {
                "id": domain_id,
                "name": domain.name,
                "item_offset": item_offset,
                "user_offset": user_offset,
                **domain.stats(),
                "splits": {s: len(domain.examples[s]) for s in SPLITS},
                "before_filter": domain.raw,
                "dropped_users": domain.dropped_users,
            }
        )
        item_offset += len(domain.item_ids)
        user_offset += domain.users
    return examples, entries
