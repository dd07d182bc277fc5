"""The two-stage selection through the C++ kernel when it is built, else the stock TF path.

``two_stage_top_k`` has the signature and the results of ``scoring.two_stage_top_k`` (same
slots, same order, same scores, ties to the lower slot id), so the layer never knows which
path ran. The kernel library (``_two_stage_top_k.tf<version>.so`` beside this file, built by
``pip install`` or ``python lmn_tf/memory/ops/build.py``) is loaded once, on first use; if it
is missing or fails to load, one warning says so and the stock path is used from then on.

The path is chosen when a function is traced. Under XLA (``jit_compile=True``) it is always the
stock path: the kernel has no XLA implementation. ``stock_selection()`` forces the stock path
inside its ``with`` block (the TF-Serving export: stock ``tensorflow_model_server`` cannot
load custom ops), and ``LMN_TF_SELECTION_KERNEL=0`` in the environment disables the kernel
for the whole process.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util

from lmn_tf.memory import scoring
from lmn_tf.memory.ops.build import library_name

LIBRARY_PATH = Path(__file__).resolve().parent / library_name(tf.__version__)
OP_NAME = "LmnTwoStageTopK"
ENV_SWITCH = "LMN_TF_SELECTION_KERNEL"

_lock = threading.Lock()
_state: dict = {"loaded": False, "library": None, "warned": False}
_stock = threading.local()  # per thread: a server may trace another model meanwhile


def load_library():
    """The loaded kernel library, or None (missing, failed to load, or disabled)."""
    with _lock:
        if not _state["loaded"]:
            _state["loaded"] = True
            if os.environ.get(ENV_SWITCH, "1") == "0":
                return None  # asked for: no warning
            try:
                _state["library"] = tf.load_op_library(str(LIBRARY_PATH))
            except (tf.errors.NotFoundError, OSError, RuntimeError) as err:
                reason = ("is not built" if not LIBRARY_PATH.exists()
                          else f"failed to load ({str(err).strip()[:300]})")
                _warn_once(f"lmn_tf: the selection kernel {LIBRARY_PATH} {reason}; using the "
                           "stock TensorFlow two-stage top-K (same results, slower). Build it "
                           "with `pip install -e .` or `python lmn_tf/memory/ops/build.py`.")
        return _state["library"]


def _warn_once(message: str) -> None:
    if not _state["warned"]:
        _state["warned"] = True
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def kernel_available() -> bool:
    """True if calls traced now (outside ``stock_selection``) run the C++ kernel."""
    return not getattr(_stock, "depth", 0) and load_library() is not None


@contextlib.contextmanager
def stock_selection() -> Iterator[None]:
    """Inside the block, ``two_stage_top_k`` traces stock TensorFlow ops only."""
    _stock.depth = getattr(_stock, "depth", 0) + 1
    try:
        yield
    finally:
        _stock.depth -= 1


def two_stage_top_k(s_row: tf.Tensor, s_col: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``scoring.two_stage_top_k``: (..., m) row and column scores -> scores, slot ids (..., K).

    The kernel takes float32 scores and a static ``k`` outside XLA; anything else takes the
    stock path.
    """
    s_row, s_col = tf.convert_to_tensor(s_row), tf.convert_to_tensor(s_col)
    if (s_row.dtype != tf.float32 or s_col.dtype != tf.float32 or not isinstance(k, int)
            or _in_xla() or not kernel_available()):
        return scoring.two_stage_top_k(s_row, s_col, k)
    if s_row.shape.rank is not None and s_row.shape.rank < 1:
        raise ValueError(f"scores must have rank >= 1. Received: s_row.shape={s_row.shape}")
    if not s_row.shape.is_compatible_with(s_col.shape):
        raise ValueError("`s_row` and `s_col` must have the same shape. Received: "
                         f"{s_row.shape} and {s_col.shape}")
    m = s_row.shape[-1]
    if k < 1 or (m is not None and k > m):
        raise ValueError(f"`k` must be in [1, m]. Received: k={k}, m={m}")
    return tuple(load_library().lmn_two_stage_top_k(s_row, s_col, k=k))


def _in_xla() -> bool:
    # No public API says whether the graph being traced is a jit_compile function (or
    # inside one); this private helper is what TF's own ops use to pick XLA-friendly code.
    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


@tf.RegisterGradient(OP_NAME)
def _two_stage_top_k_grad(op, d_scores, _):
    """scores = s_row[i] + s_col[j]: each winner's gradient goes to its row and its column.

    The layer's training path never needs this (it selects under stop_gradient and rescores
    the winners); it keeps the inference path differentiable, as with the stock ops.
    """
    s_row, slots = op.inputs[0], op.outputs[1]
    shape = tf.shape(s_row)
    m = shape[-1]
    k = tf.shape(slots)[-1]
    rows = tf.reduce_prod(shape[:-1])
    base = tf.range(rows)[:, None] * m  # (N, 1): row r's scores start at r*m
    flat_slots = tf.reshape(slots, (-1, k))  # (N, K)
    d = tf.reshape(d_scores, (-1,))
    size = rows * m
    d_row = tf.math.unsorted_segment_sum(d, tf.reshape(base + flat_slots // m, (-1,)), size)
    d_col = tf.math.unsorted_segment_sum(d, tf.reshape(base + flat_slots % m, (-1,)), size)
    return tf.reshape(d_row, shape), tf.reshape(d_col, shape)
