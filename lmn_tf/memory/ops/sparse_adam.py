"""SparseAdam's step through the C++ kernel (``sparse_adam_op.cc``) when the library loads.

The op sums the repeated rows of an ``IndexedSlices`` gradient and updates m, v and the
table in one pass (no ``tf.unique``, no (R, d) temporaries). Where ``supports`` says no, the
stock path runs instead, which gives the same step up to float rounding.
"""

from __future__ import annotations

import tensorflow as tf

from lmn_tf.memory.ops import selection


def supports(var: tf.Variable, grad: tf.Tensor) -> bool:
    """Whether ``apply`` can step ``var``: the library loads, float32 matrices, no XLA."""
    return (var.dtype == tf.float32 and grad.dtype == tf.float32 and var.shape.rank == 2
            and grad.shape.rank == 2 and not selection._in_xla()
            and selection.kernel_available())


def apply(var: tf.Variable, m: tf.Variable, v: tf.Variable, lr, beta_1, beta_2, epsilon,
          grad: tf.Tensor, indices: tf.Tensor):
    """The kernel's update of ``var``'s rows ``indices`` (repeats summed), where
    ``supports(var, grad)``: the op in a graph, None when run eagerly (it has no outputs)."""
    scalars = [tf.cast(x, tf.float32) for x in (lr, beta_1, beta_2, epsilon)]
    return selection.load_library().lmn_sparse_adam_apply(
        var=var.handle, m=m.handle, v=v.handle, lr=scalars[0], beta1=scalars[1],
        beta2=scalars[2], epsilon=scalars[3], grad=grad, indices=indices)
