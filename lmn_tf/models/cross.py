"""Cross: Base plus a hashed user-profile x item cross embedding (the paper's eq. 1 ``c``).

The explicit store of user-item pairs that ``lmn-tf experiment capacity`` measures the memory
against: one embedding row per (gender, age, occupation, zip, item) combination, hashed into
``cross_buckets`` rows, so it memorises a preference per profile and item exactly, up to
hash collisions. Its rows are trained by the sparse optimizer, like LMN's values.
"""

from __future__ import annotations

import tensorflow as tf

from lmn_tf.models.base import RankingModel
from lmn_tf.models.features import PROFILE, hash_bucket

# What an item is crossed with -> the (feature, vocab size) fields hashed with it.
CROSS_WITH = {"profile": PROFILE, "user": (("user_id", "num_users"),)}


class Cross(RankingModel):
    """Base + ``Embedding(hash(profile, item) mod cross_buckets, cross_dim)``.

    Args:
        cross_buckets: rows of the cross table.
        cross_dim: width of a cross row.
        cross_with: ``"profile"`` (gender, age, occupation, zip) or ``"user"`` (the user id):
            whose combination with the item a row stores.
        **kwargs: ``RankingModel`` arguments.

    Raises:
        ValueError: on a non-positive size or an unknown ``cross_with``.

    Example:
    >>> from lmn_tf.data.schema import Vocab
    >>> from lmn_tf.data.random_batches import random_features
    >>> v = Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    >>> Cross(v, embedding_dim=4, cross_buckets=64)(random_features(v, 2)).shape
    TensorShape([2, 1])
    """

    def __init__(self, vocab, cross_buckets: int = 2**20, cross_dim: int = 8,
                 cross_with: str = "profile", **kwargs):
        super().__init__(vocab, **kwargs)
        for arg, value in (("cross_buckets", cross_buckets), ("cross_dim", cross_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
        if cross_with not in CROSS_WITH:
            raise ValueError(f"`cross_with` must be one of {sorted(CROSS_WITH)}. "
                             f"Received: cross_with={cross_with!r}")
        self.cross_buckets = cross_buckets
        self.fields = (*CROSS_WITH[cross_with], ("item_id", "num_items"))
        self.cross = tf.keras.layers.Embedding(cross_buckets, cross_dim, name="cross_embedding")

    def cross_ids(self, features: dict) -> tf.Tensor:
        """(B,) int64 bucket of each sample's (profile or user, item) combination."""
        return hash_bucket(features, self.fields, self.vocab, self.cross_buckets)

    def interest(self, features, user, target, training):
        return [self.cross(self.cross_ids(features))]

    def sparse_variables(self) -> list[tf.Variable]:
        return [self.cross.embeddings] if self.cross.built else []
