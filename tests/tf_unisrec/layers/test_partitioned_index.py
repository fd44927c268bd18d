import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs
from round_trips import assert_config_round_trip

from tf_unisrec.layers import PartitionedIndex
from tf_unisrec.layers.partitioned_index import spherical_kmeans


def clustered(clusters=8, per_cluster=50, dim=16, spread=0.05, seed=0):
    """Unit vectors in well-separated clusters, the cluster of each, and the centres."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:clusters].astype("float32")
    labels = np.repeat(np.arange(clusters), per_cluster)
    vectors = centres[labels] + spread * rng.normal(size=(len(labels), dim)).astype("float32")
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), labels, centres


def brute_force(vectors, ids, queries, k):
    index = tfrs.layers.factorized_top_k.BruteForce(k=k)
    index.index(tf.constant(vectors), identifiers=tf.constant(ids))
    return index(tf.constant(queries))


def test_spherical_kmeans_finds_separated_clusters():
    vectors, labels, centres = clustered()
    centroids = spherical_kmeans(vectors, 8, iterations=10, seed=3).numpy()
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)
    # Every cluster maps to one centroid, and different clusters to different centroids.
    assigned = np.argmax(vectors @ centroids.T, axis=1)
    mapping = {int(c): set(assigned[labels == c].tolist()) for c in range(8)}
    assert all(len(m) == 1 for m in mapping.values())
    assert len(set.union(*mapping.values())) == 8
    # Each centroid sits on its cluster's centre.
    matched = centroids[[next(iter(mapping[c])) for c in range(8)]]
    assert np.min(np.sum(matched * centres, axis=1)) > 0.99


@pytest.mark.parametrize("k", [1, 10, 60])
def test_searching_every_partition_equals_brute_force(k):
    rng = np.random.default_rng(k)
    vectors = rng.normal(size=(3000, 12)).astype("float32")
    queries = rng.normal(size=(40, 12)).astype("float32")
    ids = np.arange(7, 3007)
    index = PartitionedIndex(k=k, num_partitions=30, partitions_to_search=30)
    index.index(tf.constant(vectors), identifiers=tf.constant(ids))
    scores, found = index(tf.constant(queries))
    expected_scores, expected_ids = brute_force(vectors, ids, queries, k)
    np.testing.assert_array_equal(found.numpy(), expected_ids.numpy())
    np.testing.assert_allclose(scores.numpy(), expected_scores.numpy(), rtol=1e-5)


def test_searches_the_partition_nearest_the_query():
    vectors, labels, centres = clustered(seed=1)
    ids = np.arange(1, len(labels) + 1)
    rng = np.random.default_rng(2)
    queries = centres[rng.integers(0, 8, 64)] + 0.05 * rng.normal(size=(64, 16))
    queries = queries.astype("float32")
    index = PartitionedIndex(k=10, num_partitions=8, partitions_to_search=1, seed=5)
    index.index(tf.constant(vectors), identifiers=tf.constant(ids))
    scores, found = index(tf.constant(queries))
    expected_scores, expected_ids = brute_force(vectors, ids, queries, 10)
    np.testing.assert_array_equal(found.numpy(), expected_ids.numpy())
    # One partition of eight was read, not the catalogue: a far cluster is never returned.
    nearest_cluster = np.argmax(queries @ centres.T, axis=1)
    assert np.all(labels[found.numpy() - 1] == nearest_cluster[:, None])


def test_a_query_gets_the_same_answer_alone_and_in_a_batch():
    rng = np.random.default_rng(8)
    vectors = rng.normal(size=(2000, 12)).astype("float32")
    queries = tf.constant(rng.normal(size=(30, 12)).astype("float32"))
    index = PartitionedIndex(k=10, num_partitions=40, partitions_to_search=2)
    index.index(tf.constant(vectors))
    scores, found = index(queries)
    for row in range(30):
        alone_scores, alone = index(queries[row : row + 1])
        np.testing.assert_array_equal(alone.numpy()[0], found.numpy()[row])
        np.testing.assert_allclose(alone_scores.numpy()[0], scores.numpy()[row], rtol=1e-5)
    # Searching 2 partitions of 40 misses some of the exact answers on unclustered vectors.
    _, exact = brute_force(vectors, np.arange(2000), queries.numpy(), 10)
    assert not np.array_equal(np.sort(found.numpy(), 1), np.sort(exact.numpy(), 1))


def test_scores_are_exact_and_results_fill_k_from_small_partitions():
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(200, 8)).astype("float32")
    queries = rng.normal(size=(16, 8)).astype("float32")
    # 100 partitions of about 2 candidates: one partition cannot hold k = 25 results.
    index = PartitionedIndex(k=25, num_partitions=100, partitions_to_search=1)
    index.index(tf.constant(vectors))
    scores, found = index(tf.constant(queries))
    assert found.shape == (16, 25)
    assert np.all(np.isfinite(scores.numpy()))
    assert all(len(set(row)) == 25 for row in found.numpy().tolist())
    true_scores = np.einsum("bd,bkd->bk", queries, vectors[found.numpy()])
    np.testing.assert_allclose(scores.numpy(), true_scores, rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(scores.numpy(), axis=1) <= 0)


def test_defaults_scale_with_the_catalogue():
    vectors = np.random.default_rng(0).normal(size=(2500, 4)).astype("float32")
    index = PartitionedIndex().index(tf.constant(vectors))
    assert index.num_partitions == 200  # 4 * sqrt(2500)
    assert index.partitions_to_search == 12  # 200 / 16
    assert not index.is_exact()


def test_rejects_bad_arguments_and_unindexed_queries():
    with pytest.raises(ValueError, match="num_partitions"):
        PartitionedIndex(num_partitions=0)
    with pytest.raises(ValueError, match="partitions_to_search"):
        PartitionedIndex(partitions_to_search=0)
    with pytest.raises(ValueError, match="nothing indexed"):
        PartitionedIndex()(tf.zeros([1, 4]))
    with pytest.raises(ValueError, match="identifiers"):
        PartitionedIndex().index(tf.zeros([5, 4]), identifiers=tf.range(4))


def test_config_round_trip():
    assert_config_round_trip(
        PartitionedIndex(k=7, num_partitions=9, partitions_to_search=2, iterations=3, seed=1)
    )


def test_saved_model_round_trip(tmp_path):
    vectors, _, _ = clustered(seed=6)
    ids = tf.constant([f"item-{i}" for i in range(len(vectors))])
    index = PartitionedIndex(k=5, num_partitions=8, partitions_to_search=2)
    index.index(tf.constant(vectors), identifiers=ids)
    queries = tf.constant(vectors[::37] + 0.01)
    expected_scores, expected_ids = index(queries)
    module = tf.Module()
    module.index = index
    module.top_k = tf.function(
        lambda q, k: index(q, k=k),
        input_signature=[tf.TensorSpec([None, 16], tf.float32), tf.TensorSpec([], tf.int32)],
    )
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    scores, found = loaded.top_k(queries, tf.constant(5))
    np.testing.assert_array_equal(found.numpy(), expected_ids.numpy())
    np.testing.assert_allclose(scores.numpy(), expected_scores.numpy(), rtol=1e-6)
