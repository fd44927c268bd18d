"""Full-ranking metrics over a TFRS retrieval index: Recall@K and NDCG@K from one retrieval."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tf_unisrec.layers.streaming_brute_force import StreamingBruteForce


class FactorizedRanking(tfrs.metrics.Factorized):
    """Recall@K and NDCG@K of one true candidate per query, over a TFRS retrieval index.

    The index is queried once per batch for the largest K, and both metrics are read off the
    true candidate's rank among the retrieved ids, so ties are broken exactly as the index
    breaks them (lower index first, for TFRS's exact indexes). With one relevant item,
    Recall@K is TFRS's `FactorizedTopK` top-K accuracy, the ideal DCG is 1, and
    `NDCG@K = 1 / log2(rank + 2)` for a 0-based rank below K, else 0.

    Args:
        candidates: a `tfrs.layers.factorized_top_k.TopK` index built with identifiers.
        ks: cut-offs to report.
    """

    def __init__(
        self,
        candidates: tfrs.layers.factorized_top_k.TopK,
        ks: Sequence[int] = (10, 50),
        name: str = "factorized_ranking",
    ) -> None:
        super().__init__(name=name)
        self._candidates = candidates
        self._ks = tuple(ks)
        self._recall = [tf.keras.metrics.Mean(name=f"recall_at_{k}") for k in self._ks]
        self._ndcg = [tf.keras.metrics.Mean(name=f"ndcg_at_{k}") for k in self._ks]

    def update_state(
        self,
        query_embeddings: tf.Tensor,
        true_candidate_embeddings: tf.Tensor | None = None,
        true_candidate_ids: tf.Tensor | None = None,
        sample_weight: tf.Tensor | None = None,
    ) -> tf.Operation:
        if true_candidate_ids is None:
            raise ValueError("FactorizedRanking is id-based: pass true_candidate_ids")
        _, retrieved_ids = self._candidates(query_embeddings, k=max(self._ks))
        true_ids = tf.reshape(tf.cast(true_candidate_ids, retrieved_ids.dtype), [-1, 1])
        matches = tf.cast(tf.equal(retrieved_ids, true_ids), tf.float32)
        ranks = tf.range(tf.cast(tf.shape(matches)[1], tf.float32))
        gains = matches * tf.math.log(2.0) / tf.math.log(ranks + 2.0)
        update_ops = []
        for k, recall, ndcg in zip(self._ks, self._recall, self._ndcg, strict=True):
            update_ops.append(recall.update_state(tf.reduce_sum(matches[:, :k], 1), sample_weight))
            update_ops.append(ndcg.update_state(tf.reduce_sum(gains[:, :k], 1), sample_weight))
        return tf.group(update_ops)

    def reset_states(self) -> None:
        for metric in self._recall + self._ndcg:
            metric.reset_states()

    def result(self) -> dict[str, tf.Tensor]:
        results = {}
        for k, recall, ndcg in zip(self._ks, self._recall, self._ndcg, strict=True):
            results[f"recall@{k}"] = recall.result()
            results[f"ndcg@{k}"] = ndcg.result()
        return results


class FullRankingMetrics:
    """Recall@K and NDCG@K over an exact index of the whole catalogue.

    The catalogue comes in pieces and goes into a `StreamingBruteForce` index, which scores
    one piece at a time with a running top-K: memory holds `queries x piece` scores whatever
    the catalogue size, and the results are `BruteForce`'s. A cut-off larger than the
    catalogue ranks the whole catalogue.

    Args:
        candidates: `(ids [n], vectors [n, d])` pieces of the catalogue (padding excluded), in
            the order ties are broken; read once, so a generator's pieces are not all kept.
        ks: cut-offs.

    Example:
    ```python
    metrics = FullRankingMetrics(model.item_vector_chunks(65536), ks=(10, 50))
    metrics.update_state(queries, true_ids)
    metrics.result()  # {"recall@10": ..., "ndcg@10": ..., ...}
    ```
    """

    def __init__(
        self, candidates: Iterable[tuple[tf.Tensor, tf.Tensor]], ks: Sequence[int] = (10, 50)
    ) -> None:
        self.ks = tuple(ks)
        self.index = StreamingBruteForce(k=max(self.ks)).index_pieces(candidates)
        self._cutoff = {k: min(k, self.index.num_candidates) for k in self.ks}
        self.metrics = FactorizedRanking(self.index, ks=tuple(sorted(set(self._cutoff.values()))))

    def update_state(self, queries: tf.Tensor, true_ids: tf.Tensor) -> None:
        self.metrics.update_state(queries, true_candidate_ids=true_ids)

    def reset_states(self) -> None:
        self.metrics.reset_states()

    def result(self) -> dict[str, float]:
        values = self.metrics.result()
        results: dict[str, float] = {}
        for k in self.ks:
            for name in ("recall", "ndcg"):
                results[f"{name}@{k}"] = float(values[f"{name}@{self._cutoff[k]}"])
        return results
