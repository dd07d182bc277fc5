"""Slot-usage metrics of a product-key memory: is the memory used, and how evenly?

Feed them the slot ids from ``LMNLayer(..., return_slots=True)`` (-1 marks padded items and
is ignored). Each update is a scatter over the ids read, O(B·L·H·K); each result is one O(n)
reduction. Like every Keras metric they reset at each epoch, so "since reset" is an epoch
in ``fit``; ``SlotCoverage(window=w)`` looks at the last w updates only.

Example:

>>> metrics = slot_usage_metrics(num_slots=4)
>>> for metric in metrics:
...     metric.update_state(tf.constant([[0, 0, 1, -1]]))
>>> {m.name: round(float(m.result()), 3) for m in metrics}
{'slot_coverage': 0.5, 'slot_entropy': 0.459, 'top_slot_share': 0.667}
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


class _SlotMetric(tf.keras.metrics.Metric):
    """Validates ``num_slots`` and maps ids to a flat vector where -1 becomes ``num_slots``."""

    def __init__(self, num_slots: int, name: str, **kwargs):
        if not isinstance(num_slots, int) or num_slots <= 0:
            raise ValueError("`num_slots` must be a positive int. "
                             f"Received: num_slots={num_slots!r}")
        super().__init__(name=name, **kwargs)
        self.num_slots = num_slots

    def _ids(self, slots: tf.Tensor) -> tf.Tensor:
        # Padded reads go to one spare slot, not dropped: static shapes keep XLA happy.
        ids = tf.reshape(tf.cast(slots, tf.int32), [-1])
        return tf.where(ids < 0, self.num_slots, ids)

    def reset_state(self):
        for variable in self.variables:  # the base class assigns a scalar 0: wrong shape
            variable.assign(tf.zeros_like(variable))

    def get_config(self):
        return {**super().get_config(), "num_slots": self.num_slots}


@tf.keras.utils.register_keras_serializable(package="lmn_tf")
class SlotCoverage(_SlotMetric):
    """Fraction of slots read at least once since reset, or in the last ``window`` updates."""

    def __init__(self, num_slots: int, window: int | None = None, name: str = "slot_coverage",
                 **kwargs):
        if window is not None and (not isinstance(window, int) or window <= 0):
            raise ValueError("`window` must be None or a positive int. "
                             f"Received: window={window!r}")
        super().__init__(num_slots, name=name, **kwargs)
        self.window = window
        self.step = self.add_weight(name="step", shape=(), dtype=tf.int64, initializer="zeros")
        self.last_read = self.add_weight(  # update number of each slot's last read, 0 = never
            name="last_read", shape=(num_slots + 1,), dtype=tf.int64, initializer="zeros")

    def update_state(self, slots, sample_weight=None):
        ids = self._ids(slots)
        step = self.step.assign_add(1)
        self.last_read.scatter_update(tf.IndexedSlices(tf.fill(tf.shape(ids), step), ids))

    def result(self):
        last = self.last_read[: self.num_slots]
        oldest = 1 if self.window is None else self.step - self.window + 1
        return tf.reduce_mean(tf.cast(last >= oldest, tf.float32))

    def get_config(self):
        return {**super().get_config(), "window": self.window}


class _SlotCounts(_SlotMetric):
    def __init__(self, num_slots: int, name: str, **kwargs):
        super().__init__(num_slots, name=name, **kwargs)
        self.counts = self.add_weight(name="counts", shape=(num_slots + 1,), initializer="zeros")

    def update_state(self, slots, sample_weight=None):
        ids = self._ids(slots)
        self.counts.scatter_add(tf.IndexedSlices(tf.ones(tf.shape(ids), self.dtype), ids))

    def _probs(self) -> tf.Tensor:
        counts = self.counts[: self.num_slots]
        return counts / tf.maximum(tf.reduce_sum(counts), 1.0)


@tf.keras.utils.register_keras_serializable(package="lmn_tf")
class SlotUsageEntropy(_SlotCounts):
    """Entropy of the slot-read distribution over log(n): 1 = uniform use, 0 = one slot."""

    def __init__(self, num_slots: int, name: str = "slot_entropy", **kwargs):
        super().__init__(num_slots, name=name, **kwargs)

    def result(self):
        p = self._probs()
        return -tf.reduce_sum(tf.math.xlogy(p, p)) / max(math.log(self.num_slots), 1e-12)


@tf.keras.utils.register_keras_serializable(package="lmn_tf")
class TopSlotShare(_SlotCounts):
    """Share of all reads that went to the ``top_fraction`` most-read slots (top-heaviness)."""

    def __init__(self, num_slots: int, top_fraction: float = 0.01, name: str = "top_slot_share",
                 **kwargs):
        if not 0 < top_fraction <= 1:
            raise ValueError("`top_fraction` must be in (0, 1]. "
                             f"Received: top_fraction={top_fraction!r}")
        super().__init__(num_slots, name=name, **kwargs)
        self.top_fraction = top_fraction

    def result(self):
        k = max(1, math.ceil(self.top_fraction * self.num_slots))
        return tf.reduce_sum(tf.math.top_k(self._probs(), k=k).values)

    def get_config(self):
        return {**super().get_config(), "top_fraction": self.top_fraction}


def slot_usage_metrics(num_slots: int, window: int | None = None,
                       top_fraction: float = 0.01) -> list[tf.keras.metrics.Metric]:
    """The three diagnostics for a memory of ``num_slots`` (``LMNLayer.num_slots``) slots."""
    return [SlotCoverage(num_slots, window), SlotUsageEntropy(num_slots),
            TopSlotShare(num_slots, top_fraction)]


def group_slot_overlap(slots, groups, items, users=None, max_per_item: int = 40,
                       seed: int = 0) -> dict[str, float]:
    """Whether users of one group read the same slots: mean Jaccard overlap of the slot sets
    of two samples of two users with the same target item, for pairs whose users share a
    group (``"within"``) and pairs whose users do not (``"across"``).

    A memory passes a group's knowledge to a user only through slots the group's users wrote:
    ``within`` well above ``across`` is the precondition; equal values mean that the memory
    addresses users as a random hash would, whatever it has stored.

    Args:
        slots: (N, ...) slot ids read per sample (-1: none), e.g. from
            ``LMNLayer(..., return_slots=True)``.
        groups: (N,) the group of each sample's user.
        items: (N,) the target item of each sample.
        users: (N,) the user of each sample: pairs of one user's samples are left out (they
            read alike whatever the memory does). None: every sample is its own user.
        max_per_item: samples per item compared (every pair among them; drawn at random).
        seed: seed of that draw.

    Example:
    >>> slots = np.array([[0, 1], [0, 1], [2, 3], [0, 2]])
    >>> group_slot_overlap(slots, groups=[0, 0, 1, 1], items=[5, 5, 5, 5])
    {'within': 0.667, 'across': 0.167}
    """
    slots = np.asarray(slots).reshape(len(slots), -1)
    groups, items = np.asarray(groups), np.asarray(items)
    users = np.arange(len(slots)) if users is None else np.asarray(users)
    rng = np.random.default_rng(seed)
    sums = {"within": [0.0, 0], "across": [0.0, 0]}
    for item in np.unique(items):
        rows = np.flatnonzero(items == item)
        if len(rows) > max_per_item:
            rows = rng.choice(rows, max_per_item, replace=False)
        s = slots[rows]
        ids, local = np.unique(s[s >= 0], return_inverse=True)
        read = np.zeros((len(rows), len(ids)), np.float32)  # (m, slots read by any of them)
        read[np.nonzero(s >= 0)[0], local] = 1.0
        inter = read @ read.T
        size = read.sum(1)
        union = size[:, None] + size[None] - inter
        jaccard = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        pair = np.triu(np.ones_like(jaccard, bool), 1) & (users[rows][:, None] != users[rows][None])
        same = groups[rows][:, None] == groups[rows][None]
        for key, mask in (("within", pair & same), ("across", pair & ~same)):
            sums[key][0] += float(jaccard[mask].sum())
            sums[key][1] += int(mask.sum())
    return {k: round(total / count, 3) if count else float("nan")
            for k, (total, count) in sums.items()}
