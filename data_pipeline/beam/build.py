"""`python -m data_pipeline.build --engine beam`: the local engine's build as Apache Beam pipelines.

No step holds more than one user's events, one item's events, one bucket of neighbouring keys
or one output shard in memory, so the build scales out with the runner. Every rule is the
local engine's (`data_pipeline.sources`, `data_pipeline.preprocess`), computed so the output
is byte for byte the same:

- a user's events sort by timestamp, ties by file (in `LogPlan.logs` order) and line;
- k-core runs one pipeline per round from a driver loop until a round removes nothing;
- users are numbered by their first row, items by the table order (atomic sources) or by
  their first appearance in the numbered users' sequences (logs), examples in split order:
  all of these are running counts over sorted keys (`OrderedOffsets`);
- example `r` of a split goes to shard `r % count`, in order, written by `dataset.write_shard`.

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


def _log_events(rank: int, plan: LogPlan):
    log = plan.logs[rank]
    bad: list[DataError] = []
    for line, user, timestamp, item in plan.read_events(log, bad.append):
        yield from (_rejection(e) for e in bad)
        bad.clear()
        yield item, (user, timestamp, rank, line)
    yield from (_rejection(e) for e in bad)


def _known_items(item_groups, d: int, plan: LogPlan):
    """Events of items in the table, keyed by user; the others rejected as in the local engine."""
    item, groups = item_groups
    table = list(groups["table"])
    events = list(groups["events"])
    if not table:
        for _, _, rank, line in events:
            yield _rejection(plan.unknown_item(item, plan.logs[rank], line))
        return
    if events:
        _count(d, "raw_items")
        yield beam.pvalue.TaggedOutput("items", table[0])
    for user, timestamp, rank, line in events:
        yield user, (timestamp, rank, line, item)


def _log_sequence(user_events, d: int) -> dict:
    user, events = user_events
    events = sorted(events, key=lambda e: e[:3])
    _count(d, "raw_users")
    _count(d, "raw_interactions", len(events))
    first = min((rank, line) for _, rank, line, _ in events)
    return {"d": d, "user": user, "first": list(first), "seq": [e[3] for e in events]}


def _atomic_rows(split: str, d: int, plan: AtomicPlan):
    for line, row in plan.read_rows(split):
        if isinstance(row, DataError):
            yield _rejection(row)
        else:
            yield {
                "d": d,
                "split": split,
                "line": line,
                "user": row.user,
                "history": list(row.history),
                "target": row.target,
            }


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
            events = (
                pipeline
                | f"{label}Logs" >> beam.Create(list(range(len(plan.logs))))
                | f"{label}Spread" >> beam.Reshuffle()
                | f"{label}ReadLogs"
                >> beam.FlatMap(_log_events, plan).with_outputs(REJECTED, main="events")
            )
            rejected.append(events[REJECTED])
            by_item = table["items"] | f"{label}ByItem" >> beam.Map(lambda r: (r["item"], r))
            known = (
                {"table": by_item, "events": events["events"]}
                | f"{label}JoinTable" >> beam.CoGroupByKey()
                | f"{label}Known"
                >> beam.FlatMap(_known_items, d, plan).with_outputs(
                    REJECTED, "items", main="events"
                )
            )
            rejected.append(known[REJECTED])
            items.append(known["items"])
            sequences.append(
                known["events"]
                | f"{label}ByUser" >> beam.GroupByKey()
                | f"{label}Sequence" >> beam.Map(_log_sequence, d)
            )
            continue
        items.append(table["items"])
        split_rows = (
            pipeline
            | f"{label}Splits" >> beam.Create(list(SPLITS) if plan.has_split else ["test"])
            | f"{label}ReadRows"
            >> beam.FlatMap(_atomic_rows, d, plan).with_outputs(REJECTED, main="rows")
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


def _explode(record: dict):
    key = (record["d"], record["user"])
    for pos, item in enumerate(record["seq"]):
        yield (record["d"], item), (key, pos)


def _frequent(item_groups, min_item: int):
    (d, item), groups = item_groups
    at = list(groups["at"])
    if len(at) < min_item:
        _count(d, "kcore_removed")
        return
    for key, pos in at:
        yield tuple(key), (pos, item)


def _long_enough(user_groups, min_user: int):
    (d, user), groups = user_groups
    (first,) = groups["first"]
    kept = sorted(groups["kept"])
    if len(kept) < max(min_user, 1):
        _count(d, "kcore_removed")
        return
    yield {"d": d, "user": user, "first": first, "seq": [item for _, item in kept]}


def _kcore_round(pipeline, work: pathlib.Path, source: str, target: str, settings, logs):
    """One round over the log domains: rare items out, then short users; others pass through."""
    min_user, min_item = settings
    records = _read(pipeline, work, source, "Seq")
    passing = records | "Others" >> beam.Filter(lambda r: r["d"] not in logs)
    records = records | "Logs" >> beam.Filter(lambda r: r["d"] in logs)
    at = records | "Explode" >> beam.FlatMap(_explode)
    kept = (
        {"at": at}
        | "ByItem" >> beam.CoGroupByKey()
        | "Frequent" >> beam.FlatMap(_frequent, min_item)
    )
    firsts = records | "First" >> beam.Map(lambda r: ((r["d"], r["user"]), r["first"]))
    kept_records = (
        {"first": firsts, "kept": kept}
        | "ByUser" >> beam.CoGroupByKey()
        | "LongEnough" >> beam.FlatMap(_long_enough, min_user)
    )
    _write((passing, kept_records) | beam.Flatten(), work, target, "Seq")


# --- numbering and writing ----------------------------------------------------------------


def _user_keys(record: dict, kind: str):
    """((d, a, b), (d, user)): the key of the user's first row."""
    if kind == "rows":
        return (record["d"], SPLITS.index(record["split"]), record["line"]), (
            record["d"],
            record["user"],
        )
    return (record["d"], *record["first"]), (record["d"], record["user"])


def _first_key(user_keys):
    (d, user), keys = user_keys
    return min(tuple(k) for k in keys), 1, (d, user)


def _with_user(user_groups):
    """Joins a user's index to their records."""
    _, groups = user_groups
    (index,) = groups["index"]
    for record in groups["records"]:
        yield {**record, "u": index}


def _explode_indexed(record: dict):
    """((d, item), (row key, pos)): every item of a sequence or a given row (target last)."""
    if "seq" in record:
        key, items = ("seq", record["d"], record["u"]), record["seq"]
    else:
        key = ("row", record["d"], record["split"], record["line"], record["u"])
        items = [*record["history"], record["target"]]
    for pos, item in enumerate(items):
        yield (record["d"], item), (key, pos)


def _index_items(item_groups):
    _, groups = item_groups
    (index,) = groups["index"]
    for key, pos in groups["at"]:
        yield tuple(key), (pos, index)


def _examples(key_items, max_len: int):
    """(split, order key, example) rows of a numbered sequence or given row."""
    key, items = key_items
    indices = [index for _, index in sorted(items)]
    if key[0] == "seq":
        _, d, user = key
        for split, rows in leave_one_out(indices, max_len).items():
            for j, (history, target) in enumerate(rows):
                yield split, (d, user, j), (history, target, user, d)
        return
    _, d, split, line, user = key
    yield split, (d, line, 0), (indices[:-1][-max_len:], indices[-1], user, d)


def _write_shard(shard_rows, folder: str, counts: dict):
    (split, shard), rows = shard_rows
    rows = [example for _, example in sorted(rows, key=lambda r: r[0])]
    entry = dataset.write_shard(pathlib.Path(folder), split, shard, counts[split], rows)
    return {"split": split, "shard": shard, **entry}


def _final_stage(pipeline, work, staging, kinds, max_len: int, shards: int) -> None:
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

    sequences = sequences | "Kept" >> beam.Filter(kept)
    # Users: numbered by their first row (split-row users counted once each).
    user_keys = (
        (
            sequences | "SeqUserKey" >> beam.Map(_user_keys, "seq"),
            rows | "RowUserKey" >> beam.Map(_user_keys, "rows"),
        )
        | "UserKeys" >> beam.Flatten()
        | "UserKeyByUser" >> beam.Map(lambda kv: (kv[1], kv[0]))
        | "UserRows" >> beam.GroupByKey()
        | "UserFirst" >> beam.Map(_first_key)
    )
    user_index, _ = user_keys | "NumberUsers" >> OrderedOffsets(
        lambda k: (k[0], k[1], k[2] >> LINE_BUCKET)
    )
    _ = (
        rows
        | "RowUsers" >> beam.Map(lambda r: (r["d"], r["user"]))
        | "DistinctRowUsers" >> beam.Distinct()
        | "CountRowUsers" >> beam.Map(lambda du: _count(du[0], "users"))
    )
    records = (
        {
            "index": user_index | "IndexByUser" >> beam.Map(lambda r: (tuple(r[2]), r[1])),
            "records": (sequences, rows)
            | "Records" >> beam.Flatten()
            | "RecordByUser" >> beam.Map(lambda r: ((r["d"], r["user"]), r)),
        }
        | "JoinUsers" >> beam.CoGroupByKey()
        | "WithUser" >> beam.FlatMap(_with_user)
    )
    at = records | "ExplodeItems" >> beam.FlatMap(_explode_indexed)

    # Items: table order (atomic sources) or first appearance in the numbered sequences (logs).
    log_firsts = (
        at
        | "LogItems" >> beam.Filter(lambda kv: kinds[kv[0][0]] == "log")
        | "LogItemKey" >> beam.Map(lambda kv: (tuple(kv[0]), (kv[0][0], kv[1][0][2], kv[1][1])))
        | "LogFirst" >> beam.CombinePerKey(min)
        | "LogFirstRow" >> beam.Map(lambda kv: (kv[1], 1, kv[0]))
    )
    table_items = (
        items
        | "TableItems" >> beam.Filter(lambda r: kinds[r["d"]] != "log")
        | "TableKey" >> beam.Map(lambda r: ((r["d"], r["order"], 0), 1, (r["d"], r["item"])))
    )
    item_index, _ = (
        (log_firsts, table_items)
        | "ItemKeys" >> beam.Flatten()
        | ("NumberItems" >> OrderedOffsets(lambda k: (k[0], k[1] >> USER_BUCKET)))
    )
    item_index = item_index | "ItemByKey" >> beam.Map(lambda r: (tuple(r[2]), r[1] + 1))
    texts = items | "TextByItem" >> beam.Map(lambda r: ((r["d"], r["item"]), r["text"]))
    _write(
        {"index": item_index, "text": texts}
        | "JoinTexts" >> beam.CoGroupByKey()
        | "Numbered" >> beam.FlatMap(_numbered_item),
        work,
        "items-out",
        "ItemsOut",
    )

    examples = (
        {"index": item_index, "at": at}
        | "JoinItems" >> beam.CoGroupByKey()
        | "IndexItems" >> beam.FlatMap(_index_items)
        | "ByRow" >> beam.GroupByKey()
        | "Examples" >> beam.FlatMap(_examples, max_len)
    )
    for split in SPLITS:
        ranked, total = (
            examples
            | f"{split}Only" >> beam.Filter(lambda r, s=split: r[0] == s)
            | f"{split}Key" >> beam.Map(lambda r: (r[1], 1, r[2]))
            | f"{split}Number" >> OrderedOffsets(lambda k: (k[0], k[1] >> USER_BUCKET))
        )
        count = total | f"{split}Count" >> beam.Map(
            lambda n, s=split: {s: dataset.shard_count(n, shards)}
        )
        _ = (
            ranked
            | f"{split}Shard"
            >> beam.Map(
                lambda r, c, s=split: ((s, r[1] % c[s]), (r[1], r[2])),
                beam.pvalue.AsSingleton(count),
            )
            | f"{split}ByShard" >> beam.GroupByKey()
            | f"{split}Write"
            >> beam.Map(_write_shard, str(staging), beam.pvalue.AsSingleton(count))
            | f"{split}Json" >> beam.Map(json.dumps)
            | f"{split}Files"
            >> beam.io.WriteToText(str(work / f"files-{split}" / "part"), ".jsonl")
        )
        _ = ranked | f"{split}Rows" >> beam.Map(lambda r, s=split: _count(r[2][3], f"split.{s}"))


def _numbered_item(item_groups):
    (d, item), groups = item_groups
    for index in groups["index"]:
        (text,) = list(groups["text"])[:1]
        yield [index, d, item, text]


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
    files = {}
    for split in SPLITS:
        entries = sorted(_read_local(work, f"files-{split}"), key=lambda e: e["shard"])
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
