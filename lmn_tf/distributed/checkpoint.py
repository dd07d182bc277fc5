"""Sharded checkpoints and consolidation: every rank's shard saved, one table for export.

Checkpoints are the one kind of file every rank writes: each shard holds different rows, so
rank r saves its whole model (replicated weights included, so a shard checkpoint is
self-contained) under ``<dir>/rank-<r>-of-<N>/``; rank 0 adds ``world.json``. Restoring needs
the same world size (the ``row % size`` mapping changes with N); to change N, consolidate the
shards into a single-worker model (``copy_weights``), save that, and load it into the new
world with ``copy_weights`` again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import horovod.tensorflow as hvd
import tensorflow as tf

from lmn_tf.distributed.values import shard_store

WORLD_FILE = "world.json"


def barrier() -> None:
    """Block until every rank gets here (Horovod's TF API has no barrier op)."""
    hvd.allreduce(tf.constant(0), op=hvd.Sum, name="lmn_tf_barrier")


def _prefix(directory: str) -> str:
    return os.path.join(directory, f"rank-{hvd.rank()}-of-{hvd.size()}", "ckpt")


def save(directory: str, model: tf.keras.Model,
         optimizer: tf.keras.optimizers.Optimizer | None = None) -> str:
    """Write this rank's checkpoint of ``model`` (and ``optimizer``); a collective.

    Returns:
        This rank's checkpoint path.
    """
    objects = {"model": model} | ({"optimizer": optimizer} if optimizer is not None else {})
    path = tf.train.Checkpoint(**objects).write(_prefix(directory))
    if hvd.rank() == 0:  # one small metadata file: written once, by the chief
        with open(os.path.join(directory, WORLD_FILE), "w") as f:
            json.dump({"world_size": hvd.size()}, f)
    barrier()  # a checkpoint is complete only when every shard is on disk
    return path


def restore(directory: str, model: tf.keras.Model,
            optimizer: tf.keras.optimizers.Optimizer | None = None) -> None:
    """Read this rank's shard checkpoint written by ``save`` into a built ``model``.

    Optimizer slots not created yet are restored when the optimizer creates them.

    Raises:
        ValueError: if the checkpoint was written by a different number of ranks.
    """
    with open(os.path.join(directory, WORLD_FILE)) as f:
        world = json.load(f)["world_size"]
    if world != hvd.size():
        raise ValueError(f"{directory} holds {world} shards; restore it with {world} ranks "
                         f"or consolidate it first. Received: world size={hvd.size()}")
    objects = {"model": model} | ({"optimizer": optimizer} if optimizer is not None else {})
    tf.train.Checkpoint(**objects).read(_prefix(directory)).assert_existing_objects_matched()


def copy_weights(source: tf.keras.Model | tf.keras.layers.Layer,
                 target: tf.keras.Model | tf.keras.layers.Layer) -> None:
    """Copy weights between two built twins, converting shards <-> full tables.

    The twins must be the same architecture, built the same way, differing only in value
    stores: sharded -> local consolidates (allgather; the export path), local -> sharded
    keeps each rank's rows (restoring a single-worker checkpoint). A collective whenever
    ``source`` has shards: call it on every rank.

    Raises:
        ValueError: if the twins' weights do not pair up.
    """
    pairs = list(zip(source.weights, target.weights, strict=False))
    if len(source.weights) != len(target.weights):
        raise ValueError("source and target must have the same weights. Received: "
                         f"{len(source.weights)} and {len(target.weights)} weights")
    for src, dst in pairs:
        src_store, dst_store = shard_store(src), shard_store(dst)
        if src_store is not None and dst_store is None:
            dst.assign(src_store.full_table())  # allgather: all ranks take part
        elif dst_store is not None and src_store is None:
            dst_store.assign_full_table(src)
        elif src.shape != dst.shape:
            raise ValueError(f"weights do not pair up. Received: {src.name} {src.shape} "
                             f"-> {dst.name} {dst.shape}")
        else:
            dst.assign(src)


def run_on_chief(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on rank 0 only (e.g. an export), then a barrier so no rank
    moves on (or exits) before the chief's file exists. Returns ``fn``'s result or None."""
    result = fn(*args, **kwargs) if hvd.rank() == 0 else None
    barrier()
    return result
