"""DIN's target attention (Zhou et al. 2018) and masked mean pooling over a sequence."""

from __future__ import annotations

import tensorflow as tf


def masked_mean(seq: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean of ``seq`` (B, L, d) over the positions where ``mask`` (B, L) is true -> (B, d).

    An all-padding row gives zeros, not NaN.

    Example:
    >>> masked_mean(tf.constant([[[1.0], [3.0], [9.0]]]), tf.constant([[True, True, False]]))
    <tf.Tensor: shape=(1, 1), dtype=float32, numpy=array([[2.]], dtype=float32)>
    """
    m = tf.cast(mask, seq.dtype)[..., None]  # (B, L, 1)
    return tf.reduce_sum(seq * m, 1) / tf.maximum(tf.reduce_sum(m, 1), 1.0)


@tf.keras.utils.register_keras_serializable(package="lmn_tf")
class TargetAttention(tf.keras.layers.Layer):
    """DIN's local activation unit: weight each key by an MLP of (q, k, q - k, q ⊙ k).

    Like DIN, the weights are not softmax-normalised by default, so the pooled vector's norm
    also tells how much of the history is relevant to the target.

    Args:
        units: hidden widths of the activation MLP.
        normalize: softmax the weights over the unmasked keys instead of DIN's raw sum.

    Call arguments:
        query: (B, d) the target item.
        keys: (B, L, d) the sequence.
        mask: (B, L) bool, true for real (non-padding) positions.

    Returns:
        (B, d) the attention-weighted sum of ``keys``.

    Raises:
        ValueError: on an empty or non-positive ``units``.

    Example:
    >>> att = TargetAttention(units=(8,))
    >>> att(tf.ones((2, 4)), tf.ones((2, 3, 4)), tf.constant([[True] * 3] * 2)).shape
    TensorShape([2, 4])
    """

    def __init__(self, units: tuple[int, ...] = (80, 40), normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        units = tuple(int(u) for u in units)
        if not units or min(units) <= 0:
            raise ValueError(f"units must be non-empty and positive. Received: units={units}")
        self.units, self.normalize = units, normalize
        self.mlp = [tf.keras.layers.Dense(u, activation="sigmoid", name=f"att_{i}")
                    for i, u in enumerate(units)]
        self.score = tf.keras.layers.Dense(1, name="att_score")

    def call(self, query: tf.Tensor, keys: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        q = tf.broadcast_to(query[:, None, :], tf.shape(keys))  # (B, L, d)
        h = tf.concat([q, keys, q - keys, q * keys], -1)  # (B, L, 4d)
        for layer in self.mlp:
            h = layer(h)
        w = tf.squeeze(self.score(h), -1)  # (B, L)
        if self.normalize:
            w = tf.nn.softmax(tf.where(mask, w, -1e9), -1)
        w = w * tf.cast(mask, w.dtype)
        return tf.einsum("bl,bld->bd", w, keys)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "normalize": self.normalize}
