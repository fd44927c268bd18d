"""The tf.data reader: shapes, padding, truncation, determinism and UniSRec's augmentation."""

import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline.dataset import DatasetDir
from data_pipeline.reader import Augmentation, augment_batch, make_dataset, shuffle_buffer_rows

REPO = pathlib.Path(__file__).resolve().parents[2]
AUGMENTATION = Augmentation(item_drop_ratio=0.2, item_drop_prob=0.9)


def batches(dataset: tf.data.Dataset) -> list[dict[str, np.ndarray]]:
    return [{k: v.numpy() for k, v in b.items()} for b in dataset]


def test_shapes_padding_and_coverage(scientific):
    out = batches(make_dataset(scientific, "valid", batch_size=1000))
    assert sum(len(b["target"]) for b in out) == 8442
    for b in out:
        history, length = b["history"], b["length"]
        assert history.dtype == np.int32 and length.dtype == np.int32
        assert history.shape == (len(b["target"]), length.max())
        assert (length >= 1).all()
        positions = np.arange(history.shape[1])[None, :]
        assert ((history > 0) == (positions < length[:, None])).all()
        assert {"user", "domain", "target"} <= set(b) and (b["domain"] == 0).all()
    assert len(out[-1]["target"]) == 442
    dropped = batches(make_dataset(scientific, "valid", batch_size=1000, drop_remainder=True))
    assert len(dropped) == 8


def test_truncation_keeps_last_items(scientific):
    full = batches(make_dataset(scientific, "test", batch_size=512))
    short = batches(make_dataset(scientific, "test", batch_size=512, max_len=3))
    for f, s in zip(full, short, strict=True):
        assert s["history"].shape[1] <= 3
        assert (s["length"] == np.minimum(f["length"], 3)).all()
        for row in range(len(f["target"])):
            kept = f["history"][row, : f["length"][row]][-3:]
            assert s["history"][row, : s["length"][row]].tolist() == kept.tolist()


def test_deterministic_shuffle(scientific):
    def order(seed: int) -> list[int]:
        dataset = make_dataset(
            scientific, "valid", batch_size=512, shuffle=True, seed=seed, augmentation=AUGMENTATION
        )
        return [
            x for b in batches(dataset) for x in (b["user"] * 100000 + b["length_aug"]).tolist()
        ]

    first = order(7)
    assert first == order(7)
    assert first != order(8)
    assert sorted(u // 100000 for u in first) == list(range(8442))


def _order_correlation(data, **kwargs) -> float:
    """Correlation between where each example is stored and where a shuffled epoch yields it."""
    stored = np.concatenate(
        [b["user"] for b in batches(make_dataset(data, "valid", batch_size=512))]
    )
    position_stored = dict(zip(stored.tolist(), range(len(stored)), strict=True))
    dataset = make_dataset(data, "valid", batch_size=512, shuffle=True, seed=3, **kwargs)
    emitted = np.concatenate([b["user"] for b in batches(dataset)])
    where = [position_stored[user] for user in emitted.tolist()]
    return float(np.corrcoef(where, np.arange(len(emitted)))[0, 1])


def test_shuffle_is_uniform_over_the_whole_split(scientific):
    # Shards store users in order; a buffer of a tenth of the split drifts along that order, the
    # default (the whole split fits) does not.
    dataset = DatasetDir.open(scientific)
    tenth = dataset.split_bytes("valid") // 10
    assert _order_correlation(scientific, shuffle_buffer_bytes=tenth) > 0.8
    assert abs(_order_correlation(scientific)) < 0.05


def test_shuffle_buffer_rows():
    assert shuffle_buffer_rows(rows=1000, split_bytes=10_000, buffer_bytes=10_000) == 1000
    assert shuffle_buffer_rows(rows=1000, split_bytes=10_000, buffer_bytes=2_500) == 250
    assert shuffle_buffer_rows(rows=1000, split_bytes=10_000, buffer_bytes=1) == 1
    assert shuffle_buffer_rows(rows=0, split_bytes=0, buffer_bytes=1) == 1


def test_repeat_reshuffles_each_epoch(scientific):
    dataset = make_dataset(scientific, "valid", batch_size=8442, shuffle=True, seed=1, repeat=True)
    one, two = (b["user"].numpy().tolist() for b in dataset.take(2))
    assert sorted(one) == sorted(two) and one != two


def _augment(history: list[list[int]], seed: int, prob: float) -> dict[str, np.ndarray]:
    lengths = [len(h) for h in history]
    dense = tf.ragged.constant(history, dtype=tf.int32).to_tensor(0)
    batch = {"history": dense, "length": tf.constant(lengths, tf.int32)}
    out = augment_batch(batch, tf.constant([seed, 0], tf.int64), Augmentation(0.2, prob))
    return {k: v.numpy() for k, v in out.items()}


def test_item_drop_invariants():
    rng = np.random.default_rng(0)
    history = [list(rng.integers(1, 1000, size=rng.integers(1, 51))) for _ in range(256)]
    kept = total = 0
    for seed in range(20):
        out = _augment(history, seed, prob=1.0)
        assert not out["word_drop"].any()
        assert out["history_aug"].shape == (256, out["length_aug"].max())
        for row, items in enumerate(history):
            n = out["length_aug"][row]
            aug = out["history_aug"][row]
            assert 1 <= n <= len(items) and (aug[n:] == 0).all() and (aug[:n] > 0).all()
            assert aug[0] == items[0]
            it = iter(items)  # order preserved: aug is a subsequence of the history
            assert all(any(x == y for y in it) for x in aug[:n])
            kept += n - 1
            total += len(items) - 1
    assert abs(1 - kept / total - 0.2) < 0.01


def test_word_drop_invariants():
    history = [list(range(1, n + 1)) for n in range(1, 51)] * 4
    dropped = total = 0
    for seed in range(20):
        out = _augment(history, seed, prob=0.0)
        dense = tf.ragged.constant(history).to_tensor(0).numpy()
        assert (out["history_aug"] == dense).all()
        assert (out["length_aug"] == [len(h) for h in history]).all()
        mask = out["word_drop"]
        positions = np.arange(mask.shape[1])[None, :]
        assert not (mask & (positions >= out["length"][:, None])).any()
        dropped += mask.sum()
        total += sum(len(h) for h in history)
    assert abs(dropped / total - 0.2) < 0.01


def test_one_choice_per_batch_with_item_drop_prob(scientific):
    dataset = make_dataset(scientific, "train", batch_size=64, augmentation=AUGMENTATION, seed=3)
    item_drop = 0
    for b in batches(dataset.take(400)):
        unchanged = b["history_aug"].shape == b["history"].shape and (
            (b["history_aug"] == b["history"]).all() and (b["length_aug"] == b["length"]).all()
        )
        # Word drop keeps the history and marks positions; item drop shortens it and marks none.
        assert unchanged == bool(b["word_drop"].any())
        item_drop += not unchanged
    assert 0.85 < item_drop / 400 < 0.95


def test_distribute_dataset_two_replicas(scientific):
    script = textwrap.dedent(
        f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        two = [tf.config.LogicalDeviceConfiguration()] * 2
        tf.config.set_logical_device_configuration(cpu, two)
        from data_pipeline.reader import Augmentation, make_dataset
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        dataset = make_dataset({str(scientific)!r}, "valid", batch_size=64, drop_remainder=True,
                               augmentation=Augmentation(0.2, 0.9), seed=0)
        batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
        parts = strategy.experimental_local_results(batch["history"])
        assert len(parts) == 2 and all(p.shape[0] == 32 for p in parts), [p.shape for p in parts]
        aug = strategy.experimental_local_results(batch["word_drop"])
        assert all(a.shape == h.shape for a, h in
                   zip(aug, strategy.experimental_local_results(batch["history_aug"])))
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_num_items_and_split_files(scientific):
    info = DatasetDir.open(scientific)
    assert len(info.split_files("train")) == 4
    with pytest.raises(ValueError):
        info.split_files("dev")
