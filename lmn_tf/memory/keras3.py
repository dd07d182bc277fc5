"""LMNLayer for Keras 3 (``import keras``): the tf-keras layer's twin over the same math.

``lmn_tf.memory.core`` holds the math; this module holds only the Keras 3 plumbing (weights,
config, ``add_loss``), the ``keras.ops`` array namespace for the JAX and PyTorch backends, and
``MemoryAdam``, the memory's three-rate optimizer recipe as one Keras 3 optimizer. On the
TensorFlow backend the layer runs ``core`` over TensorFlow ops, exactly as the tf-keras layer
does: the C++ selection kernel, and a ``tf.IndexedSlices`` gradient for the value table.
Public names: ``lmn_tf.keras3``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from lmn_tf.memory import core
from lmn_tf.memory.ops import stock_selection
from lmn_tf.memory.scoring import _rank_pairs
from lmn_tf.memory.values import LocalValues, ValueStore

ROLE = "_lmn_tf_role"  # attribute naming a memory variable's part: "values" or "addressing"


# --- keras.ops: the array namespace of the JAX and PyTorch backends ---------------------------

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


def _exporting() -> bool:
    """True while Keras' ``model.export`` (or ``tf.saved_model.save``) traces a function.

    Stock TF-Serving cannot load the selection kernel, so an export must trace the stock
    ops. Keras traces the endpoints inside ``ExportArchive.write_out`` and sets no flag, so
    look for it on the stack; this runs only when a graph is traced, never per step.
    """
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if owner is not None and any(c.__name__.endswith("ExportArchive")
                                     for c in type(owner).__mro__):
            return True
        frame = frame.f_back
    from tensorflow.python.saved_model import save_context  # no public API says it

    return save_context.in_save_context()


def _fresh(init):
    # One initializer instance per weight, as in the tf-keras layer (row and column keys,
    # same-shaped query MLPs must not start identical).
    return init.__class__.from_config(init.get_config())


@keras.saving.register_keras_serializable(package="lmn_tf")
class LMNLayer(keras.layers.Layer):
    """User-aware product-key memory read per behaviour item, for Keras 3.

    The Keras 3 twin of ``lmn_tf.memory.LMNLayer`` (tf-keras): the same arguments,
    defaults, checks, ``get_config``, weights and math (``lmn_tf.memory.core``, called by
    both), so the two give equal outputs and gradients on equal weights. Its docstring
    describes the memory; the differences are Keras 3's:

    - Backends: on TensorFlow the layer runs TensorFlow ops, with the C++ selection kernel
      and a ``tf.IndexedSlices`` gradient for the value table (sparse). On JAX and PyTorch
      it runs ``keras.ops`` with the backend's stock top-K; value gradients are dense there,
      and ``value_store`` must be ``LocalValues``.
    - Training recipe: ``MemoryAdam`` (one optimizer: values lazily at 0.03, addressing at
      1e-4, the rest at ``learning_rate``, the Adam rates decaying over ``decay_steps``),
      instead of a ``CompositeOptimizer``.
    - The memory loss is added with ``add_loss`` (part of ``fit``'s loss) but not reported
      as a ``memory_loss`` metric: Keras 3 layers cannot add metrics in ``call``.
    - ``model.export(path)`` traces the stock selection ops (stock TF-Serving cannot load
      the kernel); so does anything inside ``lmn_tf.memory.ops.stock_selection()``.

    Args:
      num_keys: keys per axis, √n; the memory has ``num_keys**2`` slots.
      top_k, num_heads, key_dim, value_dim, query_hidden_units, head_hidden_units,
        activation, memory_loss_weight, memory_loss_stop_gradient, scoring, value_store,
        query_norm, addressing, kernel_initializer, key_initializer, value_initializer:
        as in ``lmn_tf.memory.LMNLayer`` (README, "LMNLayer arguments").
      **kwargs: base ``Layer`` arguments (``name``, ``dtype``, ...).

    Call arguments: ``items`` (B, L, d), ``user`` (B, d_u), ``mask`` (B, L) bool,
    ``training``, ``return_slots``: as in ``lmn_tf.memory.LMNLayer``.

    Example:

    >>> import keras, numpy as np
    >>> items, user = keras.Input((50, 32)), keras.Input((16,))
    >>> out = LMNLayer(num_keys=32, top_k=8)(items, user)
    >>> model = keras.Model([items, user], out)
    >>> model.compile(optimizer=MemoryAdam(1e-3), loss="mse")
    >>> x = [np.random.rand(4, 50, 32), np.random.rand(4, 16)]
    >>> model.fit(x, np.zeros((4, 50, 32)), verbose=0).history["loss"][0] > 0
    True
    >>> tuple(model.predict(x, verbose=0).shape)
    (4, 50, 32)
    """

    def __init__(self, num_keys: int, top_k: int = 32, num_heads: int = 4, key_dim: int = 32,
                 value_dim: int | None = None, query_hidden_units: Sequence[int] = (),
                 head_hidden_units: Sequence[int] = (), activation: str = "relu",
                 memory_loss_weight: float = 0.1, memory_loss_stop_gradient: str = "none",
                 scoring: str = "two_stage", value_store: ValueStore | None = None,
                 query_norm: bool = True, addressing: str = "learned",
                 kernel_initializer="glorot_uniform",
                 key_initializer=None, value_initializer=None, **kwargs):
        super().__init__(**kwargs)
        core.check_arguments(num_keys, top_k, num_heads, key_dim, value_dim,
                             query_hidden_units, head_hidden_units, memory_loss_weight,
                             memory_loss_stop_gradient, scoring, addressing)
        value_store = LocalValues() if value_store is None else value_store
        if not isinstance(value_store, ValueStore):
            raise ValueError("`value_store` must be a ValueStore. "
                             f"Received: value_store={value_store!r}")
        self._ops = array_namespace()
        if self._ops is not core.TF and type(value_store) is not LocalValues:
            raise ValueError("Off the TensorFlow backend `value_store` must be LocalValues "
                             f"(backend {keras.backend.backend()!r}). "
                             f"Received: value_store={value_store!r}")
        self.num_keys, self.top_k, self.num_heads = num_keys, top_k, num_heads
        self.key_dim, self.value_dim = key_dim, value_dim
        self.query_hidden_units = tuple(query_hidden_units)
        self.head_hidden_units = tuple(head_hidden_units)
        self.activation = keras.activations.get(activation)
        self.memory_loss_weight = float(memory_loss_weight)
        self.memory_loss_stop_gradient, self.scoring = memory_loss_stop_gradient, scoring
        self.value_store = value_store
        self.query_norm = bool(query_norm)
        self.addressing = addressing
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.key_initializer = key_initializer and keras.initializers.get(key_initializer)
        self.value_initializer = value_initializer and keras.initializers.get(
            value_initializer)
        self.supports_masking = True

    @property
    def num_slots(self) -> int:
        return self.num_keys**2

    @property
    def value_variables(self) -> list:
        """The value store's trainable variables (empty until built)."""
        return list(getattr(self, "_value_variables", []))

    @property
    def addressing_variables(self) -> list:
        """The trainable query MLPs and keys (empty until built)."""
        values = {id(v) for v in self.value_variables}
        return [v for v in self.trainable_variables if id(v) not in values]

    def _mlp(self, hidden: Sequence[int], out: int, name: str, width: int) -> list:
        dense = [keras.layers.Dense(u, self.activation, name=f"{name}_{i}",
                                    kernel_initializer=_fresh(self.kernel_initializer))
                 for i, u in enumerate(hidden)]
        dense.append(keras.layers.Dense(out, name=f"{name}_out",
                                        kernel_initializer=_fresh(self.kernel_initializer)))
        for layer in dense:  # built here: Keras 3 creates no weights inside `call`
            layer.build((None, width))
            layer.trainable = self.addressing != "fixed"
            width = layer.units
        return dense

    def build(self, items_shape, user_shape=None):
        core.check_items_shape(items_shape)
        if user_shape is None or len(user_shape) != 2 or user_shape[-1] is None:
            raise ValueError("`user` must have shape (B, d_u) with known d_u. "
                             f"Received: user.shape={user_shape}")
        d, d_u = int(items_shape[-1]), int(user_shape[-1])
        self._widths = {"items": d, "user": d_u}
        d_v = self.value_dim or d
        h, m, d_k = self.num_heads, self.num_keys, self.key_dim
        self.query_layers = self._mlp(self.query_hidden_units, d_v, "user_aware", d + d_u)
        self.row_query_layers = self._mlp(self.head_hidden_units, h * d_k, "row_query", d_v)
        self.col_query_layers = self._mlp(self.head_hidden_units, h * d_k, "col_query", d_v)
        key_init = self.key_initializer or keras.initializers.RandomUniform(
            -(d_k**-0.5), d_k**-0.5)
        self.row_keys = self.add_weight(name="row_keys", shape=(h, m, d_k),
                                        trainable=self.addressing == "learned",
                                        initializer=_fresh(key_init))
        self.col_keys = self.add_weight(name="col_keys", shape=(h, m, d_k),
                                        trainable=self.addressing == "learned",
                                        initializer=_fresh(key_init))
        if self.query_norm:
            self.query_moments = {
                f"{axis}_{stat}": self.add_weight(name=f"{axis}_query_moving_{stat}",
                                              shape=(h * d_k,), trainable=False,
                                              initializer="zeros" if stat == "mean" else "ones")
                for axis in ("row", "col") for stat in ("mean", "variance")}
        before = {id(w) for w in self.trainable_weights}
        self.value_store.build(self, self.num_slots, d_v, self.value_initializer
                               or keras.initializers.RandomNormal(stddev=d_v**-0.5))
        self._value_variables = [w for w in self.trainable_weights if id(w) not in before]
        for role, variables in (("values", self._value_variables),
                                ("addressing", self.addressing_variables)):
            for v in variables:  # read by MemoryAdam
                setattr(v, ROLE, role)
        self.built = True

    def call(self, items, user, mask=None, training=None, return_slots=False):
        xp = self._ops
        core.check_inputs(items.shape, user.shape, None if mask is None else mask.shape,
                          self._widths)
        items, user = xp.cast(items, self.compute_dtype), xp.cast(user, self.compute_dtype)
        if self.addressing == "fixed":  # the inputs only address: nothing may move them
            items, user = xp.stop_gradient(items), xp.stop_gradient(user)
        keep = None if mask is None else xp.cast(mask, "bool")
        stock = xp is core.TF and not _executing_eagerly() and _exporting()
        with stock_selection() if stock else contextlib.nullcontext():
            if not training:  # inference (predict, evaluate, export, plain calls)
                m_q, scores, slots = core.select_inference(
                    xp, self.scoring, items, user, self.query_layers, self.row_query_layers,
                    self.col_query_layers, self.row_keys, self.col_keys,
                    self.query_moments if self.query_norm else None, self.top_k,
                    self.num_heads, self.num_keys, self.key_dim)
            else:
                m_q, scores, slots = self._select(xp, items, user, keep, training)
        m_o, slots = core.read_out(xp, scores, slots,
                                   lambda ids: xp.lookup(self.value_store, ids), keep,
                                   self.num_heads)
        # In every mode, as in the tf-keras layer (evaluate's loss includes it).
        if self.memory_loss_weight > 0:
            loss = core.memory_loss(xp, m_o, xp.cast(m_q, xp.float32), keep,
                                    self.memory_loss_stop_gradient, xp.batch_mean(self.value_store))
            self.add_loss(self.memory_loss_weight * loss)
        m_o = xp.cast(m_o, self.compute_dtype)
        return (m_o, slots) if return_slots else m_o

    def _select(self, xp, items, user, keep, training):
        m_q = _apply(self.query_layers, core.user_aware_inputs(xp, items, user))
        q_row = self._queries(xp, self.row_query_layers, m_q, "row", keep, training)
        q_col = self._queries(xp, self.col_query_layers, m_q, "col", keep, training)
        scores, slots = core.select(xp, self.scoring, q_row, q_col, self.row_keys,
                                    self.col_keys, self.top_k, self.num_heads, self.num_keys,
                                    self.key_dim)
        return m_q, scores, slots

    def _queries(self, xp, layers, m_q, axis, keep, training):
        q = _apply(layers, m_q)  # (B, L, H·d_k)
        if self.query_norm:
            mean, variance = (self.query_moments[f"{axis}_{s}"] for s in ("mean", "variance"))
            q, updates = core.normalize(xp, q, mean, variance, keep, training)
            if updates is not None:
                mean.assign(updates[0])
                variance.assign(updates[1])
        return core.split_heads(xp, q, self.num_heads, self.key_dim)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_spec(self, items, user, mask=None, training=None, return_slots=False):
        d_v = self.value_dim or items.shape[-1]
        out = keras.KerasTensor((*items.shape[:2], d_v), dtype=self.compute_dtype)
        if not return_slots:
            return out
        return out, keras.KerasTensor((*items.shape[:2], self.num_heads, self.top_k),
                                      dtype="int32")

    def get_config(self):
        import tensorflow as tf  # the store's registry is tf-keras' (the same config)

        return {**super().get_config(),
                **core.layer_config(self, keras.initializers.serialize,
                                    keras.activations.serialize,
                                    tf.keras.utils.serialize_keras_object)}

    @classmethod
    def from_config(cls, config):
        import tensorflow as tf

        config = dict(config)
        if isinstance(config.get("value_store"), dict):
            config["value_store"] = tf.keras.utils.deserialize_keras_object(config["value_store"])
        return cls(**config)


def _apply(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def _executing_eagerly() -> bool:
    import tensorflow as tf

    return tf.executing_eagerly()


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


