"""Pooling: the behaviour sequence summarised by its masked mean."""

from __future__ import annotations

import tensorflow as tf

from lmn_tf.models.attention import masked_mean
from lmn_tf.models.base import RankingModel


class Pooling(RankingModel):
    """Base plus the mean embedding of ``hist_item_ids`` (padding excluded).

    Example:
    >>> from lmn_tf.data.schema import Vocab
    >>> from lmn_tf.data.random_batches import random_features
    >>> v = Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    >>> Pooling(v, embedding_dim=4)(random_features(v, 2)).shape
    TensorShape([2, 1])
    """

    def interest(self, features, user, target, training) -> list[tf.Tensor]:
        seq, mask = self.sequence(features)
        return [masked_mean(seq, mask)]
