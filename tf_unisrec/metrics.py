"""Full-ranking metrics over a TFRS retrieval index: Recall@K and NDCG@K from one retrieval."""

from collections.abc import Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs


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

    With `chunk_size`, candidates are scored `chunk_size` at a time with a running top-K (a
    TFRS `Streaming` index), so memory stays bounded by `queries x chunk_size` scores whatever
    the catalogue size; the results are the same as the `BruteForce` index's. A cut-off larger
    than the catalogue ranks the whole catalogue.

    Args:
        item_vectors: `[num_items, d]` candidate vectors (padding excluded).
        item_ids: `[num_items]` identifiers of the candidates (e.g. item indices), in the order
            ties are broken.
        ks: cut-offs.
        chunk_size: candidates per scoring step; None scores the whole catalogue at once.
    """

    def __init__(
        self,
        item_vectors: tf.Tensor,
        item_ids: tf.Tensor,
        ks: Sequence[int] = (10, 50),
        chunk_size: int | None = None,
    ) -> None:
        self.ks = tuple(ks)
        num_items = int(item_vectors.shape[0])
        self._cutoff = {k: min(k, num_items) for k in self.ks}
        cutoffs = tuple(sorted(set(self._cutoff.values())))
        if chunk_size is None:
            self.index = tfrs.layers.factorized_top_k.BruteForce(k=max(cutoffs))
            self.index.index(item_vectors, identifiers=item_ids)
        else:
            self.index = tfrs.layers.factorized_top_k.Streaming(k=max(cutoffs))
            candidates = tf.data.Dataset.from_tensor_slices((item_ids, item_vectors))
            self.index.index_from_dataset(candidates.batch(chunk_size))
        self.metrics = FactorizedRanking(self.index, ks=cutoffs)

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
