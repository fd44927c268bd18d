"""An exact top-K index over a catalogue held in pieces, for full-ranking evaluation."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs


class StreamingBruteForce(tfrs.layers.factorized_top_k.TopK):
    """Exact top-K retrieval over catalogue pieces, one piece scored at a time.

    Like TFRS's `Streaming` index, memory holds one piece's `[queries, piece]` scores and a
    running top-K, never a `[queries, catalogue]` matrix. Unlike it, most scores never go
    through a top-K: each piece's scores are cut into blocks of `block_size`, and only the
    blocks whose maximum beats the running K-th score are searched (a block outside the K
    blocks with the largest maxima cannot hold a top-K score). After the first pieces that is
    a few blocks per query, so a pass costs about one matrix product.

    Results equal `BruteForce`'s, ties included: equal scores rank the earlier candidate
    first, provided the pieces come in candidate order.

    Args:
        k: the default number of results.
        block_size: scores per block.

    Call arguments:
        queries: `[batch, d]` query vectors.
        k: how many results (default: the constructor's `k`).

    Returns:
        `(scores, identifiers)`, each `[batch, k]`, best first.

    Example:
    ```python
    index = StreamingBruteForce(k=50)
    index.index_pieces([(ids[:1000], vectors[:1000]), (ids[1000:], vectors[1000:])])
    scores, top_ids = index(queries)
    ```
    """

    def __init__(self, k: int = 10, block_size: int = 16, name: str | None = None) -> None:
        super().__init__(k=k, name=name)
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self._block_size = block_size
        self._pieces: list[tuple[tf.Tensor, tf.Tensor]] = []

    @property
    def num_candidates(self) -> int:
        return sum(int(ids.shape[0]) for ids, _ in self._pieces)

    def index_pieces(self, pieces: Iterable[tuple[tf.Tensor, tf.Tensor]]) -> StreamingBruteForce:
        """Indexes `(identifiers [n], candidates [n, d])` pieces, in tie-breaking order.

        Candidates are kept transposed (`[d, n]`), the faster layout for the products; pieces
        are read one at a time, so a generator's need not all be in memory twice.
        """
        self._pieces = []
        for ids, vectors in pieces:
            if int(tf.size(ids)) > 0:
                self._pieces.append((tf.convert_to_tensor(ids), tf.transpose(vectors)))
        if not self._pieces:
            raise ValueError("no candidates to index")
        return self

    def index(
        self, candidates: tf.Tensor, identifiers: tf.Tensor | None = None
    ) -> StreamingBruteForce:
        if identifiers is None:
            identifiers = tf.range(tf.shape(candidates)[0])
        return self.index_pieces([(identifiers, candidates)])

    def call(self, queries: tf.Tensor, k: int | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        if not self._pieces:
            raise ValueError("nothing indexed: call index_pieces() or index() first")
        k = self._k if k is None else k
        queries = tf.convert_to_tensor(queries)
        best_scores = tf.zeros([tf.shape(queries)[0], 0], queries.dtype)
        best_ids = tf.zeros([tf.shape(queries)[0], 0], self._pieces[0][0].dtype)
        for ids, candidates in self._pieces:
            best_scores, best_ids = self._merge_piece(
                queries, ids, candidates, best_scores, best_ids, k
            )
        return best_scores, best_ids

    @tf.function(reduce_retracing=True)
    def _merge_piece(self, queries, ids, candidates, best_scores, best_ids, k: int):
        """The running top-K `(scores, ids)` after one more piece."""
        size = self._block_size
        scores = tf.linalg.matmul(queries, candidates)
        width = tf.shape(scores)[1]
        blocks = (width + size - 1) // size
        padded = tf.pad(scores, [[0, 0], [0, blocks * size - width]], constant_values=-np.inf)
        maxima = tf.reduce_max(tf.reshape(padded, [-1, blocks, size]), axis=2)
        # Only a score above the K-th kept one can enter (equal ones lose to earlier pieces), and
        # a block outside the K with the largest maxima cannot hold a top-K score.
        full = tf.shape(best_scores)[1] >= k
        floor = tf.where(full, tf.reduce_min(best_scores, axis=1), -np.inf)  # sorted: the K-th
        above = tf.reduce_sum(tf.cast(maxima > floor[:, None], tf.int32), axis=1)
        wanted = tf.minimum(k, tf.reduce_max(above))
        # The blocks searched, in column order so that ties still rank the earlier column first.
        _, chosen = tf.math.top_k(maxima, k=wanted)
        chosen = tf.sort(chosen, axis=1)
        columns = chosen[:, :, None] * size + tf.range(size)[None, None, :]
        columns = tf.reshape(columns, [tf.shape(scores)[0], -1])
        values = tf.gather(padded, columns, batch_dims=1)
        # One top-K over the kept results and the searched columns: kept ones come first, so
        # they win ties against this piece, and the columns are in order among themselves.
        # A padding column scores -inf and never outranks a real one: any valid column will do.
        ids = tf.gather(ids, tf.minimum(columns, width - 1))
        merged = tf.concat([best_scores, values], axis=1)
        seen = tf.shape(best_scores)[1] + width  # at most this many real scores to keep
        best_scores, order = tf.math.top_k(merged, k=tf.minimum(k, seen))
        return best_scores, tf.gather(tf.concat([best_ids, ids], axis=1), order, batch_dims=1)

    def is_exact(self) -> bool:
        return True

    def get_config(self) -> dict:
        return {"k": self._k, "block_size": self._block_size, "name": self.name}
