import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tf_unisrec.metrics import FullRankingMetrics


def pieces(items, ids, size=None):
    """The catalogue as `FullRankingMetrics` candidates, `size` items per piece (None: one)."""
    items, ids = tf.constant(items), tf.constant(ids)
    size = size or len(ids)
    return [(ids[i : i + size], items[i : i + size]) for i in range(0, len(ids), size)]


def numpy_metrics(queries, items, ids, targets, ks):
    """Rank = position in a stable sort by descending score (ties: lower index first)."""
    order = np.argsort(-(queries @ items.T), axis=1, kind="stable")
    ranks = np.array([np.flatnonzero(ids[order[i]] == t)[0] for i, t in enumerate(targets)])
    out = {}
    for k in ks:
        out[f"recall@{k}"] = float(np.mean(ranks < k))
        out[f"ndcg@{k}"] = float(np.mean(np.where(ranks < k, 1 / np.log2(ranks + 2), 0)))
    return out


@pytest.mark.parametrize("chunk_size", [None, 7])
@pytest.mark.parametrize("ties", [False, True])
def test_recall_and_ndcg_match_numpy(ties, chunk_size):
    rng = np.random.default_rng(7)
    if ties:  # small integer vectors: many equal scores
        items = rng.integers(0, 3, size=(40, 4)).astype("float32")
        queries = rng.integers(0, 3, size=(300, 4)).astype("float32")
    else:
        items = rng.normal(size=(40, 4)).astype("float32")
        queries = rng.normal(size=(300, 4)).astype("float32")
    ids = np.arange(1, 41)
    targets = rng.integers(1, 41, size=300)
    metrics = FullRankingMetrics(pieces(items, ids, chunk_size), ks=(5, 20))
    for start in range(0, 300, 128):
        metrics.update_state(
            queries[start : start + 128], tf.constant(targets[start : start + 128])
        )
    expected = numpy_metrics(queries, items, ids, targets, (5, 20))
    for key, value in metrics.result().items():
        assert value == pytest.approx(expected[key], abs=1e-6), key


def test_cutoff_beyond_catalogue_ranks_everything():
    items = np.eye(3, dtype="float32")
    metrics = FullRankingMetrics(pieces(items, [1, 2, 3]), ks=(2, 50))
    metrics.update_state(tf.constant([[0.0, 1.0, 1.0], [1.0, 0.5, 0.0]]), tf.constant([1, 1]))
    result = metrics.result()
    assert result["recall@50"] == 1.0
    assert result["recall@2"] == 0.5
    assert result["ndcg@50"] == pytest.approx((1 / np.log2(4) + 1) / 2)


def test_recall_is_tfrs_factorized_top_k():
    rng = np.random.default_rng(3)
    items = rng.normal(size=(50, 6)).astype("float32")
    queries = tf.constant(rng.normal(size=(64, 6)).astype("float32"))
    targets = tf.constant(rng.integers(1, 51, size=64), tf.int32)
    ours = FullRankingMetrics(pieces(items, np.arange(1, 51), 16), ks=(5, 10))
    ours.update_state(queries, targets)
    index = tfrs.layers.factorized_top_k.BruteForce(k=10)
    index.index(items, identifiers=tf.range(1, 51))
    reference = tfrs.metrics.FactorizedTopK(candidates=index, ks=(5, 10))
    reference.update_state(queries, queries, true_candidate_ids=targets)
    for k, value in zip((5, 10), reference.result(), strict=True):
        assert ours.result()[f"recall@{k}"] == pytest.approx(float(value), abs=1e-7)
