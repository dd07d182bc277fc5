"""A user's group from what they browse: online spherical k-means over history bags.

A cold user has no id embedding worth reading, but their history says whom they resemble.
``GroupRouter`` maps a history to the nearest of ``num_groups`` centroids, learned without
gradients by mini-batch k-means (Sculley, "Web-scale k-means clustering", WWW 2010) on the
unit sphere, so the memory can be addressed by (group, target item): users who browse alike,
warm or cold, read and write the same slots.
"""

from __future__ import annotations

import tensorflow as tf

from lmn_tf.memory.values import ValueStore


class GroupRouter(tf.keras.layers.Layer):
    """The nearest of ``num_groups`` centroids to a user's history bag, learned by k-means.

    A history is the bag of its unmasked item ids, each id in bucket ``id mod buckets``
    (exact while the vocabulary fits), L2-normalised; its group is the centroid of largest
    cosine. While training, each centroid c moves to ``c + (n_c / N_c)(mean_c - c)`` and back
    onto the sphere, with n_c the batch's bags assigned to it, mean_c their mean and N_c all
    bags assigned to it so far: steps shrink as a group fills, so the addresses settle. The
    first training batch seeds the centroids (centroid i: its bag i mod batch size). Counts
    and sums are taken over the value store's workers, so data-parallel replicas keep equal
    centroids, and N workers that each hold rows r, r + N, ... of a global batch
    (``lmn_tf.distributed.shard_batches``) seed and move them as one worker with the whole
    batch would. Centroids are weights (saved and exported) but no optimizer moves them.

    Args:
        num_groups: C, the groups (centroids).
        buckets: D, width of a bag.
        value_store: the ``ValueStore`` whose workers are this router's data-parallel
            replicas (its ``worker`` and ``sum_over_workers``); None: one worker.

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
                 value_store: ValueStore | None = None, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("num_groups", num_groups), ("buckets", buckets)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
        self.num_groups, self.buckets = num_groups, buckets
        # the store's collectives, not the store: an export swaps every ValueStore it finds
        store = value_store or ValueStore()
        self.worker, self.sum_over_workers = store.worker, store.sum_over_workers

    def build(self, input_shape):
        zeros = tf.keras.initializers.Zeros()
        # (D, C), a centroid per column, as a Dense kernel: a bag's cosines are one sparse
        # (B, D) x (D, C) product, which reads C floats per history item and writes no
        # (B, L, C) gather
        self.centroids = self.add_weight(name="centroids", shape=(self.buckets, self.num_groups),
                                         initializer=zeros, trainable=False)
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

    def _dense(self, columns, bucket, weight):
        """(D, C): the bags of ``bucket``/``weight`` summed into column ``columns[b]``."""
        index = bucket * self.num_groups + tf.cast(columns, tf.int64)[:, None]  # (B, L)
        flat = tf.math.unsorted_segment_sum(tf.reshape(weight, [-1]), tf.reshape(index, [-1]),
                                            self.buckets * self.num_groups)
        return tf.reshape(flat, (self.buckets, self.num_groups))

    def call(self, item_ids, mask, training=False):
        bucket, weight = self._bags(item_ids, mask)
        if training:
            self._seed(bucket, weight)
        b, length = tf.shape(bucket, tf.int64)[0], tf.shape(bucket, tf.int64)[1]
        rows = tf.repeat(tf.range(b), length)  # (B·L,) the bag of each history item
        bags = tf.SparseTensor(tf.stack([rows, tf.reshape(bucket, [-1])], 1),
                               tf.reshape(weight, [-1]), tf.stack([b, self.buckets]))
        cosine = tf.sparse.sparse_dense_matmul(bags, self.centroids)  # (B, C)
        group = tf.argmax(cosine, -1, output_type=tf.int32)  # (B,)
        if training:
            self._move(group, bucket, weight)
        return group

    def _seed(self, bucket, weight):
        """Before the first move (no bag assigned yet): centroid i := global bag (i mod G),
        which worker r holds as its row (i mod G) // N if (i mod G) mod N = r."""
        def seed():
            rank, size = self.worker
            local = tf.shape(bucket)[0]
            total = tf.cast(self.sum_over_workers(tf.cast(local, tf.float32)), tf.int32)  # G
            pick = tf.math.floormod(tf.range(self.num_groups), total)  # (C,) global bag
            row = pick // size
            mine = tf.equal(tf.math.floormod(pick, size), rank) & (row < local)
            row = tf.where(mine, row, 0)
            bags = self._dense(tf.range(self.num_groups), tf.gather(bucket, row),
                               tf.gather(weight, row) * tf.cast(mine, tf.float32)[:, None])
            with tf.control_dependencies([self.centroids.assign(
                    tf.math.l2_normalize(self.sum_over_workers(bags), 0))]):
                return tf.constant(True)

        # the seeded branch returns a flag, not the (D, C) table: no copy on every step
        tf.cond(tf.reduce_sum(self.assigned) > 0, lambda: tf.constant(False), seed)

    def _move(self, group, bucket, weight):
        """One mini-batch k-means step on the sphere for the batch's assigned bags."""
        n = self.sum_over_workers(tf.math.unsorted_segment_sum(
            tf.ones_like(group, tf.float32), group, self.num_groups))  # (C,)
        total = self.sum_over_workers(self._dense(group, bucket, weight))  # (D, C) sum of bags
        assigned = self.assigned.assign_add(n)
        rate = n / tf.maximum(assigned, 1.0)  # (C,): 0 where no bag came
        mean = total / tf.maximum(n, 1.0)
        moved = self.centroids + rate * (mean - self.centroids)
        self.centroids.assign(tf.math.l2_normalize(moved, 0))

    def get_config(self):
        return {**super().get_config(), "num_groups": self.num_groups, "buckets": self.buckets}
