"""TF-Serving's ``BASE/NAME/VERSION`` layout, with versions that appear atomically.

TF-Serving polls ``BASE/NAME`` and loads the largest integer-named child. A version is
therefore built in a sibling directory whose name is not an integer (``.tmp-…``, which
servers skip), flushed to disk, and renamed into place in one ``os.rename``: a poller sees
either no version or a complete one, and an interrupted export leaves no version directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

TMP_PREFIX = ".tmp-"


def existing_versions(model_dir: str) -> list[int]:
    """Sorted integer versions under ``model_dir`` (children that are not integers are skipped)."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(d) for d in os.listdir(model_dir)
                  if d.isascii() and d.isdigit() and os.path.isdir(os.path.join(model_dir, d)))


def next_version(model_dir: str) -> int:
    """One more than the largest existing version, or 1."""
    return max(existing_versions(model_dir), default=0) + 1


def _fsync_tree(root: str) -> None:
    # Files first, then their directories, so the rename publishes durable contents.
    for dirpath, _, files in os.walk(root, topdown=False):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(dirpath)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_version_dir(model_dir: str, version: int) -> Iterator[str]:
    """Yields a temporary directory; on success it becomes ``model_dir/version``.

    On any exception the temporary directory is removed and nothing is published.

    Raises:
        ValueError: if ``version`` is not a non-negative int.
        FileExistsError: if ``model_dir/version`` already exists.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a non-negative int. Received: version={version!r}")
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"version {version} already exists: {final}")
    os.makedirs(model_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{version}-", dir=model_dir)
    try:
        yield tmp
        _fsync_tree(tmp)
        if os.path.exists(final):  # a concurrent export took the number meanwhile
            raise FileExistsError(f"version {version} already exists: {final}")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; servers may run as another user
        os.rename(tmp, final)
        _fsync_dir(model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
