"""LMNLayer for Keras 3 (``import keras``): the tf-keras layer's twin over the same math.

``lmn_tf.memory.core`` holds the math; this module holds only the Keras 3 plumbing (weights,
config, ``add_loss``). The array namespace of the JAX and PyTorch backends is in
``keras3_ops``, the training recipe (``MemoryAdam``) in ``keras3_optimizer``. On the
TensorFlow backend the layer runs ``core`` over TensorFlow ops, exactly as the tf-keras layer
does: the C++ selection kernel, and a ``tf.IndexedSlices`` gradient for the value table.
Public names: ``lmn_tf.keras3``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence

import keras

from lmn_tf.memory import core
from lmn_tf.memory.keras3_ops import array_namespace
from lmn_tf.memory.keras3_optimizer import ROLE
from lmn_tf.memory.ops import stock_selection
from lmn_tf.memory.values import LocalValues, ValueStore


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
    >>> from lmn_tf.keras3 import LMNLayer, MemoryAdam
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
