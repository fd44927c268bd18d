import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs
from round_trips import assert_config_round_trip

from tf_unisrec.layers import StreamingBruteForce


def pieces(vectors, ids, size):
    return [(ids[i : i + size], vectors[i : i + size]) for i in range(0, len(ids), size)]


def brute_force(vectors, ids, queries, k):
    index = tfrs.layers.factorized_top_k.BruteForce(k=k)
    index.index(tf.constant(vectors), identifiers=tf.constant(ids))
    return index(tf.constant(queries))


@pytest.mark.parametrize(
    "piece, block, k",
    [
        (1000, 8, 10),  # pruned blocks from the second piece on
        (1000, 4, 50),
        (333, 16, 7),  # pieces and blocks that do not divide each other
        (5000, 64, 50),  # one piece, searched without pruning
    ],
)
@pytest.mark.parametrize("ties", [False, True])
def test_equals_tfrs_brute_force_ties_included(piece, block, k, ties):
    rng = np.random.default_rng(piece + block + k)
    if ties:  # few distinct scores: ties everywhere, broken by candidate order
        vectors = rng.integers(-2, 3, size=(5000, 6)).astype("float32")
        queries = rng.integers(-2, 3, size=(64, 6)).astype("float32")
    else:
        vectors = rng.normal(size=(5000, 6)).astype("float32")
        queries = rng.normal(size=(64, 6)).astype("float32")
    ids = np.arange(100, 5100)
    index = StreamingBruteForce(k=k, block_size=block)
    index.index_pieces(pieces(tf.constant(vectors), tf.constant(ids), piece))
    scores, found = index(tf.constant(queries))
    expected_scores, expected_ids = brute_force(vectors, ids, queries, k)
    np.testing.assert_array_equal(found.numpy(), expected_ids.numpy())
    np.testing.assert_allclose(scores.numpy(), expected_scores.numpy(), rtol=1e-6)
    assert index.num_candidates == 5000


@pytest.mark.parametrize("block", [1, 16])  # 16: every piece is one padded block
def test_catalogue_smaller_than_k_returns_all_and_a_generator_is_read_once(block):
    vectors = tf.constant(np.eye(3, dtype="float32"))
    read = []

    def generate():
        for i in range(3):
            read.append(i)
            yield tf.constant([i + 1]), vectors[i : i + 1]

    index = StreamingBruteForce(k=10, block_size=block).index_pieces(generate())
    scores, found = index(tf.constant([[0.0, 2.0, 1.0]]))
    assert read == [0, 1, 2]
    assert found.numpy().tolist() == [[2, 3, 1]]
    assert scores.numpy().tolist() == [[2.0, 1.0, 0.0]]


def test_nothing_to_index_is_an_error():
    with pytest.raises(ValueError, match="no candidates"):
        StreamingBruteForce(k=5).index_pieces([])
    with pytest.raises(ValueError, match="nothing indexed"):
        StreamingBruteForce(k=5)(tf.ones([1, 3]))


def test_a_later_piece_enters_by_any_margin_and_loses_ties():
    # Scores are the values: piece one holds 0..99, so the running 6th score is 94.
    first = np.arange(100, dtype="float32")
    second = np.full(100, -1.0, "float32")
    second[[10, 70]] = [95.0, 95.001]  # a tie with item 95 (loses) and a score just above it
    vectors = tf.constant(np.concatenate([first, second])[:, None])
    ids = tf.range(200)
    index = StreamingBruteForce(k=6, block_size=4).index_pieces(pieces(vectors, ids, 100))
    _, found = index(tf.constant([[1.0]]))
    assert found.numpy().tolist() == [[99, 98, 97, 96, 170, 95]]


def test_config_round_trip():
    assert_config_round_trip(StreamingBruteForce(k=7, block_size=4, name="catalogue"))
