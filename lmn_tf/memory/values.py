"""The value-store seam: where the memory's value rows live.

``LMNLayer`` only ever calls ``store.lookup(ids)``; it never knows whether the table is one
local variable or row shards spread over Horovod workers (``lmn_tf.distributed``). A store
is built by the layer that owns it, so its variables are tracked, checkpointed and saved
with that layer.
"""

from __future__ import annotations

import tensorflow as tf


class ValueStore:
    """Interface of a value table of ``num_rows`` rows of width ``dim``.

    Subclasses implement ``build`` (create variables through ``layer.add_weight`` so Keras
    tracks them), ``lookup`` and ``full_table``.
    """

    num_rows: int
    dim: int

    def build(self, layer: tf.keras.layers.Layer, num_rows: int, dim: int,
              initializer: tf.keras.initializers.Initializer) -> None:
        raise NotImplementedError

    def lookup(self, ids: tf.Tensor) -> tf.Tensor:
        """Rows for int ``ids`` of any shape ``S`` -> float tensor of shape ``S + (dim,)``.

        The gradient with respect to the table is a ``tf.IndexedSlices`` touching only the
        rows looked up, so a sparse optimizer's step cost does not grow with ``num_rows``.
        """
        raise NotImplementedError

    def full_table(self) -> tf.Tensor:
        """The whole (num_rows, dim) table on every worker, e.g. for a serving export."""
        raise NotImplementedError

    def batch_mean(self, total: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
        """``total / count`` for a per-item sum over this worker's batch (0 when empty).

        The layer's memory loss is a mean over unmasked items. A sharded store overrides
        this to divide by the *global* item count (times the number of workers), so that the
        workers' averaged gradients equal one worker's gradient on the global batch even when
        workers hold different numbers of unmasked items.
        """
        return total / tf.maximum(count, 1.0)

    @property
    def worker(self) -> tuple[int, int]:
        """(rank, number of workers) of this process among those sharing the store."""
        return 0, 1

    def sum_over_workers(self, x: tf.Tensor) -> tf.Tensor:
        """``x`` summed over the workers that share this store (one worker: ``x``), for
        state every worker must keep equal without a gradient (``GroupRouter``'s k-means)."""
        return x

    # Serialisation, so a layer's get_config/from_config can carry its store. A store with
    # constructor arguments overrides get_config; register it with
    # @tf.keras.utils.register_keras_serializable(package="lmn_tf").
    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> ValueStore:
        return cls(**config)


@tf.keras.utils.register_keras_serializable(package="lmn_tf")
class LocalValues(ValueStore):
    """The whole table in one variable named ``values`` on this worker."""

    def build(self, layer, num_rows, dim, initializer):
        self.num_rows, self.dim = num_rows, dim
        self.table = layer.add_weight(
            name="values", shape=(num_rows, dim), initializer=initializer, trainable=True)

    def lookup(self, ids):
        return tf.gather(self.table, ids)

    def full_table(self):
        return tf.convert_to_tensor(self.table)
