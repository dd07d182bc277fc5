"""The alltoall value store: the memory's value rows sharded over Horovod ranks.

Row-to-rank mapping: row ``r`` lives on rank ``r % size`` at local index ``r // size``
(strided, like ``tf.nn.embedding_lookup``'s old ``"mod"`` partition strategy). Product keys
give slot ``i·m + j``, and a query's top-K slots cluster on its few best row keys ``i`` with
neighbouring ``j`` — so a hot row key is a run of *adjacent* slot ids. Contiguous ranges would
put every such run (and any hot band of rows) on one rank; the stride spreads each run evenly
over all ranks, so lookup traffic and gradient work stay balanced. The price is an interleave
in ``full_table`` (one reshape/transpose), paid only when consolidating for export.

Each rank's shard has ``ceil(num_rows / size)`` rows; when ``size`` does not divide
``num_rows`` the last local row of the higher ranks is padding that no id ever reaches. Equal
shapes keep the per-rank checkpoints and the allgather uniform.
"""

from __future__ import annotations

import weakref

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

from lmn_tf.memory.values import ValueStore

# id(shard variable) -> its store, so training code can tell shards (kept rank-local) from
# replicated weights (averaged, broadcast). Weak values: an entry dies with its store.
_SHARDS: weakref.WeakValueDictionary[int, AlltoallValues] = weakref.WeakValueDictionary()


def shard_store(variable: tf.Variable) -> AlltoallValues | None:
    """The ``AlltoallValues`` whose shard is ``variable``; ``None`` for a replicated weight."""
    store = _SHARDS.get(id(variable))
    return store if store is not None and store.table is variable else None


def _rank_initializer(initializer: tf.keras.initializers.Initializer,
                      rank: int) -> tf.keras.initializers.Initializer:
    # Every rank runs the same program under the same seeds, so an unchanged initializer would
    # fill every shard identically: rows r and r + 1 (different ranks) would start equal and
    # tie in the top-K. Offset the seed by rank to draw independent shards.
    config = initializer.get_config() if hasattr(initializer, "get_config") else {}
    if "seed" not in config:
        return initializer  # constant-like initializers: nothing random to decorrelate
    base = config["seed"]
    if base is None:  # draw a base seed: reproducible under tf.random.set_seed, like Keras
        with tf.init_scope():  # eager even if the layer is built while tracing
            base = int(tf.random.uniform((), maxval=2**30, dtype=tf.int32))
    config["seed"] = base + 1_000_003 * rank
    return initializer.__class__.from_config(config)


@tf.keras.utils.register_keras_serializable(package="lmn_tf")
class AlltoallValues(ValueStore):
    """Value rows sharded by ``row % size`` over Horovod ranks, read with two alltoalls.

    ``lookup`` is a collective: every rank must call it the same number of times in the same
    order (as in a data-parallel step). ``hvd.init()`` must have run before ``build``.

    Lookup of ``ids`` (any shape ``S``): dedupe, group by owner rank, send the ids to their
    owners (alltoall with per-rank ``splits``), owners gather their local rows, a second
    alltoall sends the rows back, then un-permute to ``S + (dim,)``. Horovod's alltoall
    gradient is the reverse alltoall, so a row's gradient lands on its owner's shard as a
    ``tf.IndexedSlices`` summed over every rank's batch.

    The shard initializer is the layer's initializer drawn at the shard's shape with a per-rank
    seed: for shape-independent initializers (RandomNormal/Uniform/TruncatedNormal, the usual
    choice for values) the rows have the single-worker distribution; fan-based ones
    (Glorot, He) see a ``size``-times smaller fan-in. Use ``assign_full_table`` to start from a
    given table (e.g. a single-worker checkpoint).

    Example:

    >>> import lmn_tf, horovod.tensorflow as hvd
    >>> hvd.init()
    >>> layer = tf.keras.layers.Layer()
    >>> store = AlltoallValues()
    >>> store.build(layer, num_rows=10, dim=2, initializer=tf.keras.initializers.Zeros())
    >>> store.assign_full_table(np.arange(20, dtype="float32").reshape(10, 2))
    >>> store.lookup(tf.constant([[3, 3], [9, 0]])).numpy()[1]
    array([[18., 19.],
           [ 0.,  1.]], dtype=float32)
    """

    def build(self, layer: tf.keras.layers.Layer, num_rows: int, dim: int,
              initializer: tf.keras.initializers.Initializer) -> None:
        self.num_rows, self.dim = num_rows, dim
        self.size, self.rank = hvd.size(), hvd.rank()
        self.local_rows = -(-num_rows // self.size)  # ceil: equal shards, padding at the end
        initializer = _rank_initializer(tf.keras.initializers.get(initializer), self.rank)
        self.table = layer.add_weight(
            name="values_shard", shape=(self.local_rows, dim), initializer=initializer,
            trainable=True)
        _SHARDS[id(self.table)] = self

    def lookup(self, ids: tf.Tensor) -> tf.Tensor:
        ids = tf.convert_to_tensor(ids)
        flat = tf.reshape(ids, [-1])  # (F,)
        unique, where = tf.unique(flat)  # (U,), (F,): a hot slot travels once per rank
        owner = tf.cast(unique % self.size, tf.int32)
        order = tf.argsort(owner, stable=True)  # group ids by owner, rank order
        send = tf.gather(unique, order)  # (U,)
        splits = tf.math.bincount(owner, minlength=self.size, maxlength=self.size,
                                  dtype=tf.int32)  # ids sent to each rank; zeros are fine
        recv, recv_splits = hvd.alltoall(send, splits=splits)  # (R,) ids this rank owns
        rows = tf.gather(self.table, recv // self.size)  # (R, dim): IndexedSlices grad
        back, _ = hvd.alltoall(rows, splits=recv_splits)  # (U, dim) in `send` order
        slot = tf.gather(tf.math.invert_permutation(order), where)  # (F,) position in `back`
        out = tf.gather(back, slot)  # (F, dim)
        return tf.reshape(out, tf.concat([tf.shape(ids), [self.dim]], 0))

    def batch_mean(self, total: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
        """``total · size / global count``: Horovod averages the dense gradients over ranks
        (and divides the shard gradients by ``size``), which then yields the global mean."""
        global_count = hvd.allreduce(tf.stop_gradient(count), op=hvd.Sum)  # collective
        return total * self.size / tf.maximum(global_count, 1.0)

    @property
    def worker(self) -> tuple[int, int]:
        return hvd.rank(), hvd.size()

    def sum_over_workers(self, x: tf.Tensor) -> tf.Tensor:
        return hvd.allreduce(x, op=hvd.Sum)  # collective

    def full_table(self) -> tf.Tensor:
        """All shards gathered into the (num_rows, dim) table in global row order (collective)."""
        shards = hvd.allgather(tf.convert_to_tensor(self.table))  # (size·R, dim), rank-major
        shards = tf.reshape(shards, (self.size, self.local_rows, self.dim))
        table = tf.reshape(tf.transpose(shards, (1, 0, 2)), (-1, self.dim))  # row k·size + r
        return table[: self.num_rows]

    def assign_full_table(self, table: tf.Tensor | np.ndarray) -> None:
        """Set this rank's shard from a whole (num_rows, dim) table (no communication).

        Raises:
            ValueError: if ``table`` does not have shape ``(num_rows, dim)``.
        """
        table = tf.convert_to_tensor(table, dtype=self.table.dtype)
        if tuple(table.shape) != (self.num_rows, self.dim):
            raise ValueError(f"table must have shape {(self.num_rows, self.dim)}. "
                             f"Received: table.shape={tuple(table.shape)}")
        mine = tf.gather(table, tf.range(self.rank, self.num_rows, self.size))  # owned rows
        pad = self.local_rows - tf.shape(mine)[0]
        self.table.assign(tf.pad(mine, [[0, pad], [0, 0]]))
