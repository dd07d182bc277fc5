"""Verified checkpoints: a manifest of sizes and SHA-256 digests, checked before any load.

TensorFlow's bundle format keeps a crc32c per tensor and per index block, but what it reports
depends on the damage (measured with TF 2.18): a flipped bit in ``.data-*`` or ``.index`` raises
a ``DataLossError`` naming the file, while a truncated ``.data-*`` raises a bare ``IndexError``
("Read less bytes than requested"), a truncated or garbage ``.index`` "not an sstable (bad magic
number)" without a file name, bytes appended to ``.data-*`` load silently, and a ``checkpoint``
state file that is garbage or names missing files makes ``tf.train.latest_checkpoint`` return
None — a resumed run would silently start from scratch. Optimizer slots are read lazily, at the
first step, so their damage would surface mid-training.

So every checkpoint written here gets ``<prefix>.manifest.json`` (written after the bundle,
atomically), and the ``checkpoint`` state file (TF's own format, so ``tf.train.latest_checkpoint``
still works) names a checkpoint only after its manifest is on disk. Loading verifies every file
against the manifest first and raises `CheckpointError` naming the file; a save interrupted by a
crash leaves files the state file never names, and the previous checkpoint stays the latest.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile

import tensorflow as tf

MANIFEST = ".manifest.json"
STATE = "checkpoint"  # TF's state file name


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or corrupt; the message starts with the file."""


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a synced temporary file and ``os.replace``: a crash leaves
    the old file or the new one, never a mix."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _bundle_files(prefix: str) -> list[pathlib.Path]:
    p = pathlib.Path(prefix)
    return [pathlib.Path(prefix + ".index"), *sorted(p.parent.glob(p.name + ".data-*"))]


def _digest(path: pathlib.Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write(checkpoint: tf.train.Checkpoint, prefix: str | os.PathLike) -> str:
    """``checkpoint.write(prefix)`` plus its manifest; returns the prefix."""
    prefix = os.fspath(prefix)
    pathlib.Path(prefix + MANIFEST).unlink(missing_ok=True)  # a stale one must not vouch
    prefix = checkpoint.write(prefix)
    files = {p.name: {"bytes": p.stat().st_size, "sha256": _digest(p)}
             for p in _bundle_files(prefix)}
    atomic_write(prefix + MANIFEST, json.dumps({"format": 1, "files": files}, indent=1) + "\n")
    return prefix


def verify(prefix: str | os.PathLike) -> None:
    """Check every file of the checkpoint ``prefix`` against its manifest.

    Raises:
        CheckpointError: a file is missing, has another size or digest, or the manifest is
            missing or unreadable. The message starts with the offending file's path.
    """
    prefix = os.fspath(prefix)
    manifest = pathlib.Path(prefix + MANIFEST)
    if not manifest.is_file():
        index = pathlib.Path(prefix + ".index")
        if not index.is_file():
            raise CheckpointError(f"{index}: missing: the checkpoint {prefix} is gone")
        raise CheckpointError(f"{manifest}: missing: the checkpoint {prefix} is incomplete "
                              "(its save was interrupted) or was not written by lmn-tf")
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{manifest}: unreadable manifest ({e})") from e
    for name, want in sorted(files.items()):
        path = manifest.parent / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing file of the checkpoint {prefix}")
        size = path.stat().st_size
        if size != want["bytes"]:
            raise CheckpointError(f"{path}: {size} bytes, the manifest says {want['bytes']} "
                                  "(truncated or overwritten)")
        if _digest(path) != want["sha256"]:
            raise CheckpointError(f"{path}: SHA-256 differs from the manifest (corrupt)")


def restore(checkpoint: tf.train.Checkpoint, prefix: str | os.PathLike):
    """``verify`` the files, then ``checkpoint.restore(prefix)``; returns the load status.

    Raises:
        CheckpointError: as `verify`, or TensorFlow could not read the bundle.
    """
    verify(prefix)
    try:
        return checkpoint.restore(os.fspath(prefix))
    except (tf.errors.OpError, ValueError, IndexError) as e:
        raise CheckpointError(f"{prefix}: unreadable checkpoint ({e})") from e


def latest(directory: str | os.PathLike) -> str | None:
    """The prefix the ``checkpoint`` state file of ``directory`` names, None if it has none.

    Unlike ``tf.train.latest_checkpoint``, a state file that exists but cannot be parsed, or
    names files that are gone, is an error rather than "no checkpoint". A reader racing a
    running job is not: if the named checkpoint vanished because a newer save retired it,
    the state file now names the newer one, which is returned.

    Raises:
        CheckpointError: a garbage state file, or the named checkpoint's index is missing.
    """
    state_path = pathlib.Path(directory) / STATE
    if not state_path.exists():
        return None
    prefix = _named(directory)
    for _ in range(3):
        if os.path.isfile(prefix + ".index"):
            return prefix
        prefix, before = _named(directory), prefix
        if prefix == before:  # no save in between: the state file really names a ghost
            break
    raise CheckpointError(f"{prefix}.index: missing, but {state_path} names it")


def _named(directory: str | os.PathLike) -> str:
    state = tf.train.get_checkpoint_state(os.fspath(directory))
    if state is None or not state.model_checkpoint_path:
        raise CheckpointError(f"{pathlib.Path(directory) / STATE}: unreadable checkpoint state "
                              "file")
    return state.model_checkpoint_path


def remove(prefix: str) -> None:
    """Delete a checkpoint's files (bundle and manifest)."""
    for path in [*_bundle_files(prefix), pathlib.Path(prefix + MANIFEST)]:
        path.unlink(missing_ok=True)


class Manager:
    """``tf.train.CheckpointManager``'s job — numbered saves, the last ``max_to_keep`` kept,
    TF's ``checkpoint`` state file — with manifests: ``save`` writes the bundle, then its
    manifest, then the state file, so the state never names an incomplete checkpoint.

    Args:
        checkpoint: the ``tf.train.Checkpoint`` to save.
        directory: where ``ckpt-<number>`` files and the state file go.
        max_to_keep: checkpoints kept; older ones are deleted after each save.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str | os.PathLike,
                 max_to_keep: int = 2):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1. Received: max_to_keep={max_to_keep}")
        self.checkpoint, self.directory = checkpoint, pathlib.Path(directory)
        self.max_to_keep = max_to_keep

    @property
    def latest(self) -> str | None:
        """See `latest`."""
        return latest(self.directory)

    def save(self, number: int) -> str:
        """Write ``ckpt-<number>`` and make it the latest; returns its prefix."""
        self.directory.mkdir(parents=True, exist_ok=True)
        prefix = write(self.checkpoint, self.directory / f"ckpt-{number}")
        state = tf.train.get_checkpoint_state(os.fspath(self.directory))
        names = [os.path.basename(p) for p in (state.all_model_checkpoint_paths if state else [])]
        name = os.path.basename(prefix)
        names = [n for n in names if n != name] + [name]
        # Relative names keep a run directory movable. The directory is passed absolute: given
        # a relative one, TF rewrites the names relative to it as if they were relative to the
        # working directory ("ckpt-1" became "../../../../ckpt-1").
        tf.compat.v1.train.update_checkpoint_state(
            os.path.abspath(self.directory), name,
            all_model_checkpoint_paths=names[-self.max_to_keep:])
        for old in names[:-self.max_to_keep]:
            remove(os.fspath(self.directory / old))
        return prefix
