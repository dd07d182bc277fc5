"""Product-key top-K: which K of the n = m*m slots a query reads (paper eq. 7-10).

Slot (i, j) has score ``s_row[i] + s_col[j]`` and id ``i*m + j``. Both functions return the
K best slots under one total order, the **tie rule**: higher score first, and among equal
scores the lower slot id first. They agree slot for slot and in the same order.

- ``broadcast_top_k`` is the paper's eq. 9: all n sums, then ``tf.math.top_k`` (which puts
  the lower index, i.e. the lower slot id, first on ties). O(n) per query.
- ``two_stage_top_k`` is exact and O(m + K log K) per query. Rank each axis with
  ``axis_top_k`` (score, then lower index). The pair of the a-th best row and the b-th
  best column (0-based) is ranked below every pair (a' <= a, b' <= b): its sum is no larger,
  and on an equal sum both of its ids are no smaller. So it can only be among the K best if
  (a+1)(b+1) <= K: about K·ln K candidates instead of K² (PKM codes score all K²) or m².
  The last top-K runs on an int64 key that orders (score desc, slot id asc) exactly, since a
  candidate's position no longer follows its slot id.

The per-axis top-K (``axis_top_k``) is ``tf.math.top_k`` below ``BLOCK_MIN_KEYS`` keys and the
exact block-max pruning ``block_top_k`` from there on. TF's CPU TopK pushes every score through
a size-K heap, while a ``reduce_max`` over blocks is a cheap vectorised pass; but pruning adds a
TopK over the block maxima, a sort, a gather and a TopK over the K·b candidates, so on CPU it
only pays from about 2 000 keys (``benchmarks/topk_bench.py``, benchmarks/RESULTS.md).

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
    (row_s, row_id), (col_s, col_id) = axis_top_k(s_row, k), axis_top_k(s_col, k)  # (..., K)
    a, b = _rank_pairs(k)
    cand_s = tf.gather(row_s, a, axis=-1) + tf.gather(col_s, b, axis=-1)  # (..., P)
    cand_id = tf.gather(row_id, a, axis=-1) * m + tf.gather(col_id, b, axis=-1)
    top = tf.math.top_k(_order_key(cand_s, cand_id), k=k).indices  # (..., K)
    return (tf.gather(cand_s, top, batch_dims=batch_dims),  # differentiable w.r.t. s_row, s_col
            tf.gather(cand_id, top, batch_dims=batch_dims))


BLOCK_MIN_KEYS = 2000  # below, plain tf.math.top_k is as fast or faster (topk_bench.py)
BLOCK_SIZE = 8


def axis_top_k(x: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``tf.math.top_k(x, k)`` as (values, indices), pruned by blocks for long static rows."""
    if x.shape[-1] is not None and x.shape[-1] >= BLOCK_MIN_KEYS:
        return block_top_k(x, k, BLOCK_SIZE)
    return tuple(tf.math.top_k(x, k=k))


def block_top_k(x: tf.Tensor, k: int, block: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Exactly ``tf.math.top_k(x, k)``, from the ``k`` best blocks of ``block`` scores.

    Same result, ties included (higher score first, then lower index), for NaN-free ``x`` with a
    static last dimension m >= k. Split the m scores into contiguous blocks (the last one padded
    with -inf at indices >= m) and rank the blocks by their maximum, ties to the lower block.
    Every one of the k best entries lies in one of the k best blocks: if entry e lies in block
    B, each block B' ranked above B holds its maximum entry e', which ranks above e, because
    score(e') = max(B') >= max(B) >= score(e), and on equality B' < B, so index(e') <
    index(e) (blocks are contiguous). Distinct blocks give distinct e', so with k blocks above
    B, k entries would rank above e. The k best blocks are then gathered in ascending block
    order, so a candidate's position follows its index and the stable ``tf.math.top_k`` over
    the k·block candidates keeps the tie rule; padding ranks below every real entry.
    """
    m = x.shape[-1]
    g = -(-m // block)  # blocks
    if g <= k:  # every block would be kept: nothing to prune
        return tuple(tf.math.top_k(x, k=k))
    lead = tf.shape(x)[:-1]
    rows = tf.reshape(x, (-1, m))
    if g * block > m:
        rows = tf.pad(rows, [[0, 0], [0, g * block - m]], constant_values=float("-inf"))
    blocks = tf.reshape(rows, (-1, g, block))  # (N, G, b)
    best = tf.math.top_k(tf.reduce_max(blocks, -1), k=k, sorted=False).indices  # (N, k)
    best = tf.sort(best)  # ascending block order = ascending index order
    cand = tf.reshape(tf.gather(blocks, best, batch_dims=1), (-1, k * block))  # (N, k·b)
    top = tf.math.top_k(cand, k=k)
    ids = tf.gather(best, top.indices // block, batch_dims=1) * block + top.indices % block
    out = tf.concat([lead, [k]], 0)
    return tf.reshape(top.values, out), tf.reshape(ids, out)


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
