"""LMNLayer: the Large Memory Network's memory block as one Keras layer (paper eq. 4-12)."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from lmn_tf.memory import ops
from lmn_tf.memory.scoring import SCORING
from lmn_tf.memory.values import LocalValues, ValueStore

STOP_GRADIENT = ("none", "query", "readout")
ADDRESSING = ("learned", "fixed_keys", "fixed")
_EPSILON = 1e-3  # query_norm's variance epsilon
# The selection each mode runs: "two_stage" through the C++ kernel when it is built (same
# slots, order and scores as scoring.two_stage_top_k, which it falls back to).
SELECTION = {**SCORING, "two_stage": ops.two_stage_top_k}


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
    for the rows read; a dense optimizer makes every step cost O(n)) at a high rate, so a
    value is written within a few reads; give ``addressing_variables`` (query MLPs, keys) a
    slow Adam, so the slots an input reads move slower than its values are written; and the
    rest of the model its usual optimizer. With one rate for all, the addresses drift while
    the values are written and the memory stores little (README, "Does the memory
    memorise?"). Recipe (``lmn_tf.train.make_optimizer`` does this for the ranking models)::

        def rest():  # called at apply time, after the layer is built
            memory = {v.ref() for v in layer.trainable_variables}
            return [v for v in model.trainable_variables if v.ref() not in memory]

        tfrs.experimental.optimizers.CompositeOptimizer([
            (lmn_tf.memory.SparseAdam(0.03), lambda: layer.value_variables),
            (tf.keras.optimizers.legacy.Adam(1e-4), lambda: layer.addressing_variables),
            (tf.keras.optimizers.legacy.Adam(1e-3), rest)])

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
        sizes = {"num_keys": num_keys, "top_k": top_k, "num_heads": num_heads,
                 "key_dim": key_dim, "value_dim": 1 if value_dim is None else value_dim}
        for arg, value in sizes.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
        for arg, units in (("query_hidden_units", query_hidden_units),
                           ("head_hidden_units", head_hidden_units)):
            if any(not isinstance(u, int) or u <= 0 for u in units):
                raise ValueError(f"`{arg}` must be positive ints. Received: {arg}={units!r}")
        if top_k > num_keys:
            raise ValueError("`top_k` must be <= `num_keys` (the per-axis top-K needs K keys)."
                             f" Received: top_k={top_k}, num_keys={num_keys}")
        if memory_loss_weight < 0:
            raise ValueError("`memory_loss_weight` must be >= 0. "
                             f"Received: memory_loss_weight={memory_loss_weight}")
        if memory_loss_stop_gradient not in STOP_GRADIENT:
            raise ValueError(f"`memory_loss_stop_gradient` must be one of {STOP_GRADIENT}. "
                             f"Received: memory_loss_stop_gradient={memory_loss_stop_gradient!r}")
        if scoring not in SCORING:
            raise ValueError(f"`scoring` must be one of {tuple(SCORING)}. "
                             f"Received: scoring={scoring!r}")
        if addressing not in ADDRESSING:
            raise ValueError(f"`addressing` must be one of {ADDRESSING}. "
                             f"Received: addressing={addressing!r}")
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
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError("`items` must have shape (B, L, d) with known d. "
                             f"Received: items.shape={tuple(input_shape)}")
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
        return tf.reshape(q, tf.concat([tf.shape(q)[:2], [self.num_heads, self.key_dim]], 0))

    def _normalize(self, q, axis, keep, training, momentum=0.99, epsilon=_EPSILON):
        mean, variance = (self.query_moments[f"{axis}_{s}"] for s in ("mean", "variance"))
        q32 = tf.cast(q, tf.float32)  # moments in float32, also under mixed precision
        if training:
            w = tf.ones_like(q32[..., :1]) if keep is None else tf.cast(keep, tf.float32)[..., None]
            count = tf.maximum(tf.reduce_sum(w), 1.0)
            m = tf.reduce_sum(w * q32, (0, 1)) / count  # (H·d_k,) over unmasked items only
            v = tf.reduce_sum(w * tf.square(q32 - m), (0, 1)) / count
            mean.assign(momentum * mean + (1 - momentum) * tf.stop_gradient(m))
            variance.assign(momentum * variance + (1 - momentum) * tf.stop_gradient(v))
        else:
            m, v = tf.cast(mean, tf.float32), tf.cast(variance, tf.float32)
        return tf.cast((q32 - m) * tf.math.rsqrt(v + epsilon), q.dtype)

    def _winner_scores(self, q: tf.Tensor, keys: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
        offsets = tf.range(self.num_heads)[:, None] * self.num_keys  # (H, 1): head h's keys
        k = tf.gather(tf.reshape(keys, (-1, self.key_dim)), ids + offsets)  # (B, L, H, K, d_k)
        return tf.cast(tf.einsum("blhd,blhkd->blhk", q, k), tf.float32)

    def call(self, items, user, mask=None, training=None, return_slots=False):
        # Keras converts only the first positional argument; NumPy arrays and lists given as
        # `user` or `mask` must reach validation as tensors too (issue 20).
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
        weights = tf.nn.softmax(scores) / self.num_heads
        # float32 whatever the table dtype (e.g. a float16 serving table).
        values = tf.cast(self.value_store.lookup(slots), tf.float32)  # (B, L, H, K, d_v)
        m_o = tf.reduce_sum(weights[..., None] * values, (2, 3))  # (B, L, d_v)
        if keep is not None:  # where, not multiply: garbage (even NaN) in padding stays out
            m_o = tf.where(keep[..., None], m_o, 0.0)
            slots = tf.where(keep[..., None, None], slots, -1)
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
        user = tf.broadcast_to(user[:, None, :], tf.concat([tf.shape(items)[:2],
                                                            tf.shape(user)[-1:]], 0))
        m_q = self.query_mlp(tf.concat([items, user], -1))  # (B, L, d_v)
        q_row = self._queries(self.row_query_mlp, m_q, "row", keep, training)  # (B, L, H, d_k)
        q_col = self._queries(self.col_query_mlp, m_q, "col", keep, training)
        # Select in float32 (fewer spurious ties under mixed precision) and without gradient,
        # then score the K winners again from their keys: same values, but the backward pass
        # costs O(K·d_k) per query instead of O(√n·d_k).
        s_row, s_col = (tf.stop_gradient(tf.cast(tf.einsum("blhd,hmd->blhm", q, keys),
                                                 tf.float32))  # (B, L, H, √n)
                        for q, keys in ((q_row, self.row_keys), (q_col, self.col_keys)))
        _, slots = SELECTION[self.scoring](s_row, s_col, self.top_k)  # (B, L, H, K)
        scores = (self._winner_scores(q_row, self.row_keys, slots // self.num_keys)
                  + self._winner_scores(q_col, self.col_keys, slots % self.num_keys))
        return m_q, scores, slots

    def _select_inference(self, items, user):
        """Inference path: the training path's function with fewer, larger ops (serving).

        2-D matmuls over the B·L items instead of einsums; the first query-MLP layer applies
        its user half once per user, not once per item; ``query_norm``'s inference branch is
        folded into the last query layer's weights; the winners' scores are the selected sums
        themselves, not recomputed from gathered keys (that only keeps the training backward
        pass small). Equal to the training path up to float rounding.
        """
        mlps = (self.query_mlp, self.row_query_mlp, self.col_query_mlp)
        if not all(mlp.built for mlp in mlps):  # first call: create the weights
            m_q = self.query_mlp(tf.zeros((1, items.shape[-1] + user.shape[-1]), items.dtype))
            self.row_query_mlp(m_q), self.col_query_mlp(m_q)
        shape, d = tf.shape(items), items.shape[-1]
        first, *rest = _dense(self.query_mlp)
        h = tf.reshape(tf.matmul(tf.reshape(items, (-1, d)), first.kernel[:d]),
                       tf.concat([shape[:2], [first.units]], 0))  # (B, L, units)
        h = first.activation(h + tf.nn.bias_add(tf.matmul(user, first.kernel[d:]),
                                                first.bias)[:, None])
        m_q = tf.reshape(h, (-1, first.units))  # (B·L, units)
        for layer in rest:
            m_q = layer(m_q)  # (B·L, d_v) after the last
        s_row, s_col = (self._axis_scores(mlp, m_q, keys, axis)  # (B·L, H·√n)
                        for mlp, keys, axis in ((self.row_query_mlp, self.row_keys, "row"),
                                                (self.col_query_mlp, self.col_keys, "col")))
        split = tf.concat([shape[:2], [self.num_heads, self.num_keys]], 0)
        scores, slots = SELECTION[self.scoring](tf.reshape(s_row, split),
                                                tf.reshape(s_col, split),
                                              self.top_k)  # (B, L, H, K)
        d_v = (rest[-1] if rest else first).units
        return tf.reshape(m_q, tf.concat([shape[:2], [d_v]], 0)), scores, slots

    def _axis_scores(self, mlp, m_q, keys, axis):
        """(B·L, H·√n) float32 scores of one axis's keys, from M_Q (B·L, d_v)."""
        *hidden, last = _dense(mlp)
        for layer in hidden:
            m_q = layer(m_q)
        w, b = tf.cast(last.kernel, tf.float32), tf.cast(last.bias, tf.float32)  # (d_in, H·d_k)
        if self.query_norm:  # _normalize's inference branch is affine: fold it into W and b
            # float32 reads: under mixed precision the layer's variables read as float16.
            mean, variance = (tf.cast(self.query_moments[f"{axis}_{s}"], tf.float32)
                              for s in ("mean", "variance"))
            scale = tf.math.rsqrt(variance + _EPSILON)
            w, b = w * scale, (b - mean) * scale
        q = tf.nn.bias_add(tf.matmul(tf.cast(m_q, tf.float32), w), b)  # (B·L, H·d_k)
        keys, d_k = tf.cast(keys, tf.float32), self.key_dim
        if self.num_heads == 1:
            return tf.matmul(q, keys[0], transpose_b=True)
        # One 2-D matmul per head: MKL's batched matmul took ~1 ms per call at b = 1 here.
        return tf.concat([tf.matmul(q[:, i * d_k:(i + 1) * d_k], keys[i], transpose_b=True)
                          for i in range(self.num_heads)], 1)

    def _memory_loss(self, m_o, m_q, keep):
        """SmoothL1(M_O, M_Q) (Huber, δ = 1), mean over d_v, then over unmasked items."""
        if self.memory_loss_stop_gradient == "query":
            m_q = tf.stop_gradient(m_q)
        elif self.memory_loss_stop_gradient == "readout":
            m_o = tf.stop_gradient(m_o)
        err = tf.abs(m_o - m_q)
        per_item = tf.reduce_mean(tf.where(err < 1.0, 0.5 * err**2, err - 0.5), -1)  # (B, L)
        if keep is None:
            return tf.reduce_mean(per_item)
        count = tf.reduce_sum(tf.cast(keep, tf.float32))
        return self.value_store.batch_mean(tf.reduce_sum(tf.where(keep, per_item, 0.0)), count)

    def _check_inputs(self, items, user, mask):
        if items.shape.rank != 3:
            raise ValueError(f"`items` must be (B, L, d). Received: items.shape={items.shape}")
        if user.shape.rank != 2:
            raise ValueError(f"`user` must be (B, d_u). Received: user.shape={user.shape}")
        if not user.shape[:1].is_compatible_with(items.shape[:1]):
            raise ValueError("`user` and `items` batch sizes differ. Received: "
                             f"user.shape={user.shape}, items.shape={items.shape}")
        if mask is not None and not mask.shape.is_compatible_with(items.shape[:2]):
            raise ValueError("`mask` must be (B, L) like `items`. Received: "
                             f"mask.shape={mask.shape}, items.shape={items.shape}")
        self._widths["user"] = self._widths["user"] or user.shape[-1]
        for arg, tensor in (("items", items), ("user", user)):
            if tensor.shape[-1] != self._widths[arg]:
                raise ValueError(f"`{arg}` width differs from the first call's "
                                 f"({self._widths[arg]}). Received: {arg}.shape={tensor.shape}")

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        ser = tf.keras.initializers.serialize
        config = super().get_config()
        config.update({
            "num_keys": self.num_keys, "top_k": self.top_k, "num_heads": self.num_heads,
            "key_dim": self.key_dim, "value_dim": self.value_dim,
            "query_hidden_units": list(self.query_hidden_units),
            "head_hidden_units": list(self.head_hidden_units),
            "activation": tf.keras.activations.serialize(self.activation),
            "memory_loss_weight": self.memory_loss_weight,
            "memory_loss_stop_gradient": self.memory_loss_stop_gradient,
            "scoring": self.scoring,
            "value_store": tf.keras.utils.serialize_keras_object(self.value_store),
            "query_norm": self.query_norm,
            "addressing": self.addressing,
            "kernel_initializer": ser(self.kernel_initializer),
            "key_initializer": self.key_initializer and ser(self.key_initializer),
            "value_initializer": self.value_initializer and ser(self.value_initializer),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if not config.pop("trainable_keys", True) and config.get("addressing") != "fixed":
            config["addressing"] = "fixed_keys"  # a config from before "fixed_keys"
        if isinstance(config.get("value_store"), dict):
            config["value_store"] = tf.keras.utils.deserialize_keras_object(config["value_store"])
        return cls(**config)
