"""The UniSRec retrieval model: item tower + sequence encoder, objective in `compute_loss`."""

from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tf_unisrec.layers import ItemTower, SequenceEncoder
from tf_unisrec.objectives import (
    InBatchContrastive,
    SampledSoftmax,
    full_softmax_loss,
    global_batch_size,
    mask_padding,
)

OBJECTIVES = ("contrastive", "full_softmax")
SCORINGS = ("cosine", "dot")
NEGATIVES = ("full", "in-batch", "sampled")


def length_boundaries(max_length: int, growth: float = 1.35) -> list[int]:
    """Upper history lengths of the encoding buckets: 1, 2, 3, ..., growing geometrically."""
    bounds = [1]
    while bounds[-1] < max_length:
        bounds.append(min(max_length, max(bounds[-1] + 1, int(bounds[-1] * growth))))
    return bounds


class UniSRec(tfrs.models.Model):
    """UniSRec as a TFRS model.

    With `scoring="cosine"` (UniSRec) sequence and item vectors are L2-normalised and scores
    are cosine similarities; with `scoring="dot"` (RecBole's SASRec) they are raw dot products.

    - `objective="contrastive"` (pre-training): `L = L_SI + seq_seq_weight * L_SS`, in-batch
      contrastive losses over the global batch (sequence vs. target item, sequence vs. its
      augmented view), targets shared within the batch masked.
    - `objective="full_softmax"` (fine-tuning, SASRec): cross-entropy over all items with
      temperature, as the official code does (not in-batch negatives). The padding item is
      excluded from the softmax; the official code leaves it in. With `negatives="in-batch"`
      or `"sampled"` the softmax runs over the global batch's targets (plus `num_negatives`
      items sampled per step, shared by the batch), logQ-corrected (`SampledSoftmax`), and
      only the items of the step go through the item tower: the cost of a step no longer
      grows with the catalogue. Call `set_sampling` first.

    Args:
        item_tower: an `ItemTower`.
        sequence_encoder: a `SequenceEncoder`.
        objective: one of `OBJECTIVES`.
        scoring: one of `SCORINGS`; the contrastive objective needs "cosine".
        temperature: softmax temperature of every loss.
        seq_item_weight: weight of `L_SI` in pre-training (0 is the "w/o L_SI" ablation).
        seq_seq_weight: weight `lambda` of `L_SS` in pre-training (0 is "w/o L_SS").
        negatives: one of `NEGATIVES`, the candidates of the fine-tuning softmax.
        num_negatives: items sampled per step with `negatives="sampled"`.
        bucket_by_length: encode a batch in groups of similar history length, each trimmed
            to its own longest history. Every history is encoded on its own, so the result is
            exact; it only skips the work on padding.

    Reference:
        Hou et al., KDD 2022, Sections 2.3-2.4.
    """

    def __init__(
        self,
        item_tower: ItemTower,
        sequence_encoder: SequenceEncoder,
        objective: str = "full_softmax",
        scoring: str = "cosine",
        temperature: float = 0.07,
        seq_item_weight: float = 1.0,
        seq_seq_weight: float = 1e-3,
        negatives: str = "full",
        num_negatives: int = 1024,
        bucket_by_length: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if scoring not in SCORINGS or (objective == "contrastive" and scoring != "cosine"):
            raise ValueError(f"scoring must be one of {SCORINGS} (cosine when contrastive)")
        self.item_tower = item_tower
        self.sequence_encoder = sequence_encoder
        self.objective = objective
        self.scoring = scoring
        if negatives not in NEGATIVES or (negatives != "full" and objective != "full_softmax"):
            raise ValueError(f"negatives must be one of {NEGATIVES} (full when contrastive)")
        self.negatives = negatives
        self.num_negatives = num_negatives
        self.target_probability: tf.Tensor | None = None
        self.negative_probability: tf.Tensor | None = None
        self.temperature = temperature
        self.seq_item_weight = seq_item_weight
        self.seq_seq_weight = seq_seq_weight
        self.bucket_by_length = bucket_by_length
        self.seq_item_task = InBatchContrastive(temperature, name="seq_item")
        self.seq_seq_task = InBatchContrastive(temperature, name="seq_seq")
        self.sampled_task = SampledSoftmax(temperature, name="sampled_softmax")

    def set_sampling(self, target_counts: np.ndarray, popularity: bool = False) -> None:
        """The distributions of sampled softmax: targets by frequency, negatives as asked.

        Args:
            target_counts: `[items + 1]` how often each item is a training target.
            popularity: sample negatives by target frequency; otherwise uniformly.
        """
        counts = np.asarray(target_counts, np.float64)
        if counts.shape != (self.item_tower.num_items + 1,) or counts.sum() <= 0:
            raise ValueError(f"expected {self.item_tower.num_items + 1} target counts")
        target = counts / counts.sum()
        if popularity:
            negative = target
        else:
            negative = np.full_like(target, 1.0 / self.item_tower.num_items)
            negative[0] = 0.0
        self.target_probability = tf.constant(target, tf.float32)
        self.negative_probability = tf.constant(negative, tf.float32)

    def sample_negatives(self, seed: tf.Tensor) -> tf.Tensor:
        """`num_negatives` item indices (never padding) drawn from the negative distribution."""
        logits = tf.math.log(self.negative_probability)[tf.newaxis]
        samples = tf.random.stateless_categorical(logits, self.num_negatives, seed)
        return tf.cast(samples[0], tf.int32)

    def sequence_vectors(
        self,
        history: tf.Tensor,
        length: tf.Tensor,
        word_drop_mask: tf.Tensor | None = None,
        training: bool = False,
    ) -> tf.Tensor:
        """L2-normalised sequence vectors `[batch, hidden]` of right-padded histories."""
        if not self.bucket_by_length:
            return self._encode(history, length, word_drop_mask, training)
        length = tf.cast(length, tf.int32)
        rows, outputs = [], []
        lower = 0
        for upper in length_boundaries(self.sequence_encoder.max_length):
            bucket = tf.where((length > lower) & (length <= upper))[:, 0]
            steps = tf.minimum(upper, tf.shape(history)[1])
            mask = None
            if word_drop_mask is not None:
                mask = tf.gather(word_drop_mask, bucket)[:, :steps]
            bucket_history = tf.gather(history, bucket)[:, :steps]
            bucket_length = tf.gather(length, bucket)
            outputs.append(self._encode(bucket_history, bucket_length, mask, training))
            rows.append(bucket)
            lower = upper
        return tf.gather(tf.concat(outputs, axis=0), tf.argsort(tf.concat(rows, axis=0)))

    def _encode(
        self,
        history: tf.Tensor,
        length: tf.Tensor,
        word_drop_mask: tf.Tensor | None,
        training: bool,
    ) -> tf.Tensor:
        items = self.item_tower(history, word_drop_mask=word_drop_mask, training=training)
        return self.sequence_vectors_from_items(items, length, training=training)

    def sequence_vectors_from_items(
        self, item_vectors: tf.Tensor, length: tf.Tensor, training: bool = False
    ) -> tf.Tensor:
        """Sequence vectors from item vectors `[batch, T, hidden]` (e.g. of unseen items)."""
        outputs = self.sequence_encoder(item_vectors, length=length, training=training)
        return self.score_space(outputs)

    def item_inputs(self, training: bool = False, chunk_size: int | None = None) -> tf.Tensor:
        """Item tower outputs of all items `[num_items + 1, hidden]`; row 0 is padding.

        These are what the sequence encoder reads. With `chunk_size` (eager only), the tower
        runs on that many items at a time, which bounds the adaptor's memory on large
        catalogues.
        """
        if chunk_size is None:
            return self.item_tower(tf.range(self.item_tower.num_items + 1), training=training)
        chunks = self._tower_chunks(0, chunk_size, training=training)
        return tf.concat([inputs for _, inputs in chunks], axis=0)

    def item_vector_chunks(self, chunk_size: int) -> Iterator[tuple[tf.Tensor, tf.Tensor]]:
        """`(ids [n], vectors [n, hidden])` of items 1..N as scored, `chunk_size` at a time.

        The catalogue in pieces (eager, inference), made as they are read: no step holds more
        than one piece of adaptor work, and the pieces are never joined into one table.
        """
        for ids, inputs in self._tower_chunks(1, chunk_size, training=False):
            yield ids, self.score_space(inputs)

    def _tower_chunks(
        self, first: int, chunk_size: int, training: bool
    ) -> Iterator[tuple[tf.Tensor, tf.Tensor]]:
        rows = self.item_tower.num_items + 1
        for start in range(first, rows, chunk_size):
            ids = tf.range(start, min(start + chunk_size, rows))
            yield ids, self.item_tower(ids, training=training)

    def item_vectors(self, training: bool = False) -> tf.Tensor:
        """Vectors of all items `[num_items + 1, hidden]` as scored; row 0 is padding."""
        return self.score_space(self.item_inputs(training=training))

    def score_space(self, vectors: tf.Tensor) -> tf.Tensor:
        """Vectors as they are scored: L2-normalised for cosine scoring, as they are for dot."""
        return tf.math.l2_normalize(vectors, axis=-1) if self.scoring == "cosine" else vectors

    def scores(self, history: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
        """Full-ranking scores `[batch, num_items + 1]`; padding gets a huge negative score."""
        queries = self.sequence_vectors(history, length)
        return mask_padding(tf.linalg.matmul(queries, self.item_vectors(), transpose_b=True))

    def call(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.sequence_vectors(features["history"], features["length"], training=training)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """This replica's share of the mean loss over the global batch."""
        queries = self.sequence_vectors(features["history"], features["length"], training=training)
        targets = tf.cast(features["target"], tf.int32)
        denominator = global_batch_size(tf.shape(targets)[0])
        if self.objective == "full_softmax":
            if self.negatives == "full":
                items = self.item_vectors(training=training)
                return full_softmax_loss(queries, items, targets, self.temperature) / denominator
            return self.sampled_loss(queries, targets, features, training) / denominator
        loss = tf.constant(0.0)
        if self.seq_item_weight:
            positives = tf.math.l2_normalize(self.item_tower(targets, training=training), axis=-1)
            loss += self.seq_item_weight * self.seq_item_task(queries, positives, targets)
        if self.seq_seq_weight:
            views = self.sequence_vectors(
                features["history_aug"],
                features["length_aug"],
                word_drop_mask=features["word_drop"],
                training=training,
            )
            loss += self.seq_seq_weight * self.seq_seq_task(queries, views, targets)
        return loss / denominator

    def sampled_loss(
        self, queries: tf.Tensor, targets: tf.Tensor, features: dict, training: bool
    ) -> tf.Tensor:
        """`SampledSoftmax` over the batch's targets and, if sampled, shared negatives."""
        if self.target_probability is None:
            raise ValueError(f"negatives={self.negatives!r} needs set_sampling() first")
        negative_ids = tf.zeros([0], tf.int32)
        if self.negatives == "sampled":
            # Every row carries the batch's seed; a replica left without rows samples anything.
            negative_ids = self.sample_negatives(tf.reduce_max(features["seed"], axis=0))
        positives = self.score_space(self.item_tower(targets, training=training))
        negatives = self.score_space(self.item_tower(negative_ids, training=training))
        return self.sampled_task(
            queries,
            positives,
            targets,
            tf.reshape(negatives, [-1, tf.shape(positives)[1]]),
            negative_ids,
            self.target_probability,
            self.negative_probability,
        )

    def freeze_for_fine_tuning(self) -> None:
        """Parameter-efficient fine-tuning: freeze positions and transformer blocks.

        The adaptor, the encoder's input LayerNorm and the ID table (if any) keep training.
        """
        self.sequence_encoder.position_embedding.trainable = False
        for block in self.sequence_encoder.blocks:
            block.trainable = False
