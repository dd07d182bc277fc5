"""An on-disk cache of preprocessed arrays, keyed by code version and parameters.

Files live under ``$LMN_TF_CACHE/data`` (default ``~/.cache/lmn-tf/data``), never in the
repository. A cache file is written to a temporary name in the same directory and moved into
place with ``os.replace``, so a crash leaves either the complete old state or none at all.
Writing a new cache file removes the same dataset's files of other keys (older code versions).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from collections.abc import Callable

import numpy as np


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
        with np.load(path) as npz:
            return {k: npz[k] for k in npz.files}
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # uncompressed: loads in about a second
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    for stale in path.parent.glob(f"{name}-*.npz"):  # older code versions' caches
        if stale != path and len(stale.name) == len(path.name):
            stale.unlink(missing_ok=True)
    return arrays
