"""tf.data pipelines over in-memory sample arrays, and per-worker sharding for Horovod.

Batches are single dicts holding every `schema.FEATURES` name plus `schema.LABEL`, the form
TFRS ranking examples use: `tfrs.models.Model.train_step` hands the whole batch to
`compute_loss(features)`, which reads ``features[LABEL]``; `call(features)` ignores the label.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lmn_tf.data.schema import FEATURES, LABEL


def make_dataset(
    arrays: dict[str, np.ndarray],
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of sample arrays as a `tf.data.Dataset` of feature dicts.

    Only the schema's features and the label are kept (extra keys such as the synthetic
    data's ``true_prob`` are dropped). Shuffling permutes the whole split, reproducibly for a
    given seed, and differently on each pass (epoch).

    Args:
        arrays: `schema.FEATURES` names and `schema.LABEL` -> arrays with a common length.
        batch_size: samples per batch.
        shuffle: shuffle the samples (train) or keep their time order (eval).
        seed: shuffle seed.
        drop_remainder: drop a last, smaller batch (keeps Horovod workers in step).

    Returns:
        A dataset of dicts: int32 features with shapes (B, *shape) and a float32 (B,) label.

    Raises:
        ValueError: a missing key, unequal lengths, or a bad batch size.

    Example:
        >>> from lmn_tf.data.synthetic import load
        >>> train, _, _ = load(num_users=20, events_per_user=10, warmup_events=0)
        >>> batch = next(iter(make_dataset(train, batch_size=4)))
        >>> batch["hist_item_ids"].shape, batch["label"].dtype
        (TensorShape([4, 50]), tf.float32)
    """
    tensors = _tensors(arrays, batch_size)
    n = _length(arrays)
    # Shuffle indices, not rows: the buffer then holds n int64s instead of n samples.
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(
        lambda idx: {k: tf.gather(t, idx) for k, t in tensors.items()},
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def epoch_batches(
    arrays: dict[str, np.ndarray],
    batch_size: int,
    seed: int,
    epochs: range,
    skip: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Training batches of ``epochs``, each epoch a permutation fixed by ``(seed, epoch)``.

    Unlike `make_dataset`'s reshuffling (the order of epoch e depends on how many passes the
    same dataset object made before), epoch e's order here is a pure function of the seed and
    e, so a run resumed in epoch e, batch k (``epochs=range(e, E), skip=k``) sees exactly the
    batches the uninterrupted run would have seen. Epochs follow one another without a gap:
    give ``fit`` ``steps_per_epoch = ceil(n / batch_size)`` (``floor`` with
    ``drop_remainder``).

    Args:
        arrays: `schema.FEATURES` names and `schema.LABEL` -> arrays with a common length.
        batch_size: samples per batch.
        seed: the permutations' seed.
        epochs: the epochs to produce, in order.
        skip: batches of the first epoch already trained (dropped before any gather).
        drop_remainder: drop each epoch's last, smaller batch (keeps Horovod workers in step).

    Returns:
        A dataset of feature dicts, like `make_dataset`'s.

    Raises:
        ValueError: a missing key, unequal lengths, or a bad batch size or skip.

    Example:
        >>> from lmn_tf.data.synthetic import load
        >>> train, _, _ = load(num_users=20, events_per_user=10, warmup_events=0)
        >>> ds = epoch_batches(train, batch_size=4, seed=0, epochs=range(2), skip=1)
        >>> len(list(ds)) == 2 * -(-len(train["label"]) // 4) - 1
        True
    """
    tensors = _tensors(arrays, batch_size)
    n = _length(arrays)
    if skip < 0:
        raise ValueError(f"`skip` must be >= 0. Received: skip={skip}")

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder)

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(epochs), tf.int64))
    ds = ds.flat_map(one_epoch).skip(skip)
    ds = ds.map(lambda idx: {k: tf.gather(t, idx) for k, t in tensors.items()},
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def shard(arrays: dict[str, np.ndarray], num_shards: int, index: int) -> dict[str, np.ndarray]:
    """One worker's share of the samples: every `num_shards`-th sample from `index` on.

    Every shard gets exactly ``n // num_shards`` samples (the remainder is dropped), so
    Horovod workers run the same number of steps and no allreduce waits for a missing peer.
    Striding keeps each shard in time order and spread over the whole period.

    Example:
        >>> shard({"label": np.arange(7)}, num_shards=2, index=1)["label"]
        array([1, 3, 5])
    """
    if num_shards < 1 or not 0 <= index < num_shards:
        raise ValueError(
            "Need num_shards >= 1 and 0 <= index < num_shards. "
            f"Received: num_shards={num_shards}, index={index}"
        )
    n = _length(arrays) // num_shards * num_shards
    return {k: v[index:n:num_shards] for k, v in arrays.items()}


def _tensors(arrays: dict[str, np.ndarray], batch_size: int) -> dict[str, tf.Tensor]:
    """The schema's columns as constants (extra keys dropped), after checking the arguments."""
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size}")
    missing = [k for k in (*FEATURES, LABEL) if k not in arrays]
    if missing:
        raise ValueError(f"`arrays` lacks keys {missing}. Received keys: {sorted(arrays)}")
    _length(arrays)
    tensors = {k: tf.constant(arrays[k], dtype=dtype) for k, (dtype, _) in FEATURES.items()}
    tensors[LABEL] = tf.constant(arrays[LABEL], dtype=tf.float32)
    return tensors


def _length(arrays: dict[str, np.ndarray]) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"All arrays need the same length. Received lengths: {lengths}")
    return next(iter(lengths.values()))
