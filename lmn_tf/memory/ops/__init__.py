"""The selection custom op: C++ kernel source, its build, and its loader with the fallback."""

from lmn_tf.memory.ops.selection import kernel_available, stock_selection, two_stage_top_k

__all__ = ["kernel_available", "stock_selection", "two_stage_top_k"]
