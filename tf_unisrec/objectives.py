"""UniSRec's training objectives and the cross-replica plumbing they need."""

import tensorflow as tf
import tensorflow_recommenders as tfrs

MASKED_LOGIT = -1e9


def global_batch_size(local_batch_size: tf.Tensor) -> tf.Tensor:
    """The batch size summed over all replicas in sync, as float32."""
    local_batch_size = tf.cast(local_batch_size, tf.float32)
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return local_batch_size
    return context.all_reduce(tf.distribute.ReduceOp.SUM, local_batch_size)


def gather_candidates(candidates: tf.Tensor, ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Candidates and ids of the global batch, rotated so this replica's come first.

    TFRS's `Retrieval` task labels query `i` with candidate `i` and draws its negatives from
    the candidates it is given, which under a distribution strategy are only the replica's
    own. Gathering them from every replica (gradients flow back through `all_gather`) and
    rotating this replica's block to the front keeps TFRS's diagonal labels correct, so an
    `R`-replica step computes the same loss as one device on the global batch. Integers travel
    as int64: MultiWorkerMirroredStrategy's collectives do not gather int32.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return candidates, ids
    sizes = context.all_gather(tf.shape(candidates, out_type=tf.int64)[:1], axis=0)
    offset = tf.reduce_sum(sizes[: context.replica_id_in_sync_group])
    all_candidates = context.all_gather(candidates, axis=0)
    all_ids = tf.cast(context.all_gather(tf.cast(ids, tf.int64), axis=0), ids.dtype)
    return tf.roll(all_candidates, -offset, axis=0), tf.roll(all_ids, -offset, axis=0)


def summed_retrieval_task(temperature: float) -> tfrs.tasks.Retrieval:
    """TFRS's retrieval task as UniSRec's losses use it: summed (the caller divides by the
    global batch), temperature-scaled, accidental hits removed."""
    return tfrs.tasks.Retrieval(
        loss=tf.keras.losses.CategoricalCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.SUM
        ),
        temperature=temperature,
        remove_accidental_hits=True,
    )


class InBatchContrastive(tf.keras.layers.Layer):
    """In-batch softmax contrastive loss over the global batch (sum over local queries).

    Wraps `tfrs.tasks.Retrieval`: cosine logits (inputs are L2-normalised by the caller)
    divided by `temperature`; candidates whose id equals a query's positive id are removed
    from that query's negatives (`remove_accidental_hits`), which is UniSRec's masking of
    sequences that share a target. The official code sets such logits to zero, which still
    leaves `exp(0)` in the denominator; removing them is the intended behaviour.

    Args:
        temperature: float, the softmax temperature.
    """

    def __init__(self, temperature: float = 0.07, **kwargs) -> None:
        super().__init__(**kwargs)
        self.temperature = temperature
        self._task = summed_retrieval_task(temperature)

    def call(self, queries: tf.Tensor, candidates: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
        candidates, candidate_ids = gather_candidates(candidates, ids)
        return self._task(
            queries,
            candidates,
            candidate_ids=candidate_ids,
            compute_metrics=False,
            compute_batch_metrics=False,
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}


class SampledSoftmax(tf.keras.layers.Layer):
    """Softmax over the global batch's targets plus shared sampled negatives, logQ-corrected.

    Candidates are the targets of the global batch (gathered across replicas, as
    `InBatchContrastive`) followed by `negatives` shared by every query. Each logit is divided
    by `temperature` and then corrected by the log of its candidate's sampling probability
    (`tfrs.tasks.Retrieval`'s `candidate_sampling_probability`), so the sampled softmax
    estimates the full one; candidates equal to a query's target, other than its own column,
    are removed (`remove_accidental_hits`).

    The sampling probability of an item is that of the mixture the candidates come from: `B`
    in-batch targets drawn by target frequency `p_target` and `M` negatives drawn from
    `p_negative`, `q = (B p_target + M p_negative) / (B + M)`.

    Args:
        temperature: float, the softmax temperature.

    Call arguments:
        queries: `[b, d]` this replica's queries.
        positives: `[b, d]` the vectors of their targets.
        positive_ids: `[b]` the targets.
        negatives: `[M, d]` shared negatives (M may be 0).
        negative_ids: `[M]`.
        target_probability: `[items + 1]` `p_target`.
        negative_probability: `[items + 1]` `p_negative` (unused when M is 0).

    Reference:
        Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
        Recommendations", RecSys 2019; Yang et al., "Mixed Negative Sampling for Learning
        Two-tower Neural Networks in Recommendations", WWW 2020.
    """

    def __init__(self, temperature: float = 0.07, **kwargs) -> None:
        super().__init__(**kwargs)
        self.temperature = temperature
        self._task = summed_retrieval_task(temperature)

    def call(
        self,
        queries: tf.Tensor,
        positives: tf.Tensor,
        positive_ids: tf.Tensor,
        negatives: tf.Tensor,
        negative_ids: tf.Tensor,
        target_probability: tf.Tensor,
        negative_probability: tf.Tensor,
    ) -> tf.Tensor:
        positives, positive_ids = gather_candidates(positives, positive_ids)
        batch = tf.cast(tf.shape(positive_ids)[0], tf.float32)
        sampled = tf.cast(tf.shape(negative_ids)[0], tf.float32)
        ids = tf.concat([positive_ids, negative_ids], axis=0)
        probability = (
            batch * tf.gather(target_probability, ids)
            + sampled * tf.gather(negative_probability, ids)
        ) / (batch + sampled)
        return self._task(
            queries,
            tf.concat([positives, negatives], axis=0),
            candidate_sampling_probability=probability,
            candidate_ids=ids,
            compute_metrics=False,
            compute_batch_metrics=False,
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}


def full_softmax_loss(
    queries: tf.Tensor, items: tf.Tensor, targets: tf.Tensor, temperature: float
) -> tf.Tensor:
    """Cross-entropy of each query's target over the whole catalogue (summed over queries).

    `items` is the `[num_items + 1, d]` table; row 0 is padding and is never a candidate.
    """
    logits = tf.linalg.matmul(queries, items, transpose_b=True) / temperature
    logits = mask_padding(logits)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(targets, tf.int32), logits=logits
    )
    return tf.reduce_sum(losses)


def mask_padding(scores: tf.Tensor) -> tf.Tensor:
    """Sets the padding column (item 0) of `[batch, num_items + 1]` scores to a huge negative."""
    padding = tf.one_hot(0, tf.shape(scores)[-1], on_value=True, off_value=False)
    return tf.where(padding, tf.cast(MASKED_LOGIT, scores.dtype), scores)
