"""Builds a dataset directory: sharded TFRecords per split, items.tsv and manifest.json.

    python -m data_pipeline.build --input ../shared/data/Scientific --output data/scientific
    python -m data_pipeline.build --output data/ml-100k              # MovieLens-100K default
    python -m data_pipeline.build --input A --input B --output data/pretrain   # multi-domain
    python -m data_pipeline.build --input LOGS --output OUT --engine beam -- --runner=...

The command also computes the item text features (`data_pipeline.encode_text`) unless given
`--no-text-features`. Builds are idempotent (same inputs and options: nothing is rewritten)
and atomic (everything is written to a temporary folder beside the output, synced, then
renamed into place). `--engine local` (the default) works in this process; `--engine beam`
runs the same build as Apache Beam pipelines (`data_pipeline.beam`), with the arguments after
`--` passed to Beam, and writes the same bytes.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import pathlib
import sys
import time

from data_pipeline import dataset, rejects
from data_pipeline.dataset import FORMAT_VERSION, MANIFEST, RECORD_SCHEMA, SPLITS
from data_pipeline.encode_text import add_encoder_arguments, encode_from_args
from data_pipeline.engines import build_local
from data_pipeline.errors import DataError
from data_pipeline.fileio import out_of_space, sha256_file, staged_directory
from data_pipeline.rejects import MAX_REJECTED
from data_pipeline.sources import FORMATS
from data_pipeline.sources.atomic import AtomicPlan
from data_pipeline.sources.detect import plan_source
from data_pipeline.sources.log import LogColumns, LogPlan

# The paper's preprocessing: 5-core, histories of the last 50 items.
MIN_USER = 5
MIN_ITEM = 5
MAX_LEN = 50
SHARDS = 4
ENGINES = ("local", "beam")


def _fingerprint(plans: list[LogPlan | AtomicPlan], options: dict) -> tuple[str, list[list[dict]]]:
    inputs = [[{"name": f.name, "sha256": sha256_file(f)} for f in p.used] for p in plans]
    blob = json.dumps(
        {"format_version": FORMAT_VERSION, "options": options, "inputs": inputs}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest(), inputs


def _current(output: pathlib.Path, fingerprint: str, max_rejected: int) -> dict | None:
    """The manifest at `output` if it was built from the same inputs and its files are intact."""
    try:
        manifest = dataset.read_manifest(output)
    except DataError:
        return None
    if manifest.get("fingerprint") != fingerprint:
        return None
    if manifest.get("rejected_rows", 0) > max_rejected:
        return None
    try:
        dataset.verify_files(output, manifest)
    except DataError:
        return None
    return manifest


def build(
    inputs: list[list[pathlib.Path]],
    output: pathlib.Path,
    *,
    fmt: str = "auto",
    min_user: int = MIN_USER,
    min_item: int = MIN_ITEM,
    max_len: int = MAX_LEN,
    shards: int = SHARDS,
    name: str | None = None,
    columns: LogColumns | None = None,
    max_rejected: int = MAX_REJECTED,
    engine: str = "local",
    beam_args: list[str] | tuple[str, ...] = (),
) -> tuple[dict, bool]:
    """Builds (or confirms) the dataset at `output`.

    Args:
        inputs: One list of paths per domain (a folder, or files); empty for MovieLens-100K.
        output: The dataset folder to create or replace.
        fmt: Input format, see `data_pipeline.sources.FORMATS`.
        min_user, min_item: k-core thresholds for log sources (0 disables).
        max_len: Histories keep their last `max_len` items.
        shards: TFRecord files per split (fewer when a split has fewer rows).
        name: Dataset name; defaults to the domain names joined by "+".
        columns: Column names for log sources (auto-detected where None).
        max_rejected: How many malformed rows may be left out (see `data_pipeline.rejects`).
        engine: "local" or "beam"; both write the same bytes.
        beam_args: Beam pipeline options (e.g. `--runner=DataflowRunner`), for `engine="beam"`.

    Returns:
        (manifest, whether anything was written).
    """
    if max_len < 1 or shards < 1 or min_user < 0 or min_item < 0 or max_rejected < 0:
        raise DataError(
            "--max-len and --shards must be >= 1, --min-user, --min-item and --max-rejected >= 0"
        )
    if engine not in ENGINES:
        raise DataError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
    columns = columns or LogColumns()
    plans = [plan_source(paths, fmt, columns) for paths in inputs or [[]]]
    name = name or "+".join(p.name for p in plans)
    options = {
        "format": fmt,
        "min_user": min_user,
        "min_item": min_item,
        "max_len": max_len,
        "shards": shards,
        "name": name,
        "columns": [columns.user, columns.item, columns.time, list(columns.text or [])],
    }
    fingerprint, input_files = _fingerprint(plans, options)
    output = output.absolute()
    manifest = _current(output, fingerprint, max_rejected)
    if manifest is not None:
        return manifest, False
    if output.exists() and not (output / MANIFEST).is_file() and any(output.iterdir()):
        raise DataError(
            "refusing to replace a folder that is not a dataset (no manifest.json)", output
        )

    with staged_directory(output, replace=True) as staging:
        settings = dict(
            min_user=min_user,
            min_item=min_item,
            max_len=max_len,
            shards=shards,
            max_rejected=max_rejected,
        )
        if engine == "beam":
            from data_pipeline.beam.build import build_beam

            built = build_beam(plans, staging, beam_args=beam_args, **settings)
        else:
            built = build_local(plans, staging, **settings)
        entries, items = built.domains, built.items
        for entry, plan, files in zip(entries, plans, input_files, strict=True):
            entry["source"] = {
                "format": "atomic" if isinstance(plan, AtomicPlan) else "log",
                "given_split": isinstance(plan, AtomicPlan) and plan.has_split,
                "files": files,
            }
        users = sum(e["users"] for e in entries)
        interactions = sum(e["interactions"] for e in entries)
        words = sum(len(text.split()) for _, _, text in items)
        item_table = staging / dataset.ITEM_TABLE
        dataset.write_item_table(item_table, items)
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "fingerprint": fingerprint,
            "options": options,
            "domains": entries,
            "users": users,
            "items": len(items),
            "interactions": interactions,
            "splits": {split: sum(e["rows"] for e in built.files[split]) for split in SPLITS},
            "avg_seq_len": interactions / max(users, 1),
            "avg_text_words": words / max(len(items), 1),
            "items_without_text": sum(1 for _, _, text in items if not text),
            "max_seq_len": max_len,
            "schema": RECORD_SCHEMA,
            "files": built.files,
            "item_table": {"path": item_table.name, "sha256": sha256_file(item_table)},
            "rejected_rows": len(built.rejected),
        }
        rejected = rejects.write_rejected(staging, built.rejected)
        if rejected:
            manifest["rejected"] = rejected
        # The manifest is written last: a folder without one is never trusted.
        dataset.write_manifest(staging, manifest)
    return manifest, True


def summary(manifest: dict) -> str:
    """The paper's statistics table (#Users, #Items, #Inters, Avg n, Avg c) plus split sizes."""
    header = ("Domain", "#Users", "#Items", "#Inters", "Avg n", "Avg c", "train", "valid", "test")
    rows = [
        (
            d["name"],
            f"{d['users']:,}",
            f"{d['items']:,}",
            f"{d['interactions']:,}",
            f"{d['avg_seq_len']:.2f}",
            f"{d['avg_text_words']:.2f}",
            *(f"{d['splits'][s]:,}" for s in SPLITS),
        )
        for d in manifest["domains"]
    ]
    if len(rows) > 1:
        m = manifest
        rows.append(
            (
                "Total",
                f"{m['users']:,}",
                f"{m['items']:,}",
                f"{m['interactions']:,}",
                f"{m['avg_seq_len']:.2f}",
                f"{m['avg_text_words']:.2f}",
                *(f"{m['splits'][s]:,}" for s in SPLITS),
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *rows]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_pipeline.build",
        description="Interaction data -> sharded TFRecords, items.tsv and manifest.json.",
    )
    parser.add_argument(
        "--input",
        action="append",
        nargs="+",
        type=pathlib.Path,
        default=[],
        metavar="DIR_OR_FILES",
        help="a folder or files of one domain; repeat per domain; omit for MovieLens-100K",
    )
    parser.add_argument(
        "--output", required=True, type=pathlib.Path, help="dataset folder to write"
    )
    parser.add_argument(
        "--format", default="auto", choices=FORMATS, help="input format (default: detected)"
    )
    parser.add_argument(
        "--min-user",
        type=int,
        default=MIN_USER,
        help=f"k-core: min interactions per user, 0 for none (default: {MIN_USER})",
    )
    parser.add_argument(
        "--min-item",
        type=int,
        default=MIN_ITEM,
        help=f"k-core: min interactions per item, 0 for none (default: {MIN_ITEM})",
    )
    parser.add_argument(
        "--max-len",
        type=int,
        default=MAX_LEN,
        help=f"keep the last N items of each history (default: {MAX_LEN})",
    )
    parser.add_argument(
        "--shards", type=int, default=SHARDS, help=f"TFRecord files per split (default: {SHARDS})"
    )
    parser.add_argument("--name", help="dataset name (default: the domain names joined by '+')")
    parser.add_argument(
        "--max-rejected",
        type=int,
        default=MAX_REJECTED,
        metavar="N",
        help="leave up to N malformed rows out, listed in OUTPUT/rejected/ "
        f"(default: {MAX_REJECTED}: the first one stops the build)",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: in this process; beam: Apache Beam pipelines, options after `--` "
        "(pip install -e .[beam]); both write the same bytes (default: local)",
    )
    parser.add_argument("--user-col", help="log user column (default: auto)")
    parser.add_argument("--item-col", help="log item column (default: auto)")
    parser.add_argument("--time-col", help="log timestamp column (default: auto)")
    parser.add_argument(
        "--text-cols", help="comma-separated item text columns (default: text, else all)"
    )
    parser.add_argument(
        "--text-features",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also encode item texts with the text encoder (default: yes)",
    )
    add_encoder_arguments(parser, "--text-max-length")
    return parser


def no_room(output: pathlib.Path, reason: str) -> str:
    """The line for a build that ran out of disk space: staging is already removed."""
    kept = (
        "the previous build there is intact"
        if (pathlib.Path(output) / MANIFEST).is_file()
        else "nothing was written there"
    )
    return (
        f"out of disk space writing {output} ({reason}); {kept}: free space and rerun the "
        "same command"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    args = _parser().parse_args(argv)
    if beam_args and args.engine != "beam":
        print("error: pipeline options after `--` need --engine beam", file=sys.stderr)
        return 2
    columns = LogColumns(
        args.user_col,
        args.item_col,
        args.time_col,
        tuple(args.text_cols.split(",")) if args.text_cols else None,
    )
    start = time.perf_counter()
    try:
        manifest, written = build(
            args.input,
            args.output,
            fmt=args.format,
            min_user=args.min_user,
            min_item=args.min_item,
            max_len=args.max_len,
            shards=args.shards,
            name=args.name,
            columns=columns,
            max_rejected=args.max_rejected,
            engine=args.engine,
            beam_args=beam_args,
        )
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # only a write that found no room is turned into a line
        if out_of_space(e) is None:
            raise
        print(f"error: {no_room(args.output, out_of_space(e))}", file=sys.stderr)
        return 2
    print(summary(manifest))
    state = "written" if written else "up to date, nothing written"
    print(f"{args.output}: {state} ({time.perf_counter() - start:.1f} s)")
    if args.text_features:
        kwargs = {}
        if args.engine == "beam":
            from data_pipeline.beam import text

            kwargs["encode"] = functools.partial(
                text.encode_texts, beam_args=beam_args, scratch=args.output.absolute().parent
            )
        try:
            meta = encode_from_args(args, args.output, **kwargs)
        except (DataError, FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # only a write that found no room is turned into a line
            if out_of_space(e) is None:
                raise
            print(f"error: {no_room(args.output, out_of_space(e))}", file=sys.stderr)
            return 2
        print(f"text features: {meta['encoder']}, {meta['pooling']} pooling, {meta['dim']}-d")
    return 0


if __name__ == "__main__":
    sys.exit(main())
