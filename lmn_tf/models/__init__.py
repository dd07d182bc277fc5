"""Ranking models as TFRS models, built by name: ``build_model("din", vocab, **hparams)``.

Every model maps a ``schema.FEATURES`` dict to click logits (B, 1) and trains through
``compute_loss`` (``tfrs.tasks.Ranking``). They share ``FeatureStack`` and the MLP head and
differ only in how they read the behaviour sequence (``RankingModel.interest``).
"""

from __future__ import annotations

import importlib

import tensorflow_recommenders as tfrs

from lmn_tf.data import schema

# name -> "module:Class"; imported lazily so that Base never loads the memory layer.
MODELS: dict[str, str] = {
    "base": "lmn_tf.models.base:Base",
    "pooling": "lmn_tf.models.pooling:Pooling",
    "din": "lmn_tf.models.din:DIN",
    "sim": "lmn_tf.models.sim:SIM",
    "mimn": "lmn_tf.models.mimn:MIMN",
    "lmn": "lmn_tf.models.lmn:LMN",
    "cross": "lmn_tf.models.cross:Cross",  # the explicit pair store (experiment capacity)
}


def build_model(name: str, vocab: schema.Vocab | dict, **hparams) -> tfrs.models.Model:
    """The model registered as ``name``, sized by ``vocab``, with constructor ``hparams``.

    Raises:
        ValueError: on an unknown name.

    Example:
    >>> v = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    >>> type(build_model("din", v, embedding_dim=4)).__name__
    'DIN'
    """
    if name not in MODELS:
        raise ValueError(
            f"Unknown model. Expected one of {sorted(MODELS)}. Received: name={name!r}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)(vocab, **hparams)


__all__ = ["MODELS", "build_model"]
