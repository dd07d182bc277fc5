"""Shared test set-up: tf-keras before TensorFlow, quiet logs, deterministic seeds."""

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import lmn_tf  # noqa: F401  (binds tf.keras to tf-keras before any test module)

# Hypothesis draws its examples from a fixed seed too: the same examples on every run and
# machine, and no example database replaying one machine's failures on another.
# HYPOTHESIS_PROFILE=explore asks for fresh random examples when hunting bugs.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from seed 0 (Python, NumPy, TensorFlow): unseeded weights would
    otherwise differ run to run, and a tolerance that holds for one draw may miss another."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)


def pytest_configure(config):
    # The latest-TensorFlow run of `make test` deselects these by marker (-m), so what it
    # leaves out is named in its summary, never skipped silently inside a test.
    config.addinivalue_line("markers", "horovod: needs Horovod (TensorFlow <= 2.18): "
                            "launches horovodrun or imports horovod")
    config.addinivalue_line("markers", "bazel: drives Bazel (installed by .ci/system-packages)")
    config.addinivalue_line("markers", "benchmark_smoke: runs a benchmark script in its tiny "
                            "mode (once per `make test`: the pinned run)")
    config.addinivalue_line("markers", "aiohttp_range: the REST server on the oldest and newest "
                            "aiohttp of setup.py's range (once per `make test`: the pinned run)")
    config.addinivalue_line("markers", "keras3_models: Keras 3 models with lmn_tf.keras3's layer "
                            "trained, saved, exported and served (once per `make test`: the "
                            "pinned run; the latest run does it in the Keras-RS example)")


@pytest.fixture
def ml100k_copy(tmp_path, monkeypatch):
    """Factory: ``ml100k_copy(n)`` copies ML-100K with its first ``n`` ratings into
    ``tmp_path/ml-100k`` (users and items whole) and points LMN_TF_CACHE at ``tmp_path/cache``;
    returns the data directory."""
    from lmn_tf.data import movielens

    def copy(ratings: int) -> Path:
        monkeypatch.setenv("LMN_TF_CACHE", str(tmp_path / "cache"))
        src = movielens.data_files("ml-100k")
        data = tmp_path / "ml-100k"
        data.mkdir()
        for ext in ("user", "item"):
            shutil.copy(src[ext], data / f"ml-100k.{ext}")
        with open(src["inter"], "rb") as f:  # bytes: the copy keeps the file's line endings
            (data / "ml-100k.inter").write_bytes(b"".join(f.readlines()[: ratings + 1]))
        return data

    return copy
