"""The trainer's tf.data input: shards -> padded batches, plus UniSRec's augmentation."""

from __future__ import annotations

import dataclasses
import os
import random

import tensorflow as tf

from data_pipeline.dataset import DatasetDir, parse_spec

# Shards hold a split in user order, and a multi-domain dataset one domain after another, so a
# shuffle buffer smaller than the split drifts from domain to domain within an epoch. A split of
# up to this many bytes of records is shuffled whole, a uniform permutation as RecBole's; a
# bigger one through a buffer of this many bytes.
SHUFFLE_BUFFER_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """UniSRec's sequence-sequence view (see `augment_batch`).

    Attributes:
        item_drop_ratio: probability that an item is dropped from the view.
        item_drop_prob: probability that a batch uses item drop rather than word drop.
    """

    item_drop_ratio: float
    item_drop_prob: float


def parse_batch(serialized: tf.Tensor, max_len: int) -> dict[str, tf.Tensor]:
    """Parses a batch of tf.train.Example strings; histories keep their last `max_len` items.

    Returns:
        history int32 [B, T] right-padded with 0 (T = longest history in the batch), length,
        target, user, domain int32 [B].
    """
    parsed = tf.io.parse_example(serialized, parse_spec())
    history = tf.cast(parsed["history"][:, -max_len:], tf.int32)
    return {
        "history": history.to_tensor(0),
        "length": tf.cast(history.row_lengths(), tf.int32),
        "target": tf.cast(parsed["target"], tf.int32),
        "user": tf.cast(parsed["user"], tf.int32),
        "domain": tf.cast(parsed["domain"], tf.int32),
    }


def augment_batch(
    batch: dict[str, tf.Tensor], seed: tf.Tensor, augmentation: Augmentation
) -> dict[str, tf.Tensor]:
    """UniSRec's sequence-sequence view (the official PLMEmb transform), one choice per batch.

    A mask drops each real item with probability `item_drop_ratio`. With probability
    `item_drop_prob` the view is item drop: the kept items (the first one always kept) compacted
    to the left. Otherwise it is word drop: the history is unchanged and `word_drop` marks the
    dropped positions, the first included, whose text vectors are replaced by the word-drop
    variant.

    Args:
        batch: Output of `parse_batch`.
        seed: int32/int64 [2], a stateless random seed for this batch.
        augmentation: the drop ratio and the item-drop probability.

    Returns:
        `batch` plus history_aug int32 [B, T'], length_aug int32 [B], word_drop bool [B, T'].
    """
    history, length = batch["history"], batch["length"]
    mask_seed, choice_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    positions = tf.range(tf.shape(history)[1])[tf.newaxis, :]
    real = positions < length[:, tf.newaxis]
    drop = tf.random.stateless_uniform(tf.shape(history), mask_seed) < augmentation.item_drop_ratio
    drop = drop & real

    def item_drop() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        kept = real & ~(drop & (positions > 0))
        width = tf.shape(history)[1]
        # Kept items first, in their order: a stable sort on (dropped, position).
        order = tf.argsort(tf.where(kept, positions, positions + width), axis=1, stable=True)
        new_length = tf.reduce_sum(tf.cast(kept, tf.int32), axis=1)
        compacted = tf.gather(tf.where(kept, history, 0), order, batch_dims=1)
        compacted = compacted[:, : tf.reduce_max(new_length)]
        return compacted, new_length, tf.zeros_like(compacted, tf.bool)

    def word_drop() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return history, length, drop

    use_item_drop = tf.random.stateless_uniform([], choice_seed) < augmentation.item_drop_prob
    history_aug, length_aug, word_drop_mask = tf.cond(use_item_drop, item_drop, word_drop)
    return {
        **batch,
        "history_aug": history_aug,
        "length_aug": length_aug,
        "word_drop": word_drop_mask,
    }


def shuffle_buffer_rows(rows: int, split_bytes: int, buffer_bytes: int) -> int:
    """Examples in a shuffle buffer of `buffer_bytes`: the whole split when it fits."""
    if split_bytes <= buffer_bytes:
        return max(rows, 1)
    return max(1, rows * buffer_bytes // split_bytes)


def make_dataset(
    data: DatasetDir | str | os.PathLike,
    split: str,
    *,
    batch_size: int,
    max_len: int | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    deterministic: bool = True,
    repeat: bool = False,
    drop_remainder: bool = False,
    augmentation: Augmentation | None = None,
    batch_seeds: bool = False,
    shuffle_buffer_bytes: int = SHUFFLE_BUFFER_BYTES,
) -> tf.data.Dataset:
    """Batches of a split of a built dataset.

    Shards are read with a parallel interleave, examples shuffled (optionally), batched, parsed
    and padded to the longest history in the batch. Works with
    `strategy.experimental_distribute_dataset` (the global batch is split across replicas).

    Args:
        data: a `DatasetDir`, or the folder written by `python -m data_pipeline.build`.
        split: "train", "valid" or "test".
        batch_size: Examples per batch.
        max_len: Histories keep their last `max_len` items (None: the dataset's own maximum).
        shuffle: Shuffle shard order and examples: the whole split when its shards hold at most
            `shuffle_buffer_bytes`, else a buffer of about that many bytes of examples.
        seed: Seed for shuffling and augmentation; None draws one.
        deterministic: Keep a reproducible element order despite parallelism.
        repeat: Repeat forever (reshuffled each epoch).
        drop_remainder: Drop the last, smaller batch (static batch dimension).
        augmentation: add UniSRec's seq-seq view with these settings (see `augment_batch`).
        batch_seeds: add `seed`, int64 [B, 2], the same stateless seed on every row of a batch
            (a new one per batch), for randomness the whole batch must share on every
            replica, such as the negatives sampled for it.
        shuffle_buffer_bytes: memory the shuffle buffer may hold (serialized examples).

    Returns:
        A dataset of dicts: history, length, target, user, domain (+ history_aug, length_aug,
        word_drop with `augmentation`; seed with `batch_seeds`).
    """
    dataset_dir = data if isinstance(data, DatasetDir) else DatasetDir.open(data)
    files = dataset_dir.split_files(split)
    rows = dataset_dir.split_rows(split)
    max_len = int(dataset_dir.manifest["max_seq_len"]) if max_len is None else max_len
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    options = tf.data.Options()
    options.deterministic = deterministic

    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=len(files),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    if shuffle:
        buffer = shuffle_buffer_rows(rows, dataset_dir.split_bytes(split), shuffle_buffer_bytes)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    def transform(step: tf.Tensor, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        batch = parse_batch(serialized, max_len)
        batch_seed = tf.stack([tf.constant(seed, tf.int64), step])
        if augmentation is not None:
            batch = augment_batch(batch, batch_seed, augmentation)
        if batch_seeds:
            # Its own stream, apart from the augmentation's.
            shared = tf.random.experimental.stateless_fold_in(batch_seed, 1)
            batch["seed"] = tf.tile(shared[tf.newaxis], [tf.shape(batch["target"])[0], 1])
        return batch

    dataset = dataset.enumerate().map(
        transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
    )
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
