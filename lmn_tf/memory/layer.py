"""LMNLayer: the Large Memory Network's memory block as one Keras layer (paper eq. 4-12)."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from lmn_tf.memory import core
from lmn_tf.memory.core import ADDRESSING, SELECTION, STOP_GRADIENT, TF
from lmn_tf.memory.values import LocalValues, ValueStore

__all__ = ["ADDRESSING", "SELECTION", "STOP_GRADIENT", "LMNLayer"]  # the math: core.py


def _fresh(init: tf.keras.initializers.Initializer) -> tf.keras.initializers.Initializer:
    # An unseeded tf-keras initializer instance repeats its values: row and column keys (and
    # same-shaped query MLPs) would start identical.
    return init.__class__.from_config(init.get_config())


def _dense(mlp: tf.keras.Sequential) -> list[tf.keras.layers.Dense]:
    # A Sequential revived from a SavedModel also lists its InputLayer.
    return [layer for layer in mlp.layers if isinstance(layer, tf.keras.layers.Dense)]


@tf.keras.utils.register_keras_serializable(package="lmn_tf")
class LMNLayer(tf.keras.layers.Layer):
    """User-aware product-key memory read per behaviour item, with the memory loss.

    For every item x of user u: ``M_Q = MLP(concat(x, u))``; per head, row and column queries
    (MLPs of ``M_Q``) score the ``num_keys`` row and column keys; the top-K of the
    ``num_keys²`` slot scores ``s_row[i] + s_col[j]`` (slot id ``i·num_keys + j``) are
    softmax-weighted over their value rows; heads are averaged. The memory loss
    ``SmoothL1(M_O, M_Q)`` over unmasked items is added with ``add_loss`` (times
    ``memory_loss_weight``) and reported, unweighted, as the metric ``memory_loss``.

    Ties between equal scores go to the lower slot id, identically in both scoring modes
    (see ``lmn_tf.memory.scoring``). Selection has no gradient; the K winners' scores are
    recomputed from their gathered keys, so the backward pass does not grow with √n.

    Train it with three rates. Values are read only through ``value_store.lookup``, so their
    gradient is a ``tf.IndexedSlices``: give ``value_variables`` ``SparseAdam`` (a step only
    for the rows read; a dense optimizer makes every step cost O(n)) at a high constant rate,
    so a value is written within a few reads; give ``addressing_variables`` (query MLPs,
    keys) a slow Adam, so the slots an input reads move slower than its values are written;
    and decay the Adam rates (the rest of the model's too) to 0 over the run, so the inputs
    stop drifting and the last writes are read back. With one constant rate for all, the
    addresses drift while the values are written and the memory stores little (README, "Does
    the memory memorise?"). Recipe (``lmn_tf.train.make_optimizer`` does this for the
    ranking models)::

        def rest():  # called at apply time, after the layer is built
            memory = {v.ref() for v in layer.trainable_variables}
            return [v for v in model.trainable_variables if v.ref() not in memory]

        def cosine(rate):  # steps: the whole run's training steps
            return tf.keras.optimizers.schedules.CosineDecay(rate, steps)

        tfrs.experimental.optimizers.CompositeOptimizer([
            (lmn_tf.memory.SparseAdam(0.03), lambda: layer.value_variables),
            (tf.keras.optimizers.legacy.Adam(cosine(1e-4)), lambda: layer.addressing_variables),
            (tf.keras.optimizers.legacy.Adam(cosine(1e-3)), rest)])

    Args:
      num_keys: keys per axis, √n; the memory has ``num_keys**2`` slots.
      top_k: slots read per head and item, ``1 <= top_k <= num_keys``.
      num_heads: heads, each with its own queries and keys over the shared values.
      key_dim: width of queries and keys.
      value_dim: width d_v of ``M_Q``, of the values and of the output. Defaults to the
        item width d.
      query_hidden_units: hidden widths of the user-aware block MLP (eq. 4); its output
        layer (width d_v) is linear.
      head_hidden_units: hidden widths of the row and column query MLPs (eq. 5-6).
      activation: activation of the hidden layers.
      memory_loss_weight: alpha of eq. 12. 0 makes the layer lookup-only (no loss, no metric).
      memory_loss_stop_gradient: ``"none"`` (paper: both sides learn), ``"query"`` (M_Q is
        a fixed target, only the memory moves) or ``"readout"`` (only M_Q moves).
      scoring: ``"two_stage"`` (exact, O(√n + K²) per query) or ``"broadcast"`` (the
        paper's eq. 9, O(n) per query and B·L·H·n floats of memory).
      value_store: where value rows live; default ``LocalValues()``. One store per layer.
      query_norm: standardise each row/column query dimension over the batch's unmasked
        items (PKM's query BatchNorm, without affine, padding left out; moving averages
        when not training), so queries spread over the keys instead of collapsing as their
        inputs grow.
      addressing: ``"learned"`` (paper: queries and keys learn end to end), ``"fixed_keys"``
        (the keys keep their random start while the queries learn, so no key becomes a hub)
        or ``"fixed"`` (query MLPs and keys keep their random start and no gradient reaches
        ``items`` or ``user`` through the memory: only the values learn).
      kernel_initializer: initializer of the MLP kernels.
      key_initializer: default uniform(±key_dim**-0.5), as in PKM.
      value_initializer: default normal(0, value_dim**-0.5), as in PKM.
      **kwargs: base ``Layer`` arguments (``name``, ``dtype``, ...).

    Call arguments:
      items: (B, L, d) behaviour-item embeddings.
      user: (B, d_u) user features.
      mask: optional (B, L) bool, False for padded items.
      training: with ``query_norm``, True uses (and updates the moving averages with) the
        batch's query moments; the memory loss is added in every mode. False or None
        (``predict``, ``evaluate``, the serving export, plain calls) takes a leaner inference
        path: the same read-out up to float rounding, but gradients taken through it cost
        O(√n) per query instead of O(K), so train with ``training=True``.
      return_slots: also return the (B, L, H, K) int32 slot ids read, -1 for padded items,
        for ``lmn_tf.memory.diagnostics``.

    Returns:
      (B, L, d_v) read-out ``M_O`` (zeros for padded items), or ``(M_O, slots)``.

    Raises:
      ValueError: on a non-positive size, ``top_k > num_keys``, an unknown mode or store,
        or inputs of the wrong rank or mismatched batch/sequence sizes.

    Example:

    >>> layer = LMNLayer(num_keys=4, top_k=2, num_heads=2, key_dim=8)
    >>> items = tf.random.normal((3, 5, 16))  # (B, L, d)
    >>> user = tf.random.normal((3, 6))  # (B, d_u)
    >>> mask = tf.sequence_mask([5, 2, 0], 5)  # user 1 has 2 items, user 2 none
    >>> out, slots = layer(items, user, mask=mask, return_slots=True)
    >>> out.shape, slots.shape
    (TensorShape([3, 5, 16]), TensorShape([3, 5, 2, 2]))
    >>> float(tf.reduce_sum(tf.abs(out[1, 2:]))), int(tf.reduce_max(slots[2]))
    (0.0, -1)
    >>> layer.value_variables[0].shape, len(layer.losses)
    (TensorShape([16, 16]), 1)
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
        self.num_keys, self.top_k, self.num_heads = num_keys, top_k, num_heads
        self.key_dim, self.value_dim = key_dim, value_dim
        self.query_hidden_units = tuple(query_hidden_units)
        self.head_hidden_units = tuple(head_hidden_units)
        self.activation = tf.keras.activations.get(activation)
        self.memory_loss_weight = float(memory_loss_weight)
        self.memory_loss_stop_gradient, self.scoring = memory_loss_stop_gradient, scoring
        self.value_store = value_store
        self.query_norm = bool(query_norm)
        self.addressing = addressing
        self.kernel_initializer = tf.keras.initializers.get(kernel_initializer)
        self.key_initializer = key_initializer and tf.keras.initializers.get(key_initializer)
        self.value_initializer = value_initializer and tf.keras.initializers.get(
            value_initializer)
        self.supports_masking = True

    @property
    def num_slots(self) -> int:
        return self.num_keys**2

    @property
    def value_variables(self) -> list[tf.Variable]:
        """The value store's trainable variables (empty until built): for a sparse optimizer."""
        return list(getattr(self, "_value_variables", []))

    @property
    def addressing_variables(self) -> list[tf.Variable]:
        """The trainable query MLPs and keys (empty until built): for a slow optimizer."""
        values = {id(v) for v in self.value_variables}
        return [v for v in self.trainable_variables if id(v) not in values]

    def _mlp(self, hidden: Sequence[int], out: int, name: str) -> tf.keras.Sequential:
        dense = [tf.keras.layers.Dense(u, self.activation, name=f"{name}_{i}",
                                       kernel_initializer=_fresh(self.kernel_initializer))
                 for i, u in enumerate(hidden)]
        dense.append(tf.keras.layers.Dense(out, name=f"{name}_out",
                                           kernel_initializer=_fresh(self.kernel_initializer)))
        return tf.keras.Sequential(dense, name=name)

    def build(self, input_shape):
        core.check_items_shape(input_shape)
        self._widths = {"items": int(input_shape[-1]), "user": None}  # user: set on first call
        d_v = self.value_dim or int(input_shape[-1])
        h, m, d_k = self.num_heads, self.num_keys, self.key_dim
        self.query_mlp = self._mlp(self.query_hidden_units, d_v, "user_aware")
        self.row_query_mlp = self._mlp(self.head_hidden_units, h * d_k, "row_query")
        self.col_query_mlp = self._mlp(self.head_hidden_units, h * d_k, "col_query")
        fixed = self.addressing == "fixed"
        for mlp in (self.query_mlp, self.row_query_mlp, self.col_query_mlp):
            mlp.trainable = not fixed
        key_init = self.key_initializer or tf.keras.initializers.RandomUniform(
            -(d_k**-0.5), d_k**-0.5)
        self.row_keys = self.add_weight(name="row_keys", shape=(h, m, d_k),
                                        trainable=self.addressing == "learned",
                                        initializer=_fresh(key_init))
        self.col_keys = self.add_weight(name="col_keys", shape=(h, m, d_k),
                                        trainable=self.addressing == "learned",
                                        initializer=_fresh(key_init))
        if self.query_norm:  # moving moments of the row and column queries, per dimension
            self.query_moments = {  # string keys: Keras tracks (and checkpoints) the dict
                f"{axis}_{stat}": self.add_weight(name=f"{axis}_query_moving_{stat}",
                                              shape=(h * d_k,), trainable=False,
                                              initializer="zeros" if stat == "mean" else "ones")
                for axis in ("row", "col") for stat in ("mean", "variance")}
        before = {id(w) for w in self._trainable_weights}
        self.value_store.build(self, self.num_slots, d_v, self.value_initializer
                               or tf.keras.initializers.RandomNormal(stddev=d_v**-0.5))
        self._value_variables = [w for w in self._trainable_weights if id(w) not in before]
        super().build(input_shape)

    def _queries(self, mlp: tf.keras.Sequential, m_q: tf.Tensor, axis: str, keep, training
                 ) -> tf.Tensor:
        q = mlp(m_q)  # (B, L, H·d_k)
        if self.query_norm:
            q = self._normalize(q, axis, keep, training)
        return core.split_heads(TF, q, self.num_heads, self.key_dim)

    def _normalize(self, q, axis, keep, training):
        mean, variance = (self.query_moments[f"{axis}_{s}"] for s in ("mean", "variance"))
        q, updates = core.normalize(TF, q, mean, variance, keep, training)
        if updates is not None:
            mean.assign(updates[0])
            variance.assign(updates[1])
        return q

    def __call__(self, *args, **kwargs):
        # Keras 3's symbolic inputs would otherwise fail deep in TensorFlow with a message
        # that names neither layer.
        if any(type(x).__name__ == "KerasTensor" and type(x).__module__.startswith("keras.")
               for x in tf.nest.flatten((args, kwargs))):
            raise TypeError("lmn_tf.LMNLayer is a tf-keras (Keras 2) layer; with Keras 3 "
                            "(`import keras`) use lmn_tf.keras3.LMNLayer. Received: a Keras 3 "
                            "KerasTensor input")
        return super().__call__(*args, **kwargs)

    def call(self, items, user, mask=None, training=None, return_slots=False):
        # Keras converts only the first positional argument; NumPy arrays and lists given as
        # `user` or `mask` must reach validation as tensors too.
        items, user = tf.convert_to_tensor(items), tf.convert_to_tensor(user)
        mask = None if mask is None else tf.convert_to_tensor(mask)
        self._check_inputs(items, user, mask)
        items = tf.cast(items, self.compute_dtype)
        user = tf.cast(user, self.compute_dtype)
        if self.addressing == "fixed":  # the inputs only address: nothing may move them
            items, user = tf.stop_gradient(items), tf.stop_gradient(user)
        keep = None if mask is None else tf.cast(mask, tf.bool)
        if not training:  # inference (predict, evaluate, export, plain calls)
            m_q, scores, slots = self._select_inference(items, user)
        else:
            m_q, scores, slots = self._select(items, user, keep, training)
        m_o, slots = core.read_out(TF, scores, slots, self.value_store.lookup, keep,
                                   self.num_heads)
        # Added in every mode, not only training: a functional model needs the same losses on
        # each call (and it is then part of `evaluate`'s loss too, like any regulariser).
        if self.memory_loss_weight > 0:
            loss = self._memory_loss(m_o, tf.cast(m_q, tf.float32), keep)
            self.add_loss(self.memory_loss_weight * loss)
            self.add_metric(loss, name="memory_loss")
        m_o = tf.cast(m_o, self.compute_dtype)
        return (m_o, slots) if return_slots else m_o

    def _select(self, items, user, keep, training):
        """M_Q, the winners' scores and slots (B, L, H, K), with a backward pass of O(K)."""
        m_q = self.query_mlp(core.user_aware_inputs(TF, items, user))  # (B, L, d_v)
        q_row = self._queries(self.row_query_mlp, m_q, "row", keep, training)  # (B, L, H, d_k)
        q_col = self._queries(self.col_query_mlp, m_q, "col", keep, training)
        scores, slots = core.select(TF, self.scoring, q_row, q_col, self.row_keys,
                                    self.col_keys, self.top_k, self.num_heads, self.num_keys,
                                    self.key_dim)
        return m_q, scores, slots

    def _select_inference(self, items, user):
        """Inference path (``core.select_inference``): equal to the training path up to float
        rounding, with fewer, larger ops (serving)."""
        mlps = (self.query_mlp, self.row_query_mlp, self.col_query_mlp)
        if not all(mlp.built for mlp in mlps):  # first call: create the weights
            m_q = self.query_mlp(tf.zeros((1, items.shape[-1] + user.shape[-1]), items.dtype))
            self.row_query_mlp(m_q), self.col_query_mlp(m_q)
        return core.select_inference(
            TF, self.scoring, items, user, *(_dense(mlp) for mlp in mlps), self.row_keys,
            self.col_keys, self.query_moments if self.query_norm else None, self.top_k,
            self.num_heads, self.num_keys, self.key_dim)

    def _memory_loss(self, m_o, m_q, keep):
        """SmoothL1(M_O, M_Q) (Huber, δ = 1), mean over d_v, then over unmasked items."""
        return core.memory_loss(TF, m_o, m_q, keep, self.memory_loss_stop_gradient,
                                self.value_store.batch_mean)

    def _check_inputs(self, items, user, mask):
        core.check_inputs(items.shape, user.shape, None if mask is None else mask.shape,
                          self._widths)

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        return {**super().get_config(),
                **core.layer_config(self, tf.keras.initializers.serialize,
                                    tf.keras.activations.serialize,
                                    tf.keras.utils.serialize_keras_object)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if not config.pop("trainable_keys", True) and config.get("addressing") != "fixed":
            config["addressing"] = "fixed_keys"  # a config from before "fixed_keys"
        if isinstance(config.get("value_store"), dict):
            config["value_store"] = tf.keras.utils.deserialize_keras_object(config["value_store"])
        return cls(**config)
