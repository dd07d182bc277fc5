"""The Keras 3 LMNLayer's array namespace off TensorFlow: ``lmn_tf.memory.core`` over ``keras.ops``.

On the JAX and PyTorch backends the layer runs ``core``'s math through ``KerasOps``, with the
backend's stock top-K in the two scoring modes; on the TensorFlow backend ``array_namespace``
gives ``core.TF`` (the C++ selection kernel, sparse value gradients), as the tf-keras layer
runs.
"""

from __future__ import annotations

from typing import ClassVar

import keras
from keras import ops

from lmn_tf.memory import core
from lmn_tf.memory.scoring import _rank_pairs


def broadcast_top_k(s_row, s_col, k: int):
    """``scoring.broadcast_top_k`` on ``keras.ops``: top-K over all m·m sums (eq. 9)."""
    m = s_row.shape[-1]
    flat = ops.reshape(s_row[..., :, None] + s_col[..., None, :],
                       (*s_row.shape[:-1], m * m))
    return ops.top_k(flat, k)  # flat position i*m + j is the slot id


def two_stage_top_k(s_row, s_col, k: int):
    """``scoring.two_stage_top_k`` on ``keras.ops`` with the backend's stock top-K.

    The same candidates (row rank a, column rank b with (a+1)(b+1) <= K, the proof is in
    ``scoring``). Ordered by slot id before the last top-K instead of an int64 order key
    (``keras.ops`` has no bitcast): ties then go to the lower slot id where the backend's
    top-K is stable (JAX's is; PyTorch does not promise it). Same slots and scores as the
    TensorFlow path for tie-free scores.
    """
    m = s_row.shape[-1]
    (row_s, row_id), (col_s, col_id) = ops.top_k(s_row, k), ops.top_k(s_col, k)  # (..., K)
    a, b = _rank_pairs(k)
    cand_s = ops.take(row_s, a, axis=-1) + ops.take(col_s, b, axis=-1)  # (..., P)
    cand_id = ops.take(row_id, a, axis=-1) * m + ops.take(col_id, b, axis=-1)
    order = ops.argsort(cand_id, axis=-1)  # distinct ids: no tie here
    cand_s = ops.take_along_axis(cand_s, order, axis=-1)
    cand_id = ops.take_along_axis(cand_id, order, axis=-1)
    scores, top = ops.top_k(cand_s, k)
    return scores, ops.take_along_axis(cand_id, top, axis=-1)


class KerasOps:
    """``core``'s array namespace over ``keras.ops`` (any backend; used off TensorFlow)."""

    float32 = "float32"
    cast, stop_gradient, einsum, square = ops.cast, ops.stop_gradient, ops.einsum, ops.square
    abs, maximum, where, ones_like, sum = ops.abs, ops.maximum, ops.where, ops.ones_like, ops.sum
    mean, rsqrt, reshape, matmul, arange = ops.mean, ops.rsqrt, ops.reshape, ops.matmul, ops.arange
    selection: ClassVar[dict] = {"two_stage": two_stage_top_k, "broadcast": broadcast_top_k}

    @staticmethod
    def concat(xs, axis):
        return ops.concatenate(xs, axis)

    @staticmethod
    def softmax(x):
        return ops.softmax(x, axis=-1)

    @staticmethod
    def bias_add(x, bias):
        return x + bias

    @staticmethod
    def take(x, ids):
        return ops.take(x, ids, axis=0)

    @staticmethod
    def reshape_lead(x, ref, n, tail):
        return ops.reshape(x, tuple(ops.shape(ref)[:n]) + tuple(tail))

    @staticmethod
    def broadcast_user(user, items):
        return ops.broadcast_to(user[:, None, :],
                                (*ops.shape(items)[:2], ops.shape(user)[-1]))

    @staticmethod
    def matmul_t(a, b):
        return ops.matmul(a, ops.transpose(b))

    @staticmethod
    def lookup(store, ids):
        return ops.take(store.table, ids, axis=0)

    @staticmethod
    def batch_mean(store):
        return lambda total, count: total / ops.maximum(count, 1.0)  # LocalValues' mean


def array_namespace():
    """``core.TF`` on the TensorFlow backend, else ``KerasOps``."""
    return core.TF if keras.backend.backend() == "tensorflow" else KerasOps
