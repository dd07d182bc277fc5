"""A user's group from what they browse: online spherical k-means over history bags.

A cold user has no id embedding worth reading, but their history says whom they resemble.
``GroupRouter`` maps a history to the nearest of ``num_groups`` centroids, learned without
gradients by mini-batch k-means (Sculley, "Web-scale k-means clustering", WWW 2010) on the
unit sphere, so the memory can be addressed by (group, target item): users who browse alike,
warm or cold, read and write the same slots.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


class GroupRouter(tf.keras.layers.Layer):
    """The nearest of ``num_groups`` centroids to a user's history bag, learned by k-means.

    A history is the bag of its unmasked item ids, each id in bucket ``id mod buckets``
    (exact while the vocabulary fits), L2-normalised; its group is the centroid of largest
    cosine. While training, each centroid c moves to ``c + (n_c / N_c)(mean_c - c)`` and back
    onto the sphere, with n_c the batch's bags assigned to it, mean_c their mean and N_c all
    bags assigned to it so far: steps shrink as a group fills, so the addresses settle. The
    first training batch seeds the centroids (centroid i: its bag i mod batch size). Counts
    and sums are taken over all workers (``sum_over_workers``), so data-parallel replicas keep
    equal centroids. Centroids are weights (saved and exported) but no optimizer moves them.

    Args:
        num_groups: C, the groups (centroids).
        buckets: D, width of a bag.
        sum_over_workers: sums a tensor over data-parallel workers (a ``ValueStore``'s
            ``sum_over_workers``); None: one worker.

    Call arguments:
        item_ids: (B, L) int item ids of the histories.
        mask: (B, L) bool, the items that count.
        training: whether to move the centroids.

    Returns:
        (B,) int32 group of each history (an all-masked history: group 0).

    Example:
    >>> router = GroupRouter(num_groups=2, buckets=8)
    >>> ids = tf.constant([[1, 2, 0], [5, 6, 7], [1, 2, 2]])
    >>> router(ids, ids != 0, training=True).numpy()
    array([0, 1, 0], dtype=int32)
    """

    def __init__(self, num_groups: int, buckets: int = 4096,
                 sum_over_workers: Callable[[tf.Tensor], tf.Tensor] | None = None, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("num_groups", num_groups), ("buckets", buckets)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
        self.num_groups, self.buckets = num_groups, buckets
        self.sum_over_workers = sum_over_workers or (lambda x: x)

    def build(self, input_shape):
        zeros = tf.keras.initializers.Zeros()
        self.centroids = self.add_weight(name="centroids", shape=(self.num_groups, self.buckets),
                                         initializer=zeros, trainable=False)  # (C, D)
        self.assigned = self.add_weight(name="assigned", shape=(self.num_groups,),
                                        initializer=zeros, trainable=False)  # N_c
        super().build(input_shape)

    def _bags(self, item_ids, mask):
        """(bucket, weight), both (B, L): bag b = sum_l weight[b, l] e_{bucket[b, l]}, norm 1."""
        bucket = tf.math.floormod(tf.cast(item_ids, tf.int64), self.buckets)  # (B, L)
        weight = tf.cast(mask, tf.float32)
        same = tf.cast(bucket[:, :, None] == bucket[:, None, :], tf.float32)  # (B, L, L)
        norm2 = tf.einsum("bl,blm,bm->b", weight, same, weight)  # sum of squared counts
        return bucket, weight * tf.math.rsqrt(tf.maximum(norm2, 1.0))[:, None]

    def _dense(self, rows, bucket, weight, num_rows):
        """(num_rows, D): the bags of ``bucket``/``weight`` summed into row ``rows[b]``."""
        index = tf.cast(rows, tf.int64)[:, None] * self.buckets + bucket  # (B, L)
        flat = tf.math.unsorted_segment_sum(tf.reshape(weight, [-1]), tf.reshape(index, [-1]),
                                            num_rows * self.buckets)
        return tf.reshape(flat, (num_rows, self.buckets))

    def call(self, item_ids, mask, training=False):
        bucket, weight = self._bags(item_ids, mask)
        if training:
            self._seed(bucket, weight)
        cosine = tf.einsum("bl,blc->bc", weight,
                           tf.gather(tf.transpose(self.centroids), bucket))  # (B, C)
        group = tf.argmax(cosine, -1, output_type=tf.int32)  # (B,)
        if training:
            self._move(group, bucket, weight)
        return group

    def _seed(self, bucket, weight):
        """Before the first move (no bag assigned yet): centroid i := bag (i mod B)."""
        def seed():
            pick = tf.math.floormod(tf.range(self.num_groups), tf.shape(bucket)[0])  # (C,)
            bags = self._dense(tf.range(self.num_groups), tf.gather(bucket, pick),
                               tf.gather(weight, pick), self.num_groups)  # (C, D)
            with tf.control_dependencies([self.centroids.assign(
                    tf.math.l2_normalize(self.sum_over_workers(bags), -1))]):
                return tf.constant(True)

        # the seeded branch returns a flag, not the (C, D) table: no copy on every step
        tf.cond(tf.reduce_sum(self.assigned) > 0, lambda: tf.constant(False), seed)

    def _move(self, group, bucket, weight):
        """One mini-batch k-means step on the sphere for the batch's assigned bags."""
        n = self.sum_over_workers(tf.math.unsorted_segment_sum(
            tf.ones_like(group, tf.float32), group, self.num_groups))  # (C,)
        total = self.sum_over_workers(
            self._dense(group, bucket, weight, self.num_groups))  # (C, D) sum of bags
        assigned = self.assigned.assign_add(n)
        rate = (n / tf.maximum(assigned, 1.0))[:, None]  # (C, 1): 0 where no bag came
        mean = total / tf.maximum(n, 1.0)[:, None]
        moved = self.centroids + rate * (mean - self.centroids)
        self.centroids.assign(tf.math.l2_normalize(moved, -1))

    def get_config(self):
        return {**super().get_config(), "num_groups": self.num_groups, "buckets": self.buckets}
