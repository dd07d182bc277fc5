"""DIN (Zhou et al. 2018): the target item attends over the behaviour sequence."""

from __future__ import annotations

import tensorflow as tf

from lmn_tf.models.attention import TargetAttention
from lmn_tf.models.base import RankingModel


class DIN(RankingModel):
    """Base plus DIN's target attention over ``hist_item_ids``.

    Args:
        attention_units: hidden widths of the activation unit.
        attention_normalize: softmax the attention weights over the sequence (default: one
            epoch on ML-1M trains much better than with DIN's raw weighted sum).
        **kwargs: ``RankingModel`` arguments.

    Example:
    >>> from lmn_tf.data.schema import Vocab
    >>> from lmn_tf.data.random_batches import random_features
    >>> v = Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    >>> DIN(v, embedding_dim=4)(random_features(v, 2)).shape
    TensorShape([2, 1])
    """

    def __init__(self, vocab, attention_units: tuple[int, ...] = (80, 40),
                 attention_normalize: bool = True, **kwargs):
        super().__init__(vocab, **kwargs)
        self.attention_units, self.attention_normalize = attention_units, attention_normalize
        self.attention = TargetAttention(attention_units, attention_normalize,
                                         name="din_attention")

    def target_item(self, target: tf.Tensor) -> tf.Tensor:
        return target[:, : self.embedding_dim]  # (B, d): the id embedding, comparable to keys

    def interest(self, features, user, target, training) -> list[tf.Tensor]:
        seq, mask = self.sequence(features)
        return [self.attention(self.target_item(target), seq, mask)]
