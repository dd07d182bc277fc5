"""Sharded checkpoints and consolidation: every rank's shard saved, one table for export.

Checkpoints are the one kind of file every rank writes: each shard holds different rows, so
rank r saves its whole model (replicated weights included, so a shard checkpoint is
self-contained). Restoring needs the same world size (the ``row % size`` mapping changes with
N); to change N, consolidate the shards into a single-worker model (``copy_weights``), save
that, and load it into the new world with ``copy_weights`` again.

A save is a two-phase commit, so a rank killed mid-save never leaves shards of different
steps behind::

    <dir>/v-000003/rank-<r>-of-<N>/ckpt.{index,data-*,manifest.json}   every rank, then a barrier
    <dir>/world.json   {"world_size": N, "version": 3, "meta": {...}}  then rank 0, atomically

``restore`` reads only the version ``world.json`` commits, verifies this rank's files against
their manifest (`lmn_tf.checkpointing`) and raises ``CheckpointError`` naming a damaged file.
Rank 0 keeps the committed version and the one before it.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from collections.abc import Callable
from typing import Any

import horovod.tensorflow as hvd
import tensorflow as tf

from lmn_tf import checkpointing
from lmn_tf.distributed.values import shard_store

WORLD_FILE = "world.json"


def barrier() -> None:
    """Block until every rank gets here (Horovod's TF API has no barrier op)."""
    hvd.allreduce(tf.constant(0), op=hvd.Sum, name="lmn_tf_barrier")


def _version_dir(directory: str, version: int) -> pathlib.Path:
    return pathlib.Path(directory) / f"v-{version:06d}"


def _prefix(directory: str, version: int) -> str:
    return os.fspath(_version_dir(directory, version) / f"rank-{hvd.rank()}-of-{hvd.size()}"
                     / "ckpt")


def committed(directory: str) -> dict | None:
    """The commit record ``world.json`` of ``directory`` (None before the first save).

    Raises:
        CheckpointError: the record exists but is unreadable.
    """
    path = pathlib.Path(directory) / WORLD_FILE
    if not path.exists():
        return None
    try:
        world = json.loads(path.read_text())
        world["world_size"], world["version"] = int(world["world_size"]), int(world["version"])
    except (ValueError, KeyError, TypeError) as e:
        raise checkpointing.CheckpointError(f"{path}: unreadable commit record ({e})") from e
    return world


def save(directory: str, model: tf.keras.Model,
         optimizer: tf.keras.optimizers.Optimizer | None = None,
         meta: dict | None = None) -> str:
    """Write this rank's checkpoint of ``model`` (and ``optimizer``) as a new version and
    commit it once every rank's files are on disk; a collective.

    Args:
        directory: the shard checkpoint directory.
        model: the (sharded) model.
        optimizer: its optimizer, if its state should be saved.
        meta: JSON-serialisable facts stored in the commit record (e.g. the epoch).

    Returns:
        This rank's checkpoint prefix.
    """
    world = committed(directory)  # every rank reads the same record: saves end in a barrier
    version = (world["version"] if world else 0) + 1
    prefix = _prefix(directory, version)
    shutil.rmtree(os.path.dirname(prefix), ignore_errors=True)  # an interrupted attempt's
    objects = {"model": model} | ({"optimizer": optimizer} if optimizer is not None else {})
    checkpoint = tf.train.Checkpoint(**objects)
    checkpoint.save_counter  # noqa: B018  saved like the rest, so restores can be asserted
    checkpointing.write(checkpoint, prefix)
    barrier()  # phase 1 done: every shard of this version is on disk
    if hvd.rank() == 0:  # phase 2: one atomic write commits the version
        record = {"world_size": hvd.size(), "version": version, "meta": meta or {}}
        checkpointing.atomic_write(pathlib.Path(directory) / WORLD_FILE, json.dumps(record))
        for old in pathlib.Path(directory).glob("v-*"):
            if old.name not in (f"v-{version:06d}", f"v-{version - 1:06d}"):
                shutil.rmtree(old, ignore_errors=True)
    barrier()  # no rank reads world.json for the next save before it is committed
    return prefix


def restore(directory: str, model: tf.keras.Model,
            optimizer: tf.keras.optimizers.Optimizer | None = None) -> dict:
    """Read this rank's shard of the committed version into a built ``model``.

    Optimizer slots not created yet are restored when the optimizer creates them.

    Returns:
        The ``meta`` given to ``save``.

    Raises:
        FileNotFoundError: nothing was committed in ``directory``.
        ValueError: the checkpoint was written by a different number of ranks.
        CheckpointError: a damaged file of this rank's shard (the message names it).
    """
    world = committed(directory)
    if world is None:
        raise FileNotFoundError(f"No committed shard checkpoint in {directory} (no "
                                f"{WORLD_FILE})")
    if world["world_size"] != hvd.size():
        raise ValueError(f"{directory} holds {world['world_size']} shards; restore it with "
                         f"{world['world_size']} ranks or consolidate it first. Received: "
                         f"world size={hvd.size()}")
    objects = {"model": model} | ({"optimizer": optimizer} if optimizer is not None else {})
    checkpoint = tf.train.Checkpoint(**objects)
    checkpoint.save_counter  # noqa: B018
    prefix = _prefix(directory, world["version"])
    status = checkpointing.restore(checkpoint, prefix)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise checkpointing.CheckpointError(f"{prefix}: does not match the model ({e})") from e
    return world["meta"]


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
