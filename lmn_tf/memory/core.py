"""The memory's math, written once (paper eq. 4-12): argument checks, queries, scoring,
two-stage selection, read-out and memory loss, as functions of arrays and weights.

Both LMN layers are shells over these functions: ``lmn_tf.memory.LMNLayer`` (tf-keras) and
``lmn_tf.keras3.LMNLayer`` (Keras 3) own the weights and the Keras plumbing (MLP sub-layers,
moving-moment assignment, ``add_loss``, serialising their initializers; ``layer_config`` gives
the constructor arguments both configs hold), and call these with their weights and an
array namespace ``ops``: ``TF`` (TensorFlow ops: the tf-keras layer, and the Keras 3 layer on
the TensorFlow backend, where the selection kernel and sparse value gradients are) or the
Keras 3 layer's ``keras.ops`` namespace (JAX, PyTorch). The math uses only the namespace's
few functions, so the two layers cannot drift; ``tests/memory/test_memory_keras3.py`` holds
them equal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from lmn_tf.memory import ops as selection_ops
from lmn_tf.memory.scoring import SCORING

STOP_GRADIENT = ("none", "query", "readout")
ADDRESSING = ("learned", "fixed_keys", "fixed")
EPSILON = 1e-3  # query_norm's variance epsilon
# The selection each mode runs: "two_stage" through the C++ kernel when it is built (same
# slots, order and scores as scoring.two_stage_top_k, which it falls back to).
SELECTION = {**SCORING, "two_stage": selection_ops.two_stage_top_k}


class TF:
    """The array namespace over TensorFlow ops (what the tf-keras layer always ran)."""

    float32 = tf.float32
    cast, concat, stop_gradient, einsum = tf.cast, tf.concat, tf.stop_gradient, tf.einsum
    square, abs, maximum, where, ones_like = tf.square, tf.abs, tf.maximum, tf.where, tf.ones_like
    sum, mean, rsqrt, reshape = tf.reduce_sum, tf.reduce_mean, tf.math.rsqrt, tf.reshape
    softmax, matmul, bias_add, take, arange = (tf.nn.softmax, tf.matmul, tf.nn.bias_add,
                                               tf.gather, tf.range)
    selection = SELECTION

    @staticmethod
    def reshape_lead(x, ref, n: int, tail: Sequence[int]):
        """``x`` reshaped to ``ref``'s first ``n`` (dynamic) dimensions + ``tail``."""
        return tf.reshape(x, tf.concat([tf.shape(ref)[:n], tail], 0))

    @staticmethod
    def broadcast_user(user, items):
        """(B, d_u) -> (B, L, d_u), one copy per item of ``items`` (B, L, d)."""
        return tf.broadcast_to(user[:, None, :], tf.concat([tf.shape(items)[:2],
                                                            tf.shape(user)[-1:]], 0))

    @staticmethod
    def matmul_t(a, b):
        """``a @ b.T``."""
        return tf.matmul(a, b, transpose_b=True)

    @staticmethod
    def lookup(store, ids):
        return store.lookup(ids)

    @staticmethod
    def batch_mean(store):
        return store.batch_mean


# --- arguments and inputs -------------------------------------------------------------------

def check_arguments(num_keys, top_k, num_heads, key_dim, value_dim, query_hidden_units,
                    head_hidden_units, memory_loss_weight, memory_loss_stop_gradient, scoring,
                    addressing) -> None:
    """The constructor's checks, with the messages both layers raise."""
    sizes = {"num_keys": num_keys, "top_k": top_k, "num_heads": num_heads,
             "key_dim": key_dim, "value_dim": 1 if value_dim is None else value_dim}
    for arg, value in sizes.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
    for arg, units in (("query_hidden_units", query_hidden_units),
                       ("head_hidden_units", head_hidden_units)):
        if any(not isinstance(u, int) or u <= 0 for u in units):
            raise ValueError(f"`{arg}` must be positive ints. Received: {arg}={units!r}")
    if top_k > num_keys:
        raise ValueError("`top_k` must be <= `num_keys` (the per-axis top-K needs K keys)."
                         f" Received: top_k={top_k}, num_keys={num_keys}")
    if memory_loss_weight < 0:
        raise ValueError("`memory_loss_weight` must be >= 0. "
                         f"Received: memory_loss_weight={memory_loss_weight}")
    if memory_loss_stop_gradient not in STOP_GRADIENT:
        raise ValueError(f"`memory_loss_stop_gradient` must be one of {STOP_GRADIENT}. "
                         f"Received: memory_loss_stop_gradient={memory_loss_stop_gradient!r}")
    if scoring not in SCORING:
        raise ValueError(f"`scoring` must be one of {tuple(SCORING)}. "
                         f"Received: scoring={scoring!r}")
    if addressing not in ADDRESSING:
        raise ValueError(f"`addressing` must be one of {ADDRESSING}. "
                         f"Received: addressing={addressing!r}")


def check_items_shape(input_shape) -> None:
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError("`items` must have shape (B, L, d) with known d. "
                         f"Received: items.shape={tuple(input_shape)}")


def _rank(shape) -> int | None:
    return shape.rank if isinstance(shape, tf.TensorShape) else len(shape)


def _compatible(a, b) -> bool:
    if _rank(a) is None or _rank(b) is None:
        return True
    return len(a) == len(b) and all(x is None or y is None or x == y
                                    for x, y in zip(a, b, strict=True))


def check_inputs(items_shape, user_shape, mask_shape, widths: dict) -> None:
    """Ranks, batch and sequence sizes, and the widths of the first call (``widths``, updated).

    Shapes are ``tf.TensorShape`` or tuples; the messages print them the same way.
    """
    if _rank(items_shape) != 3:
        raise ValueError(f"`items` must be (B, L, d). Received: items.shape={items_shape}")
    if _rank(user_shape) != 2:
        raise ValueError(f"`user` must be (B, d_u). Received: user.shape={user_shape}")
    if not _compatible(user_shape[:1], items_shape[:1]):
        raise ValueError("`user` and `items` batch sizes differ. Received: "
                         f"user.shape={user_shape}, items.shape={items_shape}")
    if mask_shape is not None and not _compatible(mask_shape, items_shape[:2]):
        raise ValueError("`mask` must be (B, L) like `items`. Received: "
                         f"mask.shape={mask_shape}, items.shape={items_shape}")
    widths["user"] = widths["user"] or user_shape[-1]
    for arg, shape in (("items", items_shape), ("user", user_shape)):
        if shape[-1] != widths[arg]:
            raise ValueError(f"`{arg}` width differs from the first call's "
                             f"({widths[arg]}). Received: {arg}.shape={shape}")


# --- queries --------------------------------------------------------------------------------

def user_aware_inputs(ops, items, user):
    """concat(x, u) per item (eq. 4's input): (B, L, d + d_u)."""
    return ops.concat([items, ops.broadcast_user(user, items)], -1)


def split_heads(ops, q, num_heads: int, key_dim: int):
    """(B, L, H·d_k) -> (B, L, H, d_k)."""
    return ops.reshape_lead(q, q, 2, [num_heads, key_dim])


def normalize(ops, q, mean, variance, keep, training, momentum: float = 0.99,
              epsilon: float = EPSILON):
    """query_norm: (normalised q, (new moving mean, new moving variance) or None).

    Training standardises with the moments of the unmasked items and returns the moving
    averages to assign; otherwise the moving moments are used and nothing is returned.
    """
    q32 = ops.cast(q, ops.float32)  # moments in float32, also under mixed precision
    updates = None
    if training:
        w = ops.ones_like(q32[..., :1]) if keep is None else ops.cast(keep, ops.float32)[..., None]
        count = ops.maximum(ops.sum(w), 1.0)
        m = ops.sum(w * q32, (0, 1)) / count  # (H·d_k,) over unmasked items only
        v = ops.sum(w * ops.square(q32 - m), (0, 1)) / count
        updates = (momentum * mean + (1 - momentum) * ops.stop_gradient(m),
                   momentum * variance + (1 - momentum) * ops.stop_gradient(v))
    else:
        m, v = ops.cast(mean, ops.float32), ops.cast(variance, ops.float32)
    return ops.cast((q32 - m) * ops.rsqrt(v + epsilon), q.dtype), updates


# --- scoring and selection ------------------------------------------------------------------

def winner_scores(ops, q, keys, ids, num_heads: int, num_keys: int, key_dim: int):
    """(B, L, H, K) float32 scores of the keys ``ids`` (per head) against queries ``q``."""
    offsets = ops.arange(num_heads)[:, None] * num_keys  # (H, 1): head h's keys
    k = ops.take(ops.reshape(keys, (-1, key_dim)), ids + offsets)  # (B, L, H, K, d_k)
    return ops.cast(ops.einsum("blhd,blhkd->blhk", q, k), ops.float32)


def select(ops, scoring: str, q_row, q_col, row_keys, col_keys, top_k: int, num_heads: int,
           num_keys: int, key_dim: int):
    """The training path's winners: scores and slots (B, L, H, K), with a backward of O(K).

    Select in float32 (fewer spurious ties under mixed precision) and without gradient,
    then score the K winners again from their keys: same values, but the backward pass
    costs O(K·d_k) per query instead of O(√n·d_k).
    """
    s_row, s_col = (ops.stop_gradient(ops.cast(ops.einsum("blhd,hmd->blhm", q, keys),
                                               ops.float32))  # (B, L, H, √n)
                    for q, keys in ((q_row, row_keys), (q_col, col_keys)))
    _, slots = ops.selection[scoring](s_row, s_col, top_k)  # (B, L, H, K)
    scores = (winner_scores(ops, q_row, row_keys, slots // num_keys, num_heads, num_keys,
                            key_dim)
              + winner_scores(ops, q_col, col_keys, slots % num_keys, num_heads, num_keys,
                              key_dim))
    return scores, slots


def select_inference(ops, scoring: str, items, user, query_layers, row_layers, col_layers,
                     row_keys, col_keys, moments: dict | None, top_k: int, num_heads: int,
                     num_keys: int, key_dim: int):
    """Inference path: the training path's function with fewer, larger ops (serving).

    2-D matmuls over the B·L items instead of einsums; the first query-MLP layer applies
    its user half once per user, not once per item; ``query_norm``'s inference branch is
    folded into the last query layer's weights; the winners' scores are the selected sums
    themselves, not recomputed from gathered keys (that only keeps the training backward
    pass small). Equal to the training path up to float rounding.

    ``*_layers`` are the built Dense layers of the three MLPs; ``moments`` holds
    ``query_norm``'s moving ``{axis}_{mean|variance}`` (None without it). Returns M_Q
    (B, L, d_v), scores and slots (B, L, H, K).
    """
    d = items.shape[-1]
    first, *rest = query_layers
    h = ops.reshape_lead(ops.matmul(ops.reshape(items, (-1, d)), first.kernel[:d]),
                         items, 2, [first.units])  # (B, L, units)
    h = first.activation(h + ops.bias_add(ops.matmul(user, first.kernel[d:]),
                                          first.bias)[:, None])
    m_q = ops.reshape(h, (-1, first.units))  # (B·L, units)
    for layer in rest:
        m_q = layer(m_q)  # (B·L, d_v) after the last
    s_row, s_col = (_axis_scores(ops, layers, m_q, keys, moments, axis, num_heads, key_dim)
                    for layers, keys, axis in ((row_layers, row_keys, "row"),
                                               (col_layers, col_keys, "col")))
    scores, slots = ops.selection[scoring](ops.reshape_lead(s_row, items, 2, [num_heads, num_keys]),
                                           ops.reshape_lead(s_col, items, 2, [num_heads, num_keys]),
                                           top_k)  # (B, L, H, K)
    d_v = (rest[-1] if rest else first).units
    return ops.reshape_lead(m_q, items, 2, [d_v]), scores, slots


def _axis_scores(ops, layers, m_q, keys, moments, axis, num_heads, key_dim):
    """(B·L, H·√n) float32 scores of one axis's keys, from M_Q (B·L, d_v)."""
    *hidden, last = layers
    for layer in hidden:
        m_q = layer(m_q)
    w, b = ops.cast(last.kernel, ops.float32), ops.cast(last.bias, ops.float32)  # (d_in, H·d_k)
    if moments is not None:  # normalize's inference branch is affine: fold it into W and b
        # float32 reads: under mixed precision the layer's variables read as float16.
        mean, variance = (ops.cast(moments[f"{axis}_{s}"], ops.float32)
                          for s in ("mean", "variance"))
        scale = ops.rsqrt(variance + EPSILON)
        w, b = w * scale, (b - mean) * scale
    q = ops.bias_add(ops.matmul(ops.cast(m_q, ops.float32), w), b)  # (B·L, H·d_k)
    keys = ops.cast(keys, ops.float32)
    if num_heads == 1:
        return ops.matmul_t(q, keys[0])
    # One 2-D matmul per head: MKL's batched matmul took ~1 ms per call at b = 1 here.
    return ops.concat([ops.matmul_t(q[:, i * key_dim:(i + 1) * key_dim], keys[i])
                       for i in range(num_heads)], 1)


# --- read-out and memory loss ---------------------------------------------------------------

def read_out(ops, scores, slots, lookup: Callable, keep, num_heads: int):
    """M_O (B, L, d_v) float32, zeros where ``keep`` is False, and the slots, -1 there.

    ``lookup(slots)`` gives the (B, L, H, K, d_v) value rows (the value store's seam).
    """
    weights = ops.softmax(scores) / num_heads
    # float32 whatever the table dtype (e.g. a float16 serving table).
    values = ops.cast(lookup(slots), ops.float32)  # (B, L, H, K, d_v)
    # the weighted sum over (H, K) as one (1, H·K) x (H·K, d_v) matmul per item: a third of
    # the time of a broadcast product and sum, forward and backward (no (B, L, H, K, d_v)
    # temporary, no tiled gradient)
    hk = weights.shape[2] * weights.shape[3]
    m_o = ops.matmul(ops.reshape_lead(weights, weights, 2, [1, hk]),
                     ops.reshape_lead(values, values, 2, [hk, values.shape[-1]]))  # (B, L, 1, d_v)
    m_o = ops.reshape_lead(m_o, m_o, 2, [values.shape[-1]])  # (B, L, d_v)
    if keep is not None:  # where, not multiply: garbage (even NaN) in padding stays out
        m_o = ops.where(keep[..., None], m_o, 0.0)
        slots = ops.where(keep[..., None, None], slots, -1)
    return m_o, slots


def memory_loss(ops, m_o, m_q, keep, stop_gradient: str, batch_mean: Callable):
    """SmoothL1(M_O, M_Q) (Huber, δ = 1), mean over d_v, then over unmasked items.

    ``batch_mean(total, count)`` is the value store's mean (a sharded store divides by the
    global count).
    """
    if stop_gradient == "query":
        m_q = ops.stop_gradient(m_q)
    elif stop_gradient == "readout":
        m_o = ops.stop_gradient(m_o)
    err = ops.abs(m_o - m_q)
    per_item = ops.mean(ops.where(err < 1.0, 0.5 * err**2, err - 0.5), -1)  # (B, L)
    if keep is None:
        return ops.mean(per_item)
    count = ops.sum(ops.cast(keep, ops.float32))
    return batch_mean(ops.sum(ops.where(keep, per_item, 0.0)), count)


# --- config ---------------------------------------------------------------------------------

def layer_config(layer, serialize_initializer: Callable, serialize_activation: Callable,
                 serialize_store: Callable) -> dict:
    """The constructor arguments of an LMN layer (tf-keras or Keras 3), for ``get_config``.

    Each layer passes its own Keras' serialisers for the initializers, the activation and the
    value store; the keys and values are otherwise the same for both layers, so a config
    written by one has the other's arguments.
    """
    initializer = serialize_initializer
    return {
        "num_keys": layer.num_keys, "top_k": layer.top_k, "num_heads": layer.num_heads,
        "key_dim": layer.key_dim, "value_dim": layer.value_dim,
        "query_hidden_units": list(layer.query_hidden_units),
        "head_hidden_units": list(layer.head_hidden_units),
        "activation": serialize_activation(layer.activation),
        "memory_loss_weight": layer.memory_loss_weight,
        "memory_loss_stop_gradient": layer.memory_loss_stop_gradient,
        "scoring": layer.scoring,
        "value_store": serialize_store(layer.value_store),
        "query_norm": layer.query_norm,
        "addressing": layer.addressing,
        "kernel_initializer": initializer(layer.kernel_initializer),
        "key_initializer": layer.key_initializer and initializer(layer.key_initializer),
        "value_initializer": layer.value_initializer and initializer(layer.value_initializer),
    }
