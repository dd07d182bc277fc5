"""``MemoryAdam``: the LMN memory's three-rate training recipe as one Keras 3 optimizer.

Keras 3 has no ``CompositeOptimizer``, so this optimizer steps each variable by the part of
the memory it belongs to, which the Keras 3 ``LMNLayer`` marks on its variables (``ROLE``).
Public name: ``lmn_tf.keras3.MemoryAdam``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

ROLE = "_lmn_tf_role"  # attribute naming a memory variable's part: "values" or "addressing"


@keras.saving.register_keras_serializable(package="lmn_tf")
class MemoryAdam(keras.optimizers.Optimizer):
    """Adam with the memory's three rates, for models with Keras 3 ``LMNLayer``s.

    The tf-keras recipe is a ``CompositeOptimizer`` of three (``lmn_tf.memory.LMNLayer``'s
    docstring says why); Keras 3 has none, so this one optimizer steps each variable by its
    part: a layer's value table (``value_variables``) lazily, as ``lmn_tf.memory.SparseAdam``
    does (only the rows read get a step and move their moments), at ``values_learning_rate``;
    its query MLPs and keys (``addressing_variables``) at ``addressing_learning_rate``; every
    other variable at ``learning_rate``. With ``decay_steps`` the two Adam rates (addressing
    and the rest) decay to 0 on a cosine over that many steps while the values' rate stays,
    as in the tf-keras recipe (``CosineDecay`` on both Adams). On TensorFlow a value step
    costs O(rows read) (the gradient is a ``tf.IndexedSlices``); on JAX and PyTorch, whose
    gradients are dense, it costs O(n) and a row counts as read where its gradient is not
    zero.

    Args:
      learning_rate: the rest of the model's rate (a float, or a schedule without
        ``decay_steps``).
      values_learning_rate: the value tables' rate, constant.
      addressing_learning_rate: the query MLPs' and keys' rate.
      decay_steps: the run's training steps: cosine decay of the Adam rates to 0 over
        them (``CosineDecay(rate, decay_steps)``); None keeps them constant.
      beta_1, beta_2, epsilon: as in Adam.
      **kwargs: base optimizer arguments (``name``, ``clipnorm``, ...).

    Example:

    >>> opt = MemoryAdam(1e-3, values_learning_rate=0.03, addressing_learning_rate=1e-4)
    >>> opt.get_config()["values_learning_rate"]
    0.03
    """

    def __init__(self, learning_rate=1e-3, values_learning_rate: float = 0.03,
                 addressing_learning_rate: float = 1e-4, decay_steps: int | None = None,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 name: str = "memory_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        for arg, rate in (("values_learning_rate", values_learning_rate),
                          ("addressing_learning_rate", addressing_learning_rate)):
            if not rate >= 0:
                raise ValueError(f"`{arg}` must be >= 0. Received: {arg}={rate!r}")
        if decay_steps is not None and (not isinstance(decay_steps, int) or decay_steps <= 0):
            raise ValueError("`decay_steps` must be a positive int or None. "
                             f"Received: decay_steps={decay_steps!r}")
        self.values_learning_rate = float(values_learning_rate)
        self.addressing_learning_rate = float(addressing_learning_rate)
        self.decay_steps = decay_steps
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._roles = [getattr(v, ROLE, None) for v in var_list]
        self._momentums = [self.add_variable_from_reference(v, "momentum") for v in var_list]
        self._velocities = [self.add_variable_from_reference(v, "velocity") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        i = self._get_variable_index(variable)
        role, m, v = self._roles[i], self._momentums[i], self._velocities[i]
        rate = {"values": self.values_learning_rate,
                "addressing": self.addressing_learning_rate}.get(role, learning_rate)
        dtype = variable.dtype
        if role != "values" and self.decay_steps:  # CosineDecay(rate, decay_steps), alpha 0
            done = ops.minimum(ops.cast(self.iterations, "float32"), float(self.decay_steps))
            rate = rate * 0.5 * (1 + ops.cos(np.pi * done / self.decay_steps))
        t = ops.cast(self.iterations + 1, dtype)
        b1, b2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        alpha = ops.cast(rate, dtype) * ops.sqrt(1 - ops.power(b2, t)) / (1 - ops.power(b1, t))
        if role == "values":
            return self._lazy_step(gradient, variable, m, v, alpha, b1, b2)
        gradient = _dense_gradient(gradient)
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - b1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - b2))
        self.assign_sub(variable, ops.divide(ops.multiply(m, alpha),
                                             ops.add(ops.sqrt(v), self.epsilon)))

    def _lazy_step(self, gradient, variable, m, v, alpha, b1, b2):
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if isinstance(gradient, tf.IndexedSlices):
                # Keras 3 does not sum repeated rows first (tf-keras' optimizers do).
                rows, pos = tf.unique(gradient.indices)
                g = tf.math.unsorted_segment_sum(gradient.values, pos, tf.shape(rows)[0])
                m_rows = b1 * tf.gather(m, rows) + (1 - b1) * g
                v_rows = b2 * tf.gather(v, rows) + (1 - b2) * g**2
                step = alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon)
                self.assign(m, tf.IndexedSlices(m_rows, rows))
                self.assign(v, tf.IndexedSlices(v_rows, rows))
                self.assign_sub(variable, tf.IndexedSlices(step, rows))
                return
        read = ops.any(ops.not_equal(gradient, 0), axis=-1, keepdims=True)  # rows read
        m_old, v_old = ops.convert_to_tensor(m), ops.convert_to_tensor(v)  # where: no Variable
        m_new = ops.where(read, b1 * m_old + (1 - b1) * gradient, m_old)
        v_new = ops.where(read, b2 * v_old + (1 - b2) * ops.square(gradient), v_old)
        self.assign(m, m_new)
        self.assign(v, v_new)
        self.assign_sub(variable, ops.where(read, alpha * m_new / (ops.sqrt(v_new)
                                                                    + self.epsilon), 0.0))

    def get_config(self):
        config = super().get_config()
        config.update({"values_learning_rate": self.values_learning_rate,
                       "addressing_learning_rate": self.addressing_learning_rate,
                       "decay_steps": self.decay_steps,
                       "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config


def _dense_gradient(gradient):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if isinstance(gradient, tf.IndexedSlices):  # e.g. an embedding outside the memory
            return tf.convert_to_tensor(gradient)
    return gradient
