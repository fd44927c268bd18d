"""Full-ranking metrics: TFRS's FactorizedTopK for Recall@K and a matching NDCG@K."""

from collections.abc import Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs


class FactorizedNDCG(tfrs.metrics.Factorized):
    """NDCG@K of one true candidate per query, over a TFRS retrieval index.

    The companion of `tfrs.metrics.FactorizedTopK` (whose top-K accuracy is Recall@K with one
    target) in its id-based mode: the true candidate's rank is its position among the index's
    top results, so ties are broken exactly as the index breaks them. With one relevant item
    the ideal DCG is 1 and `NDCG@K = 1 / log2(rank + 2)` for a 0-based rank below K, else 0.

    Args:
        candidates: a `tfrs.layers.factorized_top_k.TopK` index built with identifiers.
        ks: cut-offs to report.
    """

    def __init__(
        self,
        candidates: tfrs.layers.factorized_top_k.TopK,
        ks: Sequence[int] = (10, 50),
        name: str = "factorized_ndcg",
    ) -> None:
        super().__init__(name=name)
        self._candidates = candidates
        self._ks = tuple(ks)
        self._ndcg_metrics = [tf.keras.metrics.Mean(name=f"ndcg_at_{k}") for k in self._ks]

    def update_state(
        self,
        query_embeddings: tf.Tensor,
        true_candidate_embeddings: tf.Tensor | None = None,
        true_candidate_ids: tf.Tensor | None = None,
        sample_weight: tf.Tensor | None = None,
    ) -> tf.Operation:
        if true_candidate_ids is None:
            raise ValueError("FactorizedNDCG is id-based: pass true_candidate_ids")
        _, retrieved_ids = self._candidates(query_embeddings, k=max(self._ks))
        true_ids = tf.reshape(tf.cast(true_candidate_ids, retrieved_ids.dtype), [-1, 1])
        matches = tf.cast(tf.equal(retrieved_ids, true_ids), tf.float32)
        ranks = tf.range(tf.cast(tf.shape(matches)[1], tf.float32))
        gains = matches * tf.math.log(2.0) / tf.math.log(ranks + 2.0)
        update_ops = [
            metric.update_state(tf.reduce_sum(gains[:, :k], axis=1), sample_weight)
            for k, metric in zip(self._ks, self._ndcg_metrics, strict=True)
        ]
        return tf.group(update_ops)

    def reset_states(self) -> None:
        for metric in self._ndcg_metrics:
            metric.reset_states()

    def result(self) -> list[tf.Tensor]:
        return [metric.result() for metric in self._ndcg_metrics]


class FullRankingMetrics:
    """Recall@K (TFRS `FactorizedTopK`) and NDCG@K over an exact index of the whole catalogue.

    A cut-off larger than the catalogue ranks the whole catalogue.

    Args:
        item_vectors: `[num_items, d]` candidate vectors (padding excluded).
        item_ids: `[num_items]` identifiers of the candidates (e.g. item indices).
        ks: cut-offs.
    """

    def __init__(
        self, item_vectors: tf.Tensor, item_ids: tf.Tensor, ks: Sequence[int] = (10, 50)
    ) -> None:
        self.ks = tuple(ks)
        num_items = int(item_vectors.shape[0])
        cutoffs = tuple(min(k, num_items) for k in self.ks)
        self.index = tfrs.layers.factorized_top_k.BruteForce(k=max(cutoffs))
        self.index.index(item_vectors, identifiers=item_ids)
        self.recall = tfrs.metrics.FactorizedTopK(candidates=self.index, ks=cutoffs)
        self.ndcg = FactorizedNDCG(self.index, ks=cutoffs)

    def update_state(self, queries: tf.Tensor, true_ids: tf.Tensor) -> None:
        # id-based evaluation: true candidate embeddings are not needed
        self.recall.update_state(queries, queries, true_candidate_ids=true_ids)
        self.ndcg.update_state(queries, true_candidate_ids=true_ids)

    def reset_states(self) -> None:
        self.recall.reset_states()
        self.ndcg.reset_states()

    def result(self) -> dict[str, float]:
        results: dict[str, float] = {}
        recalls = self.recall.result()
        ndcgs = self.ndcg.result()
        for k, recall, ndcg in zip(self.ks, recalls, ndcgs, strict=True):
            results[f"recall@{k}"] = float(recall)
            results[f"ndcg@{k}"] = float(ndcg)
        return results
