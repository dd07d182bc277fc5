"""Lookup-only value stores for export, optionally holding the table in 16 bits.

At export every ``ValueStore`` of a model is swapped (only while the serving function is
traced) for a ``ServingValues``: a frozen copy of ``store.full_table()``. That one call
covers both a local table and Horovod row shards (``AlltoallValues.full_table`` gathers
them), and it lets the copy be stored as float16/bfloat16 — half the bytes on disk and in
serving memory — while lookups still return the model's float dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import tensorflow as tf

from lmn_tf.memory.values import ValueStore


class ServingValues(ValueStore):
    """A frozen table in ``dtype``; ``lookup`` casts the gathered rows to ``read_dtype``.

    Args:
        table: the full (num_rows, dim) table.
        dtype: storage dtype, e.g. ``tf.float16``.
        name: variable name (the trained table's, so exports read like checkpoints).

    Example:
    >>> store = ServingValues(tf.ones((4, 2)), tf.float16, name="values")
    >>> store.lookup(tf.constant([[0, 3]])).dtype, store.table.dtype
    (tf.float32, tf.float16)
    """

    def __init__(self, table: tf.Tensor, dtype: tf.DType, name: str = "values"):
        self.num_rows, self.dim = (int(s) for s in table.shape)
        self.read_dtype = table.dtype
        self.table = tf.Variable(tf.cast(table, dtype), trainable=False, name=name)

    def build(self, layer, num_rows, dim, initializer):
        raise TypeError("ServingValues is built from a trained table, not by a layer")

    def lookup(self, ids: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.gather(self.table, ids), self.read_dtype)  # ids.shape + (dim,)

    def full_table(self) -> tf.Tensor:
        return tf.cast(self.table, self.read_dtype)


def find_stores(model: tf.Module) -> list[tuple[tf.Module, str, ValueStore]]:
    """(owner, attribute, store) for every ``ValueStore`` held by ``model`` or a submodule."""
    found = []
    for module in [model, *model.submodules]:
        for attr, value in vars(module).items():
            if isinstance(value, ValueStore):
                found.append((module, attr, value))
    return found


def _table_name(store: ValueStore) -> str:
    # "<layer path>/values" for a local table and a shard ("…/values_shard") alike.
    table = getattr(store, "table", None)
    if not isinstance(table, tf.Variable) or "/" not in table.name:
        return "values"
    return table.name.rsplit("/", 1)[0] + "/values"


@contextlib.contextmanager
def serving_stores(model: tf.Module, dtype: tf.DType = tf.float32
                   ) -> Iterator[list[ServingValues]]:
    """Swaps every value store of ``model`` for a ``ServingValues`` copy, then restores.

    Under Horovod, ``full_table()`` is collective: every rank must enter this together.
    """
    found = find_stores(model)
    swapped = [ServingValues(store.full_table(), dtype, name=_table_name(store))
               for _, _, store in found]
    try:
        for (owner, attr, _), new in zip(found, swapped, strict=True):
            # object.__setattr__: a temporary swap must not touch Keras' weight tracking.
            object.__setattr__(owner, attr, new)
        yield swapped
    finally:
        for owner, attr, store in found:
            object.__setattr__(owner, attr, store)
