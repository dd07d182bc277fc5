"""Batches shaped like ``schema.FEATURES`` without real data: random ones, and an all-padding one.

For wherever only the shapes and valid ids matter: building a model's variables before a
checkpoint is restored (``zero_features``), an export's warm-up rows and the tests and
doctests (``random_arrays``, ``random_features``: valid ids over a vocabulary, sequences
padded as the schema says).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from lmn_tf.data import schema

_VOCAB_OF = {"user_id": "num_users", "user_gender": "num_genders", "user_age": "num_ages",
             "user_occupation": "num_occupations", "user_zip": "num_zips",
             "item_id": "num_items", "item_genres": "num_genres", "item_year": "num_years",
             "hist_item_ids": "num_items", "sim_item_ids": "num_items"}
_SIDE_OF = {side: seq for seq, side in schema.RATINGS_OF.items()}  # ratings -> their sequence


def random_arrays(vocab: schema.Vocab | dict, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` random examples: every feature of ``schema.FEATURES`` plus a 0/1 label.

    Sequences are left-aligned with random lengths and zero padding, as in the schema; a
    sequence's ratings are padded exactly where its items are.

    Example:
    >>> v = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    >>> random_arrays(v, 3)["hist_item_ids"].shape
    (3, 50)
    """
    vocab = dataclasses.asdict(vocab) if dataclasses.is_dataclass(vocab) else dict(vocab)
    rng = np.random.default_rng(seed)
    out = {}
    for name, (dtype, shape) in schema.FEATURES.items():
        if name in _SIDE_OF:
            continue  # drawn with its sequence, below
        if name in schema.STATISTICS:  # about the statistic's own range
            offset, scale = schema.STATISTICS[name]
            out[name] = (offset + scale * rng.uniform(-1, 1, size=(n, *shape))).astype(dtype)
            continue
        x = rng.integers(1, vocab[_VOCAB_OF[name]], size=(n, *shape)).astype(dtype)
        if shape:  # zero-pad a random-length tail
            lengths = rng.integers(0, shape[0] + 1, size=n)
            x[np.arange(shape[0])[None, :] >= lengths[:, None]] = 0
        out[name] = x
    for side, seq in _SIDE_OF.items():
        dtype, shape = schema.FEATURES[side]
        ratings = rng.integers(1, schema.NUM_RATINGS, size=(n, *shape))
        out[side] = np.where(out[seq] != 0, ratings, 0).astype(dtype)
    out[schema.LABEL] = rng.integers(0, 2, size=n).astype("float32")
    return out


def random_features(vocab: schema.Vocab | dict, n: int, seed: int = 0) -> dict[str, tf.Tensor]:
    """``random_arrays`` as tensors."""
    return {k: tf.constant(v) for k, v in random_arrays(vocab, n, seed).items()}


def zero_features(n: int = 1) -> dict[str, tf.Tensor]:
    """An all-padding batch: builds every variable of a model without real data."""
    return {name: tf.zeros((n, *shape), dtype) for name, (dtype, shape) in schema.FEATURES.items()}
