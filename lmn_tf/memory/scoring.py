"""Product-key top-K: which K of the n = m*m slots a query reads (paper eq. 7-10).

Slot (i, j) has score ``s_row[i] + s_col[j]`` and id ``i*m + j``. Both functions return the
K best slots under one total order, the **tie rule**: higher score first, and among equal
scores the lower slot id first. They agree slot for slot and in the same order.

- ``broadcast_top_k`` is the paper's eq. 9: all n sums, then ``tf.math.top_k`` (which puts
  the lower index, i.e. the lower slot id, first on ties). O(n) per query.
- ``two_stage_top_k`` is exact and O(m + K log K) per query. Rank each axis with
  ``tf.math.top_k`` (score, then lower index). The pair of the a-th best row and the b-th
  best column (0-based) is ranked below every pair (a' <= a, b' <= b): its sum is no larger,
  and on an equal sum both of its ids are no smaller. So it can only be among the K best if
  (a+1)(b+1) <= K: about K·ln K candidates instead of K² (PKM codes score all K²) or m².
  The last top-K runs on an int64 key that orders (score desc, slot id asc) exactly, since a
  candidate's position no longer follows its slot id.

One limit of floating point, shared by any scheme that does not look at all n sums: if
``s_row[a] > s_row[b]`` by less than half an ulp of the sum, ``fl(s_row[a] + c)`` can equal
``fl(s_row[b] + c)``; the broadcast then breaks that tie by slot id, while the two-stage path
ranks row a first. Outputs then differ only in which of two slots with equal computed scores
is read. With exactly representable sums (as in the tests) they never differ.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def broadcast_top_k(s_row: tf.Tensor, s_col: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Top-K over all m*m sums. ``s_row``, ``s_col``: (..., m) -> scores, slot ids (..., K)."""
    m = tf.shape(s_row)[-1]
    scores = s_row[..., :, None] + s_col[..., None, :]  # (..., m, m)
    flat = tf.reshape(scores, tf.concat([tf.shape(s_row)[:-1], [m * m]], 0))
    top = tf.math.top_k(flat, k=k)  # flat position i*m + j is the slot id
    return top.values, top.indices


def two_stage_top_k(s_row: tf.Tensor, s_col: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Exact top-K from ~K·ln K candidates. ``s_row``, ``s_col``: (..., m) -> (..., K) twice."""
    m = tf.shape(s_row)[-1]
    batch_dims = len(s_row.shape) - 1
    row, col = tf.math.top_k(s_row, k=k), tf.math.top_k(s_col, k=k)  # (..., K) in rank order
    a, b = _rank_pairs(k)
    cand_s = tf.gather(row.values, a, axis=-1) + tf.gather(col.values, b, axis=-1)  # (..., P)
    cand_id = tf.gather(row.indices, a, axis=-1) * m + tf.gather(col.indices, b, axis=-1)
    top = tf.math.top_k(_order_key(cand_s, cand_id), k=k).indices  # (..., K)
    return (tf.gather(cand_s, top, batch_dims=batch_dims),  # differentiable w.r.t. s_row, s_col
            tf.gather(cand_id, top, batch_dims=batch_dims))


def _rank_pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column ranks (a, b) with (a+1)(b+1) <= k: the only pairs that can win."""
    pairs = [(a, b) for a in range(k) for b in range(k // (a + 1))]
    return np.array(pairs, np.int32).T


def _order_key(scores: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
    """int64 whose descending order is (score descending, id ascending)."""
    s = tf.cast(scores, tf.float32)
    s = tf.where(s == 0.0, tf.zeros_like(s), s)  # -0.0 == +0.0 but their bits differ
    bits = tf.bitcast(s, tf.int32)
    bits = tf.where(bits < 0, tf.bitwise.bitwise_xor(bits, 0x7FFFFFFF), bits)  # float order
    return tf.cast(bits, tf.int64) * 2**32 + (2**32 - 1 - tf.cast(ids, tf.int64))


SCORING = {"broadcast": broadcast_top_k, "two_stage": two_stage_top_k}
