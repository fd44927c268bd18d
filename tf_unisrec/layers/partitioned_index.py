"""An inverted-file top-K index: search only the partitions nearest to the query."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

# Defaults of `PartitionedIndex`: partitions per square root of the catalogue, the share of them
# a query searches (1 in SEARCH_FRACTION), and k-means training vectors per partition.
PARTITIONS_PER_SQRT_ITEMS = 4
SEARCH_FRACTION = 16
KMEANS_SAMPLES_PER_PARTITION = 64


def spherical_kmeans(
    vectors: np.ndarray | tf.Tensor,
    num_clusters: int,
    iterations: int = 10,
    sample_size: int | None = None,
    seed: int = 0,
    chunk_size: int = 65536,
) -> tf.Tensor:
    """Unit-norm centroids `[num_clusters, d]` of the directions of `vectors` (k-means on cosine).

    Trained on a random sample of `sample_size` vectors (all when `None`), from k-means++
    seeds; an emptied cluster is restarted at a random sample vector.
    """
    vectors = tf.convert_to_tensor(vectors, tf.float32)
    count = int(vectors.shape[0])
    if not 1 <= num_clusters <= count:
        raise ValueError(f"num_clusters must be in [1, {count}], got {num_clusters}")
    rng = np.random.default_rng(seed)
    if sample_size is not None and sample_size < count:
        rows = np.sort(rng.choice(count, max(sample_size, num_clusters), replace=False))
        vectors = tf.gather(vectors, rows)
    sample = tf.math.l2_normalize(vectors, axis=-1)
    size = int(sample.shape[0])
    seeds = rng.choice(size, min(size, 8 * num_clusters), replace=False)
    centroids = tf.constant(_kmeans_plus_plus(sample.numpy()[seeds], num_clusters, rng))
    for _ in range(iterations):
        assignment = _nearest_centroid(sample, centroids, chunk_size)
        sums = tf.math.unsorted_segment_sum(sample, assignment, num_clusters)
        counts = tf.math.bincount(assignment, minlength=num_clusters, maxlength=num_clusters)
        restart = tf.gather(sample, rng.integers(0, size, num_clusters))
        centroids = tf.where((counts > 0)[:, None], tf.math.l2_normalize(sums, axis=-1), restart)
    return centroids


def _kmeans_plus_plus(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` of the unit vectors `points` by greedy k-means++: each step draws a few
    candidates with probability ~ their squared distance to the nearest point chosen so far and
    keeps the one that lowers the total most (Arthur and Vassilvitskii, SODA 2007)."""
    trials = 2 + int(np.log(count))
    chosen = [int(rng.integers(len(points)))]
    distance = np.maximum(2.0 - 2.0 * points @ points[chosen[0]], 0.0)
    for _ in range(count - 1):
        total = distance.sum()
        if total <= 0:  # fewer distinct points than clusters
            candidates = rng.integers(len(points), size=trials)
        else:
            candidates = rng.choice(len(points), size=trials, p=distance / total)
        after = np.minimum(distance, np.maximum(2.0 - 2.0 * points[candidates] @ points.T, 0.0))
        best = int(np.argmin(after.sum(axis=1)))
        chosen.append(int(candidates[best]))
        distance = after[best]
    return points[chosen]


def _nearest_centroid(
    vectors: tf.Tensor, centroids: tf.Tensor, chunk_size: int = 65536
) -> tf.Tensor:
    """`[n]` int32: the centroid of largest inner product for each vector, in chunks."""
    parts = [
        tf.argmax(tf.linalg.matmul(vectors[s : s + chunk_size], centroids, transpose_b=True), 1)
        for s in range(0, int(vectors.shape[0]), chunk_size)
    ]
    return tf.cast(tf.concat(parts, axis=0), tf.int32)


class PartitionedIndex(tfrs.layers.factorized_top_k.TopK):
    """Approximate top-K retrieval that searches only the partitions nearest to a query.

    An inverted-file (IVF) index. `index()` clusters the candidates by direction (spherical
    k-means) into `num_partitions` partitions and stores them grouped by partition. A query
    scores the partition centroids, searches the `partitions_to_search` best partitions
    exhaustively (and more, in centroid order, until they hold at least K candidates), and
    returns the top K of the candidates searched with their exact scores. A query reads about
    `partitions_to_search / num_partitions` of the catalogue instead of all of it; a batch
    reads the partitions any of its queries searches, in one matrix product.

    Every result is a true candidate with its true score; what can be missed is a candidate in
    a partition that was not searched, so the recall against `BruteForce` is measured, not
    assumed. Built from plain TensorFlow ops, it is served by stock TF-Serving (ScaNN's
    custom ops are not).

    Args:
        k: the default number of results.
        num_partitions: partitions to cluster into; default `4 * sqrt(candidates)`.
        partitions_to_search: partitions searched per query; default `num_partitions / 16`,
            at least 1.
        iterations: k-means iterations.
        sample_size: candidates the k-means trains on; default 64 per partition.
        seed: seed of the k-means sample and initial centroids.

    Call arguments:
        queries: `[batch, d]` query vectors.
        k: how many results (default: the constructor's `k`).

    Returns:
        `(scores, identifiers)`, each `[batch, k]`, best first.

    Example:
    ```python
    index = PartitionedIndex(k=10, num_partitions=1024, partitions_to_search=32)
    index.index(item_vectors, identifiers=item_ids)
    scores, top_ids = index(queries)
    ```

    Reference:
        Jégou et al., "Product Quantization for Nearest Neighbor Search", TPAMI 2011
        (the inverted file); Dhillon and Modha, "Concept Decompositions for Large Sparse
        Text Data Using Clustering", Machine Learning 2001 (spherical k-means).
    """

    def __init__(
        self,
        k: int = 10,
        num_partitions: int | None = None,
        partitions_to_search: int | None = None,
        iterations: int = 10,
        sample_size: int | None = None,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(k=k, name=name)
        for what, value in dict(
            num_partitions=num_partitions, partitions_to_search=partitions_to_search
        ).items():
            if value is not None and value < 1:
                raise ValueError(f"{what} must be positive, got {value}")
        self._num_partitions = num_partitions
        self._partitions_to_search = partitions_to_search
        self._iterations = iterations
        self._sample_size = sample_size
        self._seed = seed
        self._candidates = None

    def index(
        self, candidates: tf.Tensor, identifiers: tf.Tensor | None = None
    ) -> PartitionedIndex:
        candidates = tf.convert_to_tensor(candidates)
        count = int(candidates.shape[0])
        if identifiers is None:
            identifiers = tf.range(count)
        identifiers = tf.convert_to_tensor(identifiers)
        if candidates.shape.rank != 2 or int(identifiers.shape[0]) != count or count == 0:
            raise ValueError(
                f"expected candidates [n > 0, d] and identifiers [n], got {candidates.shape} "
                f"and {identifiers.shape}"
            )
        partitions = min(
            count,
            self._num_partitions or max(1, round(PARTITIONS_PER_SQRT_ITEMS * math.sqrt(count))),
        )
        searched = min(
            partitions, self._partitions_to_search or max(1, partitions // SEARCH_FRACTION)
        )
        centroids = spherical_kmeans(
            candidates,
            partitions,
            iterations=self._iterations,
            sample_size=self._sample_size or KMEANS_SAMPLES_PER_PARTITION * partitions,
            seed=self._seed,
        )
        assignment = _nearest_centroid(tf.math.l2_normalize(candidates, axis=-1), centroids)
        order = tf.argsort(assignment, stable=True)
        sizes = tf.math.bincount(assignment, minlength=partitions, maxlength=partitions)
        offsets = tf.concat([[0], tf.cumsum(sizes)], axis=0)

        self._centroids = self._store("centroids", tf.cast(centroids, candidates.dtype))
        self._offsets = self._store("offsets", tf.cast(offsets, tf.int64))
        self._candidates = self._store("candidates", tf.gather(candidates, order))
        self._identifiers = self._store("identifiers", tf.gather(identifiers, order))
        self._searched = searched
        self._reset_tf_function_cache()
        return self

    def _store(self, name: str, value: tf.Tensor) -> tf.Variable:
        variable = self.add_weight(
            name=name,
            shape=value.shape,
            dtype=value.dtype,
            initializer=tf.keras.initializers.Constant(tf.zeros((), value.dtype)),
            trainable=False,
        )
        variable.assign(value)
        return variable

    @property
    def num_partitions(self) -> int:
        return int(self._centroids.shape[0])

    @property
    def partitions_to_search(self) -> int:
        return self._searched

    def call(self, queries: tf.Tensor, k: int | tf.Tensor | None = None):
        if self._candidates is None:
            raise ValueError("nothing indexed: call index() first")
        k = self._k if k is None else k
        queries = tf.convert_to_tensor(queries)
        sizes = self._offsets[1:] - self._offsets[:-1]
        # Partitions in centroid order; each query takes the first `searched`, and more while
        # those hold fewer than k candidates.
        nearest = tf.math.top_k(
            tf.linalg.matmul(queries, self._centroids, transpose_b=True), k=self.num_partitions
        ).indices
        held = tf.cumsum(tf.gather(sizes, nearest), axis=1, exclusive=True)
        taken = (tf.range(self.num_partitions)[None, :] < self._searched) | (
            held < tf.cast(k, held.dtype)
        )
        # The partitions any query of the batch searches, scored for the whole batch in one
        # product over contiguous rows; a query keeps the scores of its own partitions only.
        wanted = tf.gather(taken, tf.argsort(nearest, axis=1), batch_dims=1)  # [batch, P]
        union = tf.where(tf.reduce_any(wanted, axis=0))[:, 0]
        starts = tf.gather(self._offsets, union)
        limits = tf.gather(self._offsets, union + 1)
        rows = tf.ragged.range(starts, limits)
        scores = tf.linalg.matmul(
            queries, tf.gather(self._candidates, rows.flat_values), transpose_b=True
        )
        own = tf.gather(wanted, tf.gather(union, rows.value_rowids()), axis=1)
        scores = tf.where(own, scores, tf.constant(-np.inf, scores.dtype))
        # Ties rank the earlier row (in partition order) first, as top_k does.
        top = tf.math.top_k(scores, k=k)
        picked = tf.gather(rows.flat_values, top.indices)
        return top.values, tf.gather(self._identifiers, picked)

    def is_exact(self) -> bool:
        return False

    def get_config(self) -> dict:
        return {
            "k": self._k,
            "num_partitions": self._num_partitions,
            "partitions_to_search": self._partitions_to_search,
            "iterations": self._iterations,
            "sample_size": self._sample_size,
            "seed": self._seed,
            "name": self.name,
        }
