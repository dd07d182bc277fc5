"""An on-disk cache of preprocessed arrays, keyed by code version and parameters.

Files live under ``$LMN_TF_CACHE/data`` (default ``~/.cache/lmn-tf/data``), never in the
repository. A cache file is written to ``<name>.<pid>.tmp`` in the same directory, synced, and
moved into place with ``os.replace``, so a crash (even ``kill -9``) leaves either the complete
file or none at all; the next write removes temporary files of processes that are gone. A cache
file that cannot be read (damaged on disk) is rebuilt, with a warning. Writing a new cache file
removes the same dataset's files of other keys (older code versions) not read for a day.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import time
import warnings
import zipfile
from collections.abc import Callable

import numpy as np

STALE_SECONDS = 24 * 3600  # other code versions' files unused this long are removed


def cache_root() -> pathlib.Path:
    """The data cache directory: ``$LMN_TF_CACHE/data`` or ``~/.cache/lmn-tf/data``."""
    base = os.environ.get("LMN_TF_CACHE") or os.path.join("~", ".cache", "lmn-tf")
    return pathlib.Path(base).expanduser() / "data"


def cache_key(**params: object) -> str:
    """A short stable hash of JSON-serialisable parameters (include a code version)."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached_arrays(
    name: str, key: str, build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Returns the arrays cached as ``<name>-<key>.npz``, building and saving them if absent.

    Args:
        name: human-readable prefix, e.g. the dataset name.
        key: hash of everything the arrays depend on (see `cache_key`).
        build: computes the arrays when the cache misses.

    Returns:
        The arrays, loaded from the cache file (or freshly built).
    """
    path = cache_root() / f"{name}-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            warnings.warn(f"{path}: unreadable cache file ({e}); rebuilding it", stacklevel=2)
        else:
            with contextlib.suppress(OSError):  # "recently used": other versions spare it
                os.utime(path)
            return arrays
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path.parent)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # uncompressed: loads in about a second
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for stale in path.parent.glob(f"{name}-*.npz"):  # older code versions' caches
        if (stale != path and len(stale.name) == len(path.name)
                and time.time() - stale.stat().st_mtime > STALE_SECONDS):
            stale.unlink(missing_ok=True)
    return arrays


def _remove_orphans(directory: pathlib.Path) -> None:
    """Delete ``*.<pid>.tmp`` files whose writer process no longer exists (killed mid-write)."""
    for tmp in directory.glob("*.npz.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
