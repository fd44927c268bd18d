"""`python -m data_pipeline.build --engine beam`: the local engine's build as Apache Beam pipelines.

Events are grouped once, by user; after that a step holds one user's sequence, one bucket of
neighbouring keys or one output shard, plus the catalogue (item IDs, later their indices, and a
k-core round's rare items) as side inputs, the way TFX Transform hands a vocabulary to its
workers. So a worker's memory follows the catalogue and one bucket of users, not the log. Every
rule is the local engine's (`data_pipeline.sources`, `data_pipeline.preprocess`), computed so
the output is byte for byte the same:

- a user's events sort by timestamp, ties by file (in `LogPlan.logs` order) and line;
- k-core runs one pipeline per round from a driver loop until a round removes nothing;
- users are numbered by their first row, items by the table order (atomic sources) or by
  their first appearance in the numbered users' sequences (logs), examples in split order:
  all of these are running counts over sorted keys (`OrderedOffsets`);
- example `r` of a split goes to shard `r % count`, in order: each bucket of users writes its
  examples as pieces of the shards (`dataset.write_records`), and a shard is its pieces joined
  in bucket order (`dataset.join_shard`), so no step holds a whole shard.

The pipelines read the input files where they are and write inside the staging folder, so on a
cluster both must be on storage the workers share.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import apache_beam as beam
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from data_pipeline import dataset, rejects
from data_pipeline.beam.offsets import OrderedOffsets
from data_pipeline.dataset import SPLITS
from data_pipeline.engines import Built
from data_pipeline.errors import DataError
from data_pipeline.preprocess import MIN_SEQUENCE, leave_one_out
from data_pipeline.rejects import Rejection
from data_pipeline.sources.atomic import AtomicPlan
from data_pipeline.sources.log import LogPlan

NAMESPACE = "data_pipeline"
REJECTED = "rejected"
# Scratch folder for the collections passed between pipelines, inside the staging folder.
WORK = "_beam"
# Bucket widths (as bit shifts) of the keys numbered by `OrderedOffsets`.
LINE_BUCKET = 14
USER_BUCKET = 10
# Units (users, or given rows) per piece of the output shards, as a bit shift.
EXAMPLE_BUCKET = 13


def pipeline_options(beam_args: list[str] | tuple[str, ...]) -> PipelineOptions:
    """Beam options from the command line; the in-process runner unless `--runner` is given."""
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=FnApiRunner")
    return PipelineOptions(args)


def _count(d: int, name: str, n: int = 1) -> None:
    Metrics.counter(NAMESPACE, f"{d}.{name}").inc(n)


def _run(build_pipeline, options: PipelineOptions) -> dict[str, int]:
    """Runs one pipeline; returns its counters (a counter never incremented is absent)."""
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    return {
        c.key.metric.name: c.committed if c.committed is not None else c.attempted for c in counters
    }


def _write(rows, folder: pathlib.Path, name: str, label: str):
    return (
        rows
        | f"{label}Json" >> beam.Map(json.dumps)
        | f"{label}Write" >> beam.io.WriteToText(str(folder / name / "part"), ".jsonl")
    )


def _read(pipeline, folder: pathlib.Path, name: str, label: str):
    return (
        pipeline
        | f"{label}Read" >> beam.io.ReadFromText(str(folder / name / "part*.jsonl"))
        | f"{label}Parse" >> beam.Map(json.loads)
    )


def _read_local(folder: pathlib.Path, name: str) -> list:
    return [
        json.loads(line)
        for path in sorted((folder / name).glob("part*.jsonl"))
        for line in path.read_text().splitlines()
        if line
    ]


def _rejection(error: DataError) -> beam.pvalue.TaggedOutput:
    r = Rejection.of(error)
    return beam.pvalue.TaggedOutput(REJECTED, [r.path, r.line, r.reason])


# --- reading ------------------------------------------------------------------------------


def _item_table(_, d: int, plan: LogPlan | AtomicPlan):
    bad: list[DataError] = []
    texts = plan.read_items(bad.append)
    for error in bad:
        yield _rejection(error)
    for order, (item, text) in enumerate(texts.items()):
        yield {"d": d, "item": item, "order": order, "text": text}


def _log_events(rank: int, plan: LogPlan, catalogue: dict):
    """(user, (timestamp, file rank, line, item)) of one log; bad rows rejected as locally."""
    log = plan.logs[rank]
    bad: list[DataError] = []
    for line, user, timestamp, item in plan.read_events(log, bad.append):
        yield from (_rejection(e) for e in bad)
        bad.clear()
        if item not in catalogue:
            yield _rejection(plan.unknown_item(item, log, line))
            continue
        yield user, (timestamp, rank, line, item)
    yield from (_rejection(e) for e in bad)


def _log_sequence(user_events, d: int) -> dict:
    user, events = user_events
    events = sorted(events, key=lambda e: e[:3])
    _count(d, "raw_users")
    _count(d, "raw_interactions", len(events))
    first = min((rank, line) for _, rank, line, _ in events)
    return {"d": d, "user": user, "first": list(first), "seq": [e[3] for e in events]}


def _atomic_rows(split: str, d: int, plan: AtomicPlan, items: dict):
    bad: list[DataError] = []
    for line, row in plan.read_rows(split, items, bad.append):
        yield from (_rejection(e) for e in bad)
        bad.clear()
        yield {
            "d": d,
            "split": split,
            "line": line,
            "user": row.user,
            "history": list(row.history),
            "target": row.target,
        }
    yield from (_rejection(e) for e in bad)


def _first_test_row(user_rows, d: int, plan: AtomicPlan):
    """Without a train file: a user's first test row is their sequence, later ones are rejected."""
    user, rows = user_rows
    first, *later = sorted(rows, key=lambda r: r["line"])
    for row in later:
        yield _rejection(plan.second_test_row(user, row["line"]))
    seq = [*first["history"], first["target"]]
    _count(d, "raw_users")
    _count(d, "raw_interactions", len(seq))
    yield {"d": d, "user": user, "first": [0, first["line"]], "seq": seq}


def _raw_split_user(user_rows, d: int) -> None:
    """A given split's interactions per user: the shortest history plus one target per row."""
    _, rows = user_rows
    rows = list(rows)
    _count(d, "raw_users")
    _count(d, "raw_interactions", min(len(r["history"]) for r in rows) + len(rows))
    return None


def _read_stage(pipeline, plans, work: pathlib.Path) -> None:
    """Reads every domain: sequences (to be split), given split rows, items and rejected rows."""
    sequences, rows, items, rejected = [], [], [], []
    for d, plan in enumerate(plans):
        label = f"D{d}"
        table = (
            pipeline
            | f"{label}Table" >> beam.Create([0])
            | f"{label}ReadTable"
            >> beam.FlatMap(_item_table, d, plan).with_outputs(REJECTED, main="items")
        )
        rejected.append(table[REJECTED])
        if isinstance(plan, LogPlan):
            catalogue = table["items"] | f"{label}Ids" >> beam.Map(lambda r: (r["item"], None))
            events = (
                pipeline
                | f"{label}Logs" >> beam.Create(list(range(len(plan.logs))))
                | f"{label}Spread" >> beam.Reshuffle()
                | f"{label}ReadLogs"
                >> beam.FlatMap(_log_events, plan, beam.pvalue.AsDict(catalogue)).with_outputs(
                    REJECTED, main="events"
                )
            )
            rejected.append(events[REJECTED])
            items.append(table["items"])
            sequences.append(
                events["events"]
                | f"{label}ByUser" >> beam.GroupByKey()
                | f"{label}Sequence" >> beam.Map(_log_sequence, d)
            )
            _ = (
                events["events"]
                | f"{label}EventItems" >> beam.Map(lambda kv: kv[1][3])
                | f"{label}DistinctItems" >> beam.Distinct()
                | f"{label}RawItems" >> beam.Map(lambda _, d=d: _count(d, "raw_items"))
            )
            continue
        items.append(table["items"])
        texts = table["items"] | f"{label}Texts" >> beam.Map(lambda r: (r["item"], r["text"]))
        split_rows = (
            pipeline
            | f"{label}Splits" >> beam.Create(list(SPLITS) if plan.has_split else ["test"])
            | f"{label}ReadRows"
            >> beam.FlatMap(_atomic_rows, d, plan, beam.pvalue.AsDict(texts)).with_outputs(
                REJECTED, main="rows"
            )
        )
        rejected.append(split_rows[REJECTED])
        if plan.has_split:
            rows.append(split_rows["rows"])
            by_user = split_rows["rows"] | f"{label}RowUser" >> beam.Map(lambda r: (r["user"], r))
            _ = (
                by_user
                | f"{label}RowsByUser" >> beam.GroupByKey()
                | f"{label}RawUsers" >> beam.Map(_raw_split_user, d)
            )
            _ = (
                split_rows["rows"]
                | f"{label}RowItems" >> beam.FlatMap(lambda r: [*r["history"], r["target"]])
                | f"{label}DistinctItems" >> beam.Distinct()
                | f"{label}RawItems" >> beam.Map(lambda _, d=d: _count(d, "raw_items"))
            )
            continue
        firsts = (
            split_rows["rows"]
            | f"{label}TestUser" >> beam.Map(lambda r: (r["user"], r))
            | f"{label}TestByUser" >> beam.GroupByKey()
            | f"{label}FirstRow"
            >> beam.FlatMap(_first_test_row, d, plan).with_outputs(REJECTED, main="seq")
        )
        rejected.append(firsts[REJECTED])
        sequences.append(firsts["seq"])
        _ = (
            firsts["seq"]
            | f"{label}SeqItems" >> beam.FlatMap(lambda r: r["seq"])
            | f"{label}DistinctItems" >> beam.Distinct()
            | f"{label}RawItems" >> beam.Map(lambda _, d=d: _count(d, "raw_items"))
        )

    def flat(collections, label):
        return tuple(collections) | f"{label}All" >> beam.Flatten(pipeline=pipeline)

    _write(flat(sequences, "Seq"), work, "seq-0", "Seq")
    _write(flat(rows, "Rows"), work, "rows", "Rows")
    _write(flat(items, "Items"), work, "items", "Items")
    _write(flat(rejected, "Rejected"), work, REJECTED, "Rejected")


# --- k-core -------------------------------------------------------------------------------


def _filter_sequence(record: dict, rare: dict, min_user: int):
    """A user's sequence without this round's rare items, or nothing if it is then too short."""
    d = record["d"]
    seq = [item for item in record["seq"] if (d, item) not in rare]
    if len(seq) < max(min_user, 1):
        _count(d, "kcore_removed")
        return
    yield {**record, "seq": seq}


def _rare(item_count, min_item: int):
    (d, item), count = item_count
    if count < min_item:
        _count(d, "kcore_removed")
        yield (d, item), None


def _kcore_round(pipeline, work: pathlib.Path, source: str, target: str, settings, logs):
    """One round over the log domains: rare items out, then short users; others pass through.

    The round's rare items are a side input (a subset of the catalogue, as a vocabulary is in
    TFX Transform), so the events are not shuffled again.
    """
    min_user, min_item = settings
    records = _read(pipeline, work, source, "Seq")
    passing = records | "Others" >> beam.Filter(lambda r: r["d"] not in logs)
    records = records | "Logs" >> beam.Filter(lambda r: r["d"] in logs)
    rare = (
        records
        | "Items" >> beam.FlatMap(lambda r: [(r["d"], item) for item in r["seq"]])
        | "Count" >> beam.combiners.Count.PerElement()
        | "Rare" >> beam.FlatMap(_rare, min_item)
    )
    kept = records | "Filter" >> beam.FlatMap(_filter_sequence, beam.pvalue.AsDict(rare), min_user)
    _write((passing, kept) | beam.Flatten(), work, target, "Seq")


# --- numbering and writing ----------------------------------------------------------------


def _split_user(user_rows) -> dict:
    """A given split's rows of one user, with the key of their first row."""
    (d, user), rows = user_rows
    rows = sorted(rows, key=lambda r: (SPLITS.index(r["split"]), r["line"]))
    first = [SPLITS.index(rows[0]["split"]), rows[0]["line"]]
    _count(d, "users")
    return {"d": d, "user": user, "first": first, "rows": rows}


def _item_firsts(numbered):
    """((d, item), (d, user index, position)) for every item of a numbered log sequence."""
    _, user_index, record = numbered
    for pos, item in enumerate(record["seq"]):
        yield (record["d"], item), (record["d"], user_index, pos)


def _units(numbered, kinds: dict, item_index: dict):
    """(order key, examples per split, unit): a user's sequence, or one given row.

    The key orders a split's examples as the local engine lists them: by domain, then user
    and prefix (sequences) or file line (given rows).
    """
    _, user_index, record = numbered
    d = record["d"]
    if kinds[d] != "rows":
        seq = [item_index[(d, item)] for item in record["seq"]]
        yield (d, user_index, 0), (len(seq) - 3, 1, 1), ("seq", d, user_index, seq)
        return
    for row in record["rows"]:
        split = SPLITS.index(row["split"])
        items = [item_index[(d, item)] for item in (*row["history"], row["target"])]
        weight = tuple(int(s == split) for s in range(len(SPLITS)))
        yield (d, row["line"], split), weight, ("row", d, user_index, split, items)


def _numbered_examples(unit, max_len: int):
    """(split, rank in split, example) of a numbered unit."""
    _, offsets, value = unit
    if value[0] == "seq":
        _, d, user, seq = value
        for s, (split, rows) in enumerate(leave_one_out(seq, max_len).items()):
            for j, (history, target) in enumerate(rows):
                yield split, offsets[s] + j, (history, target, user, d)
        return
    _, d, user, s, items = value
    yield SPLITS[s], offsets[s], (items[:-1][-max_len:], items[-1], user, d)


def _write_pieces(bucket_units, folder: str, counts: dict, max_len: int):
    """Writes one bucket's examples as a piece of each shard they fall in.

    Yields `((split, shard), (bucket, path, rows))`. Buckets hold consecutive ranks, so a shard
    is its pieces in bucket order.
    """
    bucket, units = bucket_units
    by_shard = {}
    for unit in units:
        for split, rank, example in _numbered_examples(unit, max_len):
            _count(example[3], f"split.{split}")
            by_shard.setdefault((split, rank % counts[split]), []).append(example)
    name = "-".join(str(b) for b in bucket)
    for (split, shard), examples in by_shard.items():
        path = pathlib.Path(folder) / f"{split}-{shard}-{name}.tfrecord"
        yield (split, shard), (bucket, str(path), dataset.write_records(path, examples))


def _join_shard(shard_pieces, folder: str, counts: dict) -> dict:
    (split, shard), pieces = shard_pieces
    pieces = [(path, rows) for _, path, rows in sorted(pieces)]
    entry = dataset.join_shard(pathlib.Path(folder), split, shard, counts[split], pieces)
    return {"split": split, "shard": shard, **entry}


def _shard_counts(total, shards: int) -> dict:
    totals = total if isinstance(total, tuple) else (0,) * len(SPLITS)
    return {split: dataset.shard_count(n, shards) for split, n in zip(SPLITS, totals, strict=True)}


def _numbered_item(item_groups):
    (d, item), groups = item_groups
    texts = list(groups["text"])
    for index in groups["index"]:
        yield [index, d, item, texts[0]]


def _final_stage(pipeline, work, staging, kinds, max_len: int, shards: int) -> None:
    """Numbers users, items and examples and writes the shards and the numbered items."""
    sequences = _read(pipeline, work, "seq", "Seq")
    rows = _read(pipeline, work, "rows", "Rows")
    items = _read(pipeline, work, "items", "Items")

    def kept(record):
        if len(record["seq"]) >= MIN_SEQUENCE:
            _count(record["d"], "users")
            _count(record["d"], "interactions", len(record["seq"]))
            return True
        _count(record["d"], "dropped_users")
        return False

    split_users = (
        rows
        | "RowUser" >> beam.Map(lambda r: ((r["d"], r["user"]), r))
        | "RowsByUser" >> beam.GroupByKey()
        | "SplitUser" >> beam.Map(_split_user)
    )
    # Users: numbered by their first row; the value carries the user's sequence or rows.
    users, _ = (
        (sequences | "Kept" >> beam.Filter(kept), split_users)
        | "Users" >> beam.Flatten()
        | "UserKey" >> beam.Map(lambda r: ((r["d"], *r["first"]), 1, r))
        | "NumberUsers" >> OrderedOffsets(lambda k: (k[0], k[1], k[2] >> LINE_BUCKET))
    )

    # Items: table order (atomic sources) or first appearance in the numbered sequences (logs).
    log_firsts = (
        users
        | "LogUsers" >> beam.Filter(lambda u: kinds[u[2]["d"]] == "log")
        | "ItemAt" >> beam.FlatMap(_item_firsts)
        | "FirstAt" >> beam.CombinePerKey(min)
        | "FirstKey" >> beam.Map(lambda kv: (kv[1], 1, kv[0]))
    )
    table_items = (
        items
        | "TableItems" >> beam.Filter(lambda r: kinds[r["d"]] != "log")
        | "TableKey" >> beam.Map(lambda r: ((r["d"], r["order"], 0), 1, (r["d"], r["item"])))
    )
    item_index, _ = (
        (log_firsts, table_items)
        | "ItemKeys" >> beam.Flatten()
        | "NumberItems" >> OrderedOffsets(lambda k: (k[0], k[1] >> USER_BUCKET))
    )
    item_index = item_index | "IndexByItem" >> beam.Map(lambda r: (tuple(r[2]), r[1] + 1))
    texts = items | "TextByItem" >> beam.Map(lambda r: ((r["d"], r["item"]), r["text"]))
    _write(
        {"index": item_index, "text": texts}
        | "JoinTexts" >> beam.CoGroupByKey()
        | "Numbered" >> beam.FlatMap(_numbered_item),
        work,
        "items-out",
        "ItemsOut",
    )

    # Examples: a running count per split over units in split order gives each its rank; each
    # bucket of units writes its examples as pieces of the shards, joined in bucket order.
    bits = EXAMPLE_BUCKET
    units, total = (
        users
        | "Units" >> beam.FlatMap(_units, kinds, beam.pvalue.AsDict(item_index))
        | "NumberExamples" >> OrderedOffsets(lambda k: (k[0], k[1] >> bits), per_bucket=True)
    )
    counts = beam.pvalue.AsSingleton(total | "ShardCounts" >> beam.Map(_shard_counts, shards))
    pieces = work / "pieces"
    pieces.mkdir(parents=True, exist_ok=True)
    _ = (
        units
        | "WritePieces" >> beam.FlatMap(_write_pieces, str(pieces), counts, max_len)
        | "ByShard" >> beam.GroupByKey()
        | "JoinShards" >> beam.Map(_join_shard, str(staging), counts)
        | "FilesJson" >> beam.Map(json.dumps)
        | "Files" >> beam.io.WriteToText(str(work / "files" / "part"), ".jsonl")
    )


def build_beam(
    plans: list[LogPlan | AtomicPlan],
    staging: pathlib.Path,
    *,
    min_user: int,
    min_item: int,
    max_len: int,
    shards: int,
    max_rejected: int,
    beam_args: list[str] | tuple[str, ...] = (),
) -> Built:
    """The Beam engine (see the module docstring); the arguments are `engines.build_local`'s."""
    options = pipeline_options(beam_args)
    work = staging / WORK
    counters = _run(lambda p: _read_stage(p, plans, work), options)
    rejected = rejects.check((Rejection(*row) for row in _read_local(work, REJECTED)), max_rejected)
    logs = {d for d, plan in enumerate(plans) if isinstance(plan, LogPlan)}
    source = "seq-0"
    rounds = 0
    while logs:
        rounds += 1
        target = f"seq-{rounds}"
        removed = _run(
            lambda p, s=source, t=target: _kcore_round(p, work, s, t, (min_user, min_item), logs),
            options,
        )
        shutil.rmtree(work / source)
        source = target
        if not any(v for k, v in removed.items() if k.endswith(".kcore_removed")):
            break
    (work / source).rename(work / "seq")
    kinds = {
        d: "log" if isinstance(plan, LogPlan) else "rows" if plan.has_split else "seq"
        for d, plan in enumerate(plans)
    }
    counters.update(_run(lambda p: _final_stage(p, work, staging, kinds, max_len, shards), options))

    numbered = sorted(_read_local(work, "items-out"))
    if [row[0] for row in numbered] != list(range(1, len(numbered) + 1)):
        raise RuntimeError("the Beam build numbered items with gaps")
    items = [(d, item, text) for _, d, item, text in numbered]
    written = _read_local(work, "files")
    files = {}
    for split in SPLITS:
        entries = sorted((e for e in written if e["split"] == split), key=lambda e: e["shard"])
        files[split] = [{k: e[k] for k in ("path", "rows", "sha256")} for e in entries]
        if not files[split]:
            files[split] = [dataset.write_shard(staging, split, 0, 1, [])]
    shutil.rmtree(work)

    domains, item_offset, user_offset = [], 0, 0
    for d, plan in enumerate(plans):

        def count(name: str, d: int = d) -> int:
            return counters.get(f"{d}.{name}", 0)

        texts = [text for domain, _, text in items if domain == d]
        users = count("users")
        interactions = count("raw_interactions" if kinds[d] == "rows" else "interactions")
        domains.append(
            {
                "id": d,
                "name": plan.name,
                "item_offset": item_offset,
                "user_offset": user_offset,
                "users": users,
                "items": len(texts),
                "interactions": interactions,
                "avg_seq_len": interactions / max(users, 1),
                "avg_text_words": sum(len(t.split()) for t in texts) / max(len(texts), 1),
                "items_without_text": sum(1 for t in texts if not t),
                "splits": {split: count(f"split.{split}") for split in SPLITS},
                "before_filter": {
                    "users": count("raw_users"),
                    "items": count("raw_items"),
                    "interactions": count("raw_interactions"),
                },
                "dropped_users": count("dropped_users"),
            }
        )
        item_offset += len(texts)
        user_offset += users
    return Built(files, items, domains, rejected)
