"""Sampled softmax with logQ correction: NumPy reference, accidental hits, cost per step."""

import numpy as np
import numpy_reference as ref
import tensorflow as tf
from model_factory import tiny_batch, tiny_model

from tf_unisrec.objectives import SampledSoftmax


def test_matches_numpy_with_accidental_hits():
    rng = np.random.default_rng(0)
    queries = ref.l2_normalize(rng.normal(size=(4, 5))).astype("float32")
    positives = ref.l2_normalize(rng.normal(size=(4, 5))).astype("float32")
    negatives = ref.l2_normalize(rng.normal(size=(3, 5))).astype("float32")
    positive_ids = np.array([3, 5, 3, 7])  # queries 0 and 2 share a target
    negative_ids = np.array([5, 9, 2])  # 5 is query 1's target: an accidental hit
    target_p = rng.random(10).astype("float32")
    target_p /= target_p.sum()
    negative_p = np.full(10, 1 / 9, np.float32)
    negative_p[0] = 0
    loss = SampledSoftmax(temperature=0.07)(
        queries, positives, tf.constant(positive_ids), negatives, tf.constant(negative_ids),
        tf.constant(target_p), tf.constant(negative_p),
    )  # fmt: skip
    ids = np.concatenate([positive_ids, negative_ids])
    mixture = (4 * target_p[ids] + 3 * negative_p[ids]) / 7
    candidates = np.concatenate([positives, negatives])
    expected = ref.sampled_softmax_loss(queries, candidates, ids, mixture, 0.07)
    np.testing.assert_allclose(float(loss) / 4, expected, rtol=1e-5)
    # Without the correction or the hit removal the loss differs: both are in effect.
    uncorrected = ref.sampled_softmax_loss(queries, candidates, ids, np.ones(7), 0.07)
    assert abs(uncorrected - expected) > 1e-3


def test_in_batch_has_no_sampled_negatives():
    model = tiny_model("inductive", negatives="in-batch")
    model.set_sampling(np.r_[0, np.arange(1, 13)])
    batch = tiny_batch()
    queries = model.sequence_vectors(batch["history"], batch["length"]).numpy()
    targets = batch["target"].numpy()
    positives = model.item_vectors().numpy()[targets]
    p = np.r_[0, np.arange(1, 13)] / np.arange(1, 13).sum()
    expected = ref.sampled_softmax_loss(queries, positives, targets, p[targets], 0.07)
    np.testing.assert_allclose(float(model.compute_loss(batch)), expected, rtol=1e-5)


def test_sampled_step_adapts_only_the_items_of_the_step():
    model = tiny_model("inductive", num_items=500, negatives="sampled", num_negatives=5)
    model.set_sampling(np.r_[0, np.ones(500)])
    batch = {**tiny_batch(), "seed": tf.constant([[3, 4]] * 8, tf.int64)}
    rows = []
    adapt = model.item_tower.adaptor.call
    model.item_tower.adaptor.call = lambda x, **kw: rows.append(int(x.shape[0])) or adapt(x, **kw)
    loss = float(model.compute_loss(batch, training=True))
    assert np.isfinite(loss) and 0 < sum(rows) <= 17 + 8 + 5  # history items, targets, negatives
    rows.clear()
    first = model.sample_negatives(tf.constant([3, 4], tf.int64)).numpy()
    again = model.sample_negatives(tf.constant([3, 4], tf.int64)).numpy()
    np.testing.assert_array_equal(first, again)
    assert first.min() >= 1 and first.max() <= 500
    full = tiny_model("inductive", num_items=500)
    adapt_full = full.item_tower.adaptor.call
    full.item_tower.adaptor.call = lambda x, **kw: (
        rows.append(int(x.shape[0])) or adapt_full(x, **kw)
    )
    full.compute_loss(batch, training=True)
    assert sum(rows) > 500  # the full softmax adapts the whole catalogue
