"""SIM (Pi et al. 2020), hard-search variant: attention over the genre-searched long history.

The general search unit (GSU) already ran in the data pipeline: ``sim_item_ids`` holds the
items of the user's long history (up to 1000 events) that share a genre with the target. The
exact search unit (ESU) here is target attention over them, next to DIN over the short
sequence, as in the paper's SIM which builds on DIN.
"""

from __future__ import annotations

from lmn_tf.models.attention import TargetAttention
from lmn_tf.models.din import DIN


class SIM(DIN):
    """DIN plus a second target attention over ``sim_item_ids``.

    Example:
    >>> from lmn_tf.data.schema import Vocab
    >>> from lmn_tf.data.random_batches import random_features
    >>> v = Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    >>> SIM(v, embedding_dim=4)(random_features(v, 2)).shape
    TensorShape([2, 1])
    """

    def __init__(self, vocab, attention_units: tuple[int, ...] = (80, 40), **kwargs):
        super().__init__(vocab, attention_units=attention_units, **kwargs)
        self.search_attention = TargetAttention(attention_units, name="esu_attention")

    def interest(self, features, user, target, training):
        long_seq, long_mask = self.sequence(features, "sim_item_ids")
        query = self.target_item(target)
        return [*super().interest(features, user, target, training),
                self.search_attention(query, long_seq, long_mask)]
