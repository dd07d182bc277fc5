"""MIMN (Pi et al. 2019): a per-user NTM memory plus a memory-induction unit (MIU).

Compact but faithful to the paper's structure:
- a GRU controller reads the sequence one item at a time (with the previous read vector);
- content-based read and write heads (cosine similarity x learned sharpness, softmax over
  ``num_slots`` slots); the write erases and adds, ``M ← M ⊙ (1 - w eᵀ) + w aᵀ``;
- memory-utilisation regularisation: the variance of the slots' accumulated write weights,
  added as a loss (weight ``utilization_weight``), keeps writes spread over all slots;
- the MIU keeps one interest channel per slot and, at each step, updates only the channel
  with the largest read weight with a GRU fed ``[M_t(i), e_t]`` (shared over channels).
Padding steps leave every state unchanged (Keras RNN masking). The target item then reads the
final memory (content addressing) and attends over the MIU channels; like the paper's MIMN
these sit next to DIN's attention over the short sequence.
"""

from __future__ import annotations

import tensorflow as tf

from lmn_tf.models.attention import TargetAttention
from lmn_tf.models.din import DIN


def _address(key: tf.Tensor, memory: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    """Content addressing: softmax_i(β · cos(key, M_i)); key (B, d), memory (B, m, d)."""
    cos = tf.einsum("bd,bmd->bm", tf.math.l2_normalize(key, -1),
                    tf.math.l2_normalize(memory, -1))
    return tf.nn.softmax(beta * cos, -1)  # (B, m)


@tf.keras.utils.register_keras_serializable(package="lmn_tf")
class MIMNCell(tf.keras.layers.Layer):
    """One step of MIMN's NTM + MIU, for ``tf.keras.layers.RNN``.

    Args:
        num_slots: memory slots m (= interest channels).
        dim: slot width d (= item embedding width).

    Call arguments:
        inputs: (B, d) the item at this step.
        states: [controller (B, d), memory (B, m·d), read (B, d), channels (B, m·d),
            write usage (B, m)].

    Returns:
        (read vector (B, d), new states).

    Raises:
        ValueError: if ``num_slots`` or ``dim`` is not positive.
    """

    def __init__(self, num_slots: int = 4, dim: int = 32, **kwargs):
        super().__init__(**kwargs)
        if num_slots <= 0 or dim <= 0:
            raise ValueError(f"num_slots and dim must be positive. Received: {num_slots=}, {dim=}")
        self.num_slots, self.dim = num_slots, dim
        m = num_slots
        self.state_size = [dim, m * dim, dim, m * dim, m]
        self.output_size = dim
        self.controller = tf.keras.layers.GRUCell(dim, name="controller")
        self.heads = tf.keras.layers.Dense(4 * dim + 2, name="heads")  # keys, erase, add, β
        self.miu = tf.keras.layers.GRUCell(dim, name="miu")

    def call(self, inputs, states):
        h, memory, read, channels, usage = states
        b, m, d = tf.shape(inputs)[0], self.num_slots, self.dim
        memory = tf.reshape(memory, (b, m, d))
        h, _ = self.controller(tf.concat([inputs, read], -1), [h])
        k_r, k_w, erase, add, beta = tf.split(self.heads(h), [d, d, d, d, 2], -1)
        beta = 1.0 + tf.nn.softplus(beta)  # (B, 2): sharpness ≥ 1
        w_r = _address(k_r, memory, beta[:, :1])  # (B, m)
        w_w = _address(k_w, memory, beta[:, 1:])
        read = tf.einsum("bm,bmd->bd", w_r, memory)
        memory = (memory * (1.0 - w_w[:, :, None] * tf.sigmoid(erase)[:, None, :])
                  + w_w[:, :, None] * tf.tanh(add)[:, None, :])  # (B, m, d)
        # MIU: the most-read channel takes a GRU step on [its memory slot, the item].
        x = tf.concat([memory, tf.broadcast_to(inputs[:, None, :], (b, m, d))], -1)
        ch = tf.reshape(channels, (b * m, d))
        new, _ = self.miu(tf.reshape(x, (b * m, 2 * d)), [ch])
        pick = tf.one_hot(tf.argmax(w_r, -1), m)[..., None]  # (B, m, 1)
        channels = pick * tf.reshape(new, (b, m, d)) + (1.0 - pick) * tf.reshape(ch, (b, m, d))
        states = [h, tf.reshape(memory, (b, m * d)), read, tf.reshape(channels, (b, m * d)),
                  usage + w_w]
        return read, states

    def get_config(self) -> dict:
        return {**super().get_config(), "num_slots": self.num_slots, "dim": self.dim}


class MIMN(DIN):
    """DIN plus MIMN's user-interest memory over ``hist_item_ids``.

    Args:
        num_slots: memory slots / interest channels (MIMN's m).
        utilization_weight: weight of the memory-utilisation regulariser.
        **kwargs: ``DIN`` arguments.

    Example:
    >>> from lmn_tf.data.schema import Vocab
    >>> from lmn_tf.data.random_batches import random_features
    >>> v = Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    >>> MIMN(v, embedding_dim=4)(random_features(v, 2)).shape
    TensorShape([2, 1])
    """

    def __init__(self, vocab, num_slots: int = 4, utilization_weight: float = 0.01, **kwargs):
        super().__init__(vocab, **kwargs)
        d = self.embedding_dim
        self.num_slots, self.utilization_weight = num_slots, utilization_weight
        self.rnn = tf.keras.layers.RNN(MIMNCell(num_slots, d), return_state=True, name="mimn")
        self.memory0 = self.add_weight(
            name="initial_memory", shape=(num_slots * d,),
            initializer=tf.keras.initializers.RandomNormal(stddev=0.1))
        self.read_beta = self.add_weight(name="read_beta", shape=(), initializer="ones")
        self.miu_attention = TargetAttention((d,), normalize=True, name="miu_attention")

    def interest(self, features, user, target, training):
        seq, mask = self.sequence(features)
        b, m, d = tf.shape(seq)[0], self.num_slots, self.embedding_dim
        zeros = tf.zeros((b, d))
        init = [zeros, tf.tile(self.memory0[None], (b, 1)), zeros, tf.zeros((b, m * d)),
                tf.zeros((b, m))]
        _, _, memory, _, channels, usage = self.rnn(seq, mask=mask, initial_state=init,
                                                    training=training)
        if self.utilization_weight:
            spread = tf.reduce_mean(tf.math.reduce_variance(usage, -1))
            self.add_loss(self.utilization_weight * spread)
        memory, channels = tf.reshape(memory, (b, m, d)), tf.reshape(channels, (b, m, d))
        query = self.target_item(target)
        w = _address(query, memory, 1.0 + tf.nn.softplus(self.read_beta))  # (B, m)
        read = tf.einsum("bm,bmd->bd", w, memory)
        induced = self.miu_attention(query, channels, tf.ones((b, m), tf.bool))
        return [*super().interest(features, user, target, training), read, induced]
