"""`--engine beam` writes the local engine's bytes; k-core converges; rejected rows."""

import collections
import filecmp
import pathlib

import numpy as np
import pytest

pytest.importorskip("apache_beam")

from data_pipeline.beam import build as beam_build  # noqa: E402
from data_pipeline.build import build, main  # noqa: E402
from data_pipeline.dataset import DatasetDir  # noqa: E402
from data_pipeline.errors import DataError  # noqa: E402
from data_pipeline.preprocess import MIN_SEQUENCE  # noqa: E402
from data_pipeline.rejects import REJECTED_DIR, REJECTED_FILE  # noqa: E402

MULTI_PROCESS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def shop_log(folder: pathlib.Path, users: int = 160, items: int = 120, seed: int = 0):
    """A generated shop: Zipf item popularity, uneven activity, timestamp ties, two log files.

    With 5-core filtering it needs several rounds: removing rare items shortens users, whose
    removal makes more items rare.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    popularity = 1.0 / np.arange(1, items + 1) ** 1.1
    popularity /= popularity.sum()
    rows = []
    for u in rng.permutation(users):
        for _ in range(int(rng.integers(2, 14))):
            item = int(rng.choice(items, p=popularity))
            rows.append(f"u{u},sku{item},{int(rng.integers(0, 40)) * 100}")  # many ties
    half = len(rows) // 2
    (folder / "a_log.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows[:half]))
    (folder / "b_log.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows[half:]))
    table = ["item_id\ttitle\tbrand"]
    table += [f"sku{i}\tproduct {i} {'deluxe ' * (i % 3)}\tbrand{i % 7}" for i in range(items)]
    (folder / "items.tsv").write_text("\n".join(table) + "\n")
    return folder


def one_kcore_pass_is_not_enough(folder: pathlib.Path, k: int) -> bool:
    """True if filtering items, then users, once leaves an item or a user under k."""
    events = [
        line.split(",")
        for p in sorted(folder.glob("*_log.csv"))
        for line in p.read_text().splitlines()[1:]
    ]
    items = collections.Counter(item for _, item, _ in events)
    kept = [(u, i) for u, i, _ in events if items[i] >= k]
    users = collections.Counter(u for u, _ in kept)
    kept = [(u, i) for u, i in kept if users[u] >= k]
    return min(collections.Counter(i for _, i in kept).values()) < k


def assert_same_folders(a: pathlib.Path, b: pathlib.Path) -> None:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    assert (mismatch, errors) == ([], [])


def test_generated_log_is_byte_identical_and_kcore_converges(tmp_path, monkeypatch):
    folder = shop_log(tmp_path / "shop")
    assert one_kcore_pass_is_not_enough(folder, 5)
    # Buckets of 8 users: shards are joined from many pieces.
    monkeypatch.setattr(beam_build, "EXAMPLE_BUCKET", 3)
    join_shard, pieces = beam_build.dataset.join_shard, {}

    def counting_join(folder, split, shard, count, shard_pieces):
        pieces[split, shard] = list(shard_pieces)
        return join_shard(folder, split, shard, count, pieces[split, shard])

    monkeypatch.setattr(beam_build.dataset, "join_shard", counting_join)
    build([[folder]], tmp_path / "local", shards=3)
    build([[folder]], tmp_path / "beam", shards=3, engine="beam")
    assert_same_folders(tmp_path / "local", tmp_path / "beam")
    assert min(len(p) for (split, _), p in pieces.items() if split == "train") > 3

    # The result is a 5-core: every item and user left has at least 5 interactions.
    data = DatasetDir.open(tmp_path / "beam", verify=True)
    manifest = data.manifest
    assert manifest["domains"][0]["dropped_users"] >= 0
    assert manifest["users"] > 0 and manifest["items"] < 120
    tests = [r for r in read_records(data, "test")]
    lengths = [len(r["history"]) + 1 for r in tests]
    assert min(lengths) >= 5
    counts = collections.Counter()
    for r in tests:
        counts.update([*r["history"], r["target"]])
    assert min(counts[i] for i in range(1, manifest["items"] + 1)) >= 5


def read_records(data: DatasetDir, split: str) -> list[dict]:
    import tensorflow as tf

    out = []
    for path in data.split_files(split):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            feature = tf.train.Example.FromString(record).features.feature
            out.append(
                {
                    "history": list(feature["history"].int64_list.value),
                    "target": feature["target"].int64_list.value[0],
                }
            )
    return out


@pytest.mark.slow
def test_multi_domain_with_rejected_rows_in_worker_processes(tmp_path):
    """A log and an atomic domain, malformed rows tolerated, Beam in two worker processes."""
    log = shop_log(tmp_path / "shop", users=60, items=40, seed=1)
    lines = (log / "b_log.csv").read_text().splitlines()
    lines[3] = "u1,sku1"  # too few fields
    lines[5] = "u2,nosuch,100"  # unknown item
    lines[7] = ",sku2,100"  # no user
    (log / "b_log.csv").write_text("\n".join(lines) + "\n")
    atomic = tmp_path / "atomic"
    atomic.mkdir()
    (atomic / "X.item").write_text(
        "item_id:token\ttitle:token_seq\n" + "".join(f"{i}\tthing {i}\n" for i in range(1, 9))
    )
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    rows = [
        f"{u}\t{' '.join(str(1 + (u + k) % 8) for k in range(2 + u % 4))}\t{1 + u % 8}"
        for u in range(20)
    ]
    rows.insert(4, "3\t1 2\t99")  # unknown item
    (atomic / "X.test.inter").write_text(header + "\n".join(rows) + "\n")

    options = dict(min_user=MIN_SEQUENCE, min_item=2, max_rejected=4)
    build([[log], [atomic]], tmp_path / "local", **options)
    build([[log], [atomic]], tmp_path / "beam", engine="beam", beam_args=MULTI_PROCESS, **options)
    assert_same_folders(tmp_path / "local", tmp_path / "beam")

    data = DatasetDir.open(tmp_path / "beam")
    assert data.manifest["rejected_rows"] == 4
    rejected = (tmp_path / "beam" / REJECTED_DIR / REJECTED_FILE).read_text().splitlines()
    assert rejected[0] == "file\tline\treason"
    reasons = [row.split("\t") for row in rejected[1:]]
    assert [(pathlib.Path(f).name, int(n)) for f, n, _ in reasons] == [
        ("X.test.inter", 6),
        ("b_log.csv", 4),
        ("b_log.csv", 6),
        ("b_log.csv", 8),
    ]
    assert "unknown item 'nosuch'" in reasons[2][2]
    assert "empty user ID" in reasons[3][2]
    assert len(data.manifest["domains"]) == 2


@pytest.mark.parametrize("engine", ["local", "beam"])
def test_too_many_rejected_rows_fail_with_the_first_reasons(tmp_path, engine):
    folder = shop_log(tmp_path / "shop", users=30, items=20, seed=2)
    log = folder / "a_log.csv"
    lines = log.read_text().splitlines()
    lines[2] = "u1,sku1,yesterday"
    lines[9] = "u1,sku1"
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        build([[folder]], tmp_path / "out", engine=engine, max_rejected=1)
    message = str(error.value)
    assert message.startswith(f"{log}, line 3: malformed row: timestamp 'yesterday'")
    assert "2 rejected rows, --max-rejected 1" in message
    assert f"{log}, line 10: malformed row: expected 3 fields, found 2" in message
    assert not (tmp_path / "out").exists()


def test_cli_passes_pipeline_options_and_refuses_them_without_beam(tmp_path, capsys):
    folder = shop_log(tmp_path / "shop", users=30, items=20, seed=3)
    args = ["--input", str(folder), "--no-text-features", "--min-user", "2", "--min-item", "2"]
    assert main([*args, "--output", str(tmp_path / "a"), "--", "--runner=FnApiRunner"]) == 2
    assert "need --engine beam" in capsys.readouterr().err
    out = ["--output", str(tmp_path / "b"), "--engine", "beam"]
    assert main([*args, *out, "--", "--runner=FnApiRunner", "--direct_num_workers=1"]) == 0
    assert main([*args, "--output", str(tmp_path / "c")]) == 0
    assert_same_folders(tmp_path / "b", tmp_path / "c")


@pytest.mark.slow
@pytest.mark.parametrize("domains", [["Scientific"], ["Office2014", "Games"]])
def test_real_datasets_are_byte_identical(shared_data, tmp_path, domains):
    inputs = [[shared_data / d] for d in domains]
    build(inputs, tmp_path / "local")
    build(inputs, tmp_path / "beam", engine="beam")
    assert_same_folders(tmp_path / "local", tmp_path / "beam")


@pytest.mark.slow
def test_text_features_with_run_inference_match_the_local_encoder(tmp_path):
    folder = shop_log(tmp_path / "shop", users=40, items=30, seed=4)
    args = ["--input", str(folder), "--min-user", "2", "--min-item", "2", "--pooling", "mean"]
    assert main([*args, "--output", str(tmp_path / "local")]) == 0
    assert main([*args, "--output", str(tmp_path / "beam"), "--engine", "beam"]) == 0
    local, beam = DatasetDir.open(tmp_path / "local"), DatasetDir.open(tmp_path / "beam")
    for variant in ("default", "word_drop"):
        expected, got = local.text_features(variant), beam.text_features(variant)
        assert expected.shape == got.shape == (local.num_items + 1, 384)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
        assert np.abs(expected).max() > 0.1
    meta = {k: v for k, v in local.manifest["text_features"].items() if "sha256" not in k}
    assert meta == {k: v for k, v in beam.manifest["text_features"].items() if "sha256" not in k}


def test_ordered_offsets_equal_a_running_sum_over_the_sorted_keys():
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from data_pipeline.beam.offsets import OrderedOffsets

    rng = np.random.default_rng(5)
    keys = {(int(a), int(b)) for a, b in rng.integers(0, 50, size=(300, 2))}
    rows = [(key, int(rng.integers(0, 4)), f"v{key}") for key in keys]
    expected, running = [], 0
    for key, weight, value in sorted(rows):
        expected.append((key, running, value))
        running += weight
    with beam.Pipeline("FnApiRunner") as pipeline:
        offsets, total = (
            pipeline | beam.Create(rows) | OrderedOffsets(lambda key: key[0] >> 3)  # 7 buckets
        )
        assert_that(offsets, equal_to(expected), label="offsets")
        assert_that(total, equal_to([running]), label="total")

    # Per bucket: each bucket's rows together, in key order.
    by_bucket = collections.defaultdict(list)
    for key, offset, value in expected:
        by_bucket[key[0] >> 3].append((key, offset, value))
    with beam.Pipeline("FnApiRunner") as pipeline:
        buckets, _ = (
            pipeline | beam.Create(rows) | OrderedOffsets(lambda key: key[0] >> 3, per_bucket=True)
        )
        assert_that(buckets, equal_to(list(by_bucket.items())))

    # Tuple weights keep one running count per position (examples per split, say).
    pairs = [(key, (w, 2 * w + 1), value) for key, w, value in rows]
    expected, running = [], (0, 0)
    for key, (a, b), value in sorted(pairs):
        expected.append((key, running, value))
        running = (running[0] + a, running[1] + b)
    with beam.Pipeline("FnApiRunner") as pipeline:
        offsets, total = pipeline | beam.Create(pairs) | OrderedOffsets(lambda key: key[0] >> 4)
        assert_that(offsets, equal_to(expected), label="offsets")
        assert_that(total, equal_to([running]), label="total")
