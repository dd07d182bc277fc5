"""The feature/embedding stack every ranking model shares (width 32, as in the paper).

A behaviour inside a sequence is its item's id embedding e (width ``dim``) modulated by the
feedback r the user gave it (``schema.RATINGS_OF``): ``e ⊙ s_r + b_r`` with a learned scale
s_r (initialised to ones) and shift b_r per rating. Why a scale and not only a sum or a
concatenation: any linear mix of [e, r] pooled over the sequence is the mean item plus the
mean rating, so a mean-pooling model could not tell "liked A, disliked B" from the reverse;
a per-rating scale lets a disliked item enter with a flipped or damped sign. The width stays
``dim``, so DIN's attention (target id embedding against the behaviours), MIMN and LMN's
memory queries read it unchanged. ``feedback=False`` drops the ratings (the item embedding
alone, the paper's setting). The running statistics (``schema.STATISTICS``) enter as
normalised dense inputs, ``(value - offset) / scale`` with the schema's fixed constants (no
state to fit, so training and serving cannot drift apart). The target item has no
feedback; it additionally has genres (mean of genre embeddings) and a release year. Index 0
is padding everywhere (``schema``), and its embedding is masked out by the models, not
forced to zero here.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from lmn_tf.data import schema

USER_FIELDS = ("user_id", "user_gender", "user_age", "user_occupation", "user_zip")
_VOCAB_OF = {
    "user_id": "num_users",
    "user_gender": "num_genders",
    "user_age": "num_ages",
    "user_occupation": "num_occupations",
    "user_zip": "num_zips",
    "item_id": "num_items",
    "item_genres": "num_genres",
    "item_year": "num_years",
}


# The profile fields and their vocabulary sizes, in the order hash_bucket codes them.
PROFILE = (("user_gender", "num_genders"), ("user_age", "num_ages"),
           ("user_occupation", "num_occupations"), ("user_zip", "num_zips"))


def hash_bucket(features: dict, fields: tuple[tuple[str, str], ...], vocab: dict,
                buckets: int) -> tf.Tensor:
    """(B,) int64 bucket of each sample's combination of ``fields`` ((feature, vocab size)).

    The combination's mixed-radix code is spread by multiplicative hashing, so neighbouring
    codes land far apart, then reduced modulo ``buckets``.
    """
    code = tf.zeros_like(tf.cast(features[fields[0][0]], tf.int64))
    for field, size in fields:
        code = code * int(vocab[size]) + tf.cast(features[field], tf.int64)
    return (code * 0x9E3779B1) % 2**31 % buckets


@tf.keras.utils.register_keras_serializable(package="lmn_tf")
class FeatureStack(tf.keras.layers.Layer):
    """Embeds the ``schema.FEATURES`` of a batch.

    Args:
        vocab: a ``schema.Vocab`` or a dict of its fields.
        dim: embedding width of every field.
        l2: L2 penalty on the looked-up rows (added with ``add_loss``), 0 to disable.
        feedback: modulate sequence items by their ratings (see the module docstring).

    Call arguments (methods, not ``call``):
        ``user(features)`` -> (B, 5·dim): the concatenated user fields.
        ``item(ids)`` -> ids.shape + (dim,): item id embeddings.
        ``behaviours(features, name)`` -> (B, L, dim): the sequence ``name`` with feedback.
        ``statistics(features)`` -> (B, S): the normalised statistics.
        ``target(features)`` -> (B, 3·dim): target id, mean genre and year embeddings.

    Raises:
        ValueError: if ``dim`` is not positive or ``vocab`` misses a field.

    Example:
    >>> from lmn_tf.data.schema import Vocab
    >>> v = Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    >>> stack = FeatureStack(v, dim=4)
    >>> stack.item(tf.constant([[1, 2, 0]])).shape
    TensorShape([1, 3, 4])
    """

    def __init__(self, vocab: schema.Vocab | dict, dim: int = 32, l2: float = 0.0,
                 feedback: bool = True, **kwargs):
        super().__init__(**kwargs)
        if dim <= 0:
            raise ValueError(f"dim must be positive. Received: dim={dim}")
        vocab = dataclasses.asdict(vocab) if dataclasses.is_dataclass(vocab) else dict(vocab)
        missing = [f.name for f in dataclasses.fields(schema.Vocab) if f.name not in vocab]
        if missing:
            raise ValueError(f"vocab misses fields {missing}. Received: vocab={vocab}")
        self.vocab, self.dim, self.l2, self.feedback = vocab, dim, l2, feedback
        self.tables = {
            name: tf.keras.layers.Embedding(
                int(vocab[size]), dim, name=f"{name}_embedding",
                embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
            for name, size in _VOCAB_OF.items()
        }
        if feedback:
            self.rating_scale = tf.keras.layers.Embedding(
                schema.NUM_RATINGS, dim, name="rating_scale", embeddings_initializer="ones")
            self.rating_shift = tf.keras.layers.Embedding(
                schema.NUM_RATINGS, dim, name="rating_shift",
                embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05))

    def _embed(self, name: str, ids: tf.Tensor) -> tf.Tensor:
        out = self.tables[name](ids)
        if self.l2:
            self.add_loss(self.l2 * tf.reduce_mean(tf.reduce_sum(tf.square(out), -1)))
        return out

    def user(self, features: dict) -> tf.Tensor:
        return tf.concat([self._embed(f, features[f]) for f in USER_FIELDS], -1)  # (B, 5d)

    def item(self, ids: tf.Tensor) -> tf.Tensor:
        return self._embed("item_id", ids)

    def behaviours(self, features: dict, name: str = "hist_item_ids") -> tf.Tensor:
        if name not in schema.RATINGS_OF:
            raise ValueError(f"name must be one of {sorted(schema.RATINGS_OF)}. "
                             f"Received: {name=}")
        items = self.item(features[name])  # (B, L, d)
        if not self.feedback:
            return items
        ratings = features[schema.RATINGS_OF[name]]  # (B, L), 0 where padded
        return items * self.rating_scale(ratings) + self.rating_shift(ratings)

    def target(self, features: dict) -> tf.Tensor:
        genres = features["item_genres"]  # (B, G), 0-padded
        mask = tf.cast(genres != 0, tf.float32)[..., None]
        genre = tf.reduce_sum(self._embed("item_genres", genres) * mask, 1) / tf.maximum(
            tf.reduce_sum(mask, 1), 1.0)
        year = self._embed("item_year", features["item_year"])
        return tf.concat([self.item(features["item_id"]), genre, year], -1)  # (B, 3d)

    def statistics(self, features: dict) -> tf.Tensor:
        return tf.stack([(tf.cast(features[name], tf.float32) - offset) / scale
                         for name, (offset, scale) in schema.STATISTICS.items()], -1)  # (B, S)

    def call(self, features: dict) -> tf.Tensor:
        return tf.concat([self.user(features), self.target(features)], -1)

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab": self.vocab, "dim": self.dim, "l2": self.l2,
                "feedback": self.feedback}
