"""SparseAdam: Adam that updates only the value rows a step reads (PKM's value optimizer)."""

from __future__ import annotations

import tensorflow as tf

from lmn_tf.memory.ops import sparse_adam


@tf.keras.utils.register_keras_serializable(package="lmn_tf")
class SparseAdam(tf.keras.optimizers.legacy.Adam):
    """Adam whose sparse step touches only the rows in the gradient ("lazy" Adam).

    For a ``tf.IndexedSlices`` gradient, only the rows read this step get their moments
    and values updated; the others keep theirs, untouched (tf-keras' Adam instead decays
    every row's moments, an O(n) step on an n-row table). Dense gradients take Adam's step.
    A row's step is about ``learning_rate`` per coordinate whatever the gradient's scale, and
    stays so however often the row was read, so values keep pace with addresses that move;
    Adagrad's step shrinks with every read. PyTorch's ``SparseAdam`` and PKM's value
    optimizer (facebookresearch/XLM) work this way.

    Args:
      learning_rate: the step per coordinate of a row read with a steady gradient.
      beta_1, beta_2, epsilon: as in Adam.
      **kwargs: base optimizer arguments (``name``, ``clipnorm``, ...).

    Example:

    >>> table = tf.Variable(tf.zeros((4, 2)))
    >>> opt = SparseAdam(0.1)
    >>> with tf.GradientTape() as tape:
    ...     loss = tf.reduce_sum(tf.gather(table, [1, 1, 3]))
    >>> _ = opt.apply_gradients([(tape.gradient(loss, table), table)])
    >>> table.numpy()[:, 0].astype(float).round(3).tolist()  # rows 0 and 2 were not read
    [0.0, -0.1, 0.0, -0.1]
    """

    def __init__(self, learning_rate: float = 1e-3, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, name: str = "SparseAdam",
                 **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, amsgrad=False, name=name, **kwargs)

    def _resource_apply_sparse_duplicate_indices(self, grad, handle, indices, **kwargs):
        # The C++ step sums the repeated rows itself; without it, OptimizerV2 sums them
        # (tf.unique + unsorted_segment_sum) and calls _resource_apply_sparse below.
        if not sparse_adam.supports(handle, grad):
            return super()._resource_apply_sparse_duplicate_indices(grad, handle, indices,
                                                                    **kwargs)
        c = self._coefficients(handle, kwargs.get("apply_state"))
        return sparse_adam.apply(handle, self.get_slot(handle, "m"), self.get_slot(handle, "v"),
                                 c["lr"], c["beta_1_t"], c["beta_2_t"], c["epsilon"], grad,
                                 indices)

    def _coefficients(self, var, apply_state):
        device, dtype = var.device, var.dtype.base_dtype
        return (apply_state or {}).get((device, dtype)) or self._fallback_apply_state(device,
                                                                                      dtype)

    def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
        # Indices arrive deduplicated (OptimizerV2 sums repeated rows first).
        c = self._coefficients(var, apply_state)
        m, v = self.get_slot(var, "m"), self.get_slot(var, "v")
        m_rows = c["beta_1_t"] * tf.gather(m, indices) + c["one_minus_beta_1_t"] * grad
        v_rows = c["beta_2_t"] * tf.gather(v, indices) + c["one_minus_beta_2_t"] * tf.square(grad)
        step = c["lr"] * m_rows / (tf.sqrt(v_rows) + c["epsilon"])  # lr: bias-corrected
        return tf.group(
            m.scatter_update(tf.IndexedSlices(m_rows, indices)),
            v.scatter_update(tf.IndexedSlices(v_rows, indices)),
            var.scatter_sub(tf.IndexedSlices(step, indices)))

    def get_config(self):
        config = super().get_config()
        config.pop("amsgrad", None)
        return config
