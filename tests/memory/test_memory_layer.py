"""LMNLayer: hand-computed example, contract, errors, gradients, masking, modes, saving."""

import doctest
import json
import math
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

import lmn_tf.memory.diagnostics
import lmn_tf.memory.layer
import lmn_tf.memory.optimizer
import lmn_tf.memory.scoring
from lmn_tf.memory import LMNLayer, SparseAdam, ValueStore


def _inputs(b=3, seq=4, d=6, d_u=3, seed=0):
    rng = np.random.default_rng(seed)
    items = tf.constant(rng.normal(size=(b, seq, d)), tf.float32)
    user = tf.constant(rng.normal(size=(b, d_u)), tf.float32)
    mask = tf.constant(rng.random((b, seq)) < 0.7)
    return items, user, mask


def _layer(**kwargs):
    args = {"num_keys": 5, "top_k": 3, "num_heads": 2, "key_dim": 4} | kwargs
    return LMNLayer(**args)


@pytest.mark.parametrize("scoring", ["two_stage", "broadcast"])
def test_hand_computed_sqrt_n_3_k_2(scoring):
    layer = LMNLayer(num_keys=3, top_k=2, num_heads=1, key_dim=2, value_dim=2,
                     memory_loss_weight=0.5, scoring=scoring, query_norm=False)
    items = tf.constant([[[1.0, 2.0]], [[7.0, 7.0]]])  # item 2 is padding
    user = tf.constant([[5.0], [5.0]])
    mask = tf.constant([[True], [False]])
    layer(items, user, mask=mask)
    identity = np.eye(2, dtype="float32")
    # M_Q = x (the user column of the kernel is 0), q_row = q_col = M_Q.
    layer.query_mlp.layers[-1].kernel.assign([[1, 0], [0, 1], [0, 0]])
    layer.row_query_mlp.layers[-1].kernel.assign(identity)
    layer.col_query_mlp.layers[-1].kernel.assign(identity)
    layer.row_keys.assign([[[1, 0], [0, 1], [1, 1]]])  # s_row = (1, 2, 3)
    layer.col_keys.assign([[[0, 0], [1, 0], [0, -1]]])  # s_col = (0, 1, -2)
    layer.value_variables[0].assign([[r, 10 * r] for r in range(9)])  # value row r = (r, 10r)
    out, slots = layer(items, user, mask=mask, return_slots=True)
    # S[i, j] = s_row[i] + s_col[j]: best is (2, 1) = 4 -> slot 2*3+1 = 7; then 3, a tie of
    # (1, 1) -> slot 4 and (2, 0) -> slot 6: the lower id, 4, wins.
    np.testing.assert_array_equal(slots.numpy()[0, 0, 0], [7, 4])
    np.testing.assert_array_equal(slots.numpy()[1, 0, 0], [-1, -1])
    w = 1 / (1 + math.exp(-1))  # softmax(4, 3)[0]
    m_o = [7 * w + 4 * (1 - w), 70 * w + 40 * (1 - w)]
    np.testing.assert_allclose(out.numpy()[0, 0], m_o, rtol=1e-6)
    np.testing.assert_array_equal(out.numpy()[1, 0], [0.0, 0.0])
    # SmoothL1 with both errors > 1: |e| - 0.5, mean over d_v; only one unmasked item.
    loss = ((m_o[0] - 1 - 0.5) + (m_o[1] - 2 - 0.5)) / 2
    np.testing.assert_allclose(layer.losses[-1].numpy(), 0.5 * loss, rtol=1e-6)
    assert loss == pytest.approx(32.0624666, rel=1e-6)


def test_contract_shapes_weights_and_value_variables():
    items, user, mask = _inputs()
    layer = _layer(value_dim=7, query_hidden_units=(8,), head_hidden_units=(5,))
    out = layer(items, user, mask=mask)
    assert out.shape == (3, 4, 7) and out.dtype == tf.float32
    assert layer.num_slots == 25
    shapes = {w.name.split("/")[-1]: tuple(w.shape) for w in layer.weights if "keys" in w.name}
    assert shapes == {"row_keys:0": (2, 5, 4), "col_keys:0": (2, 5, 4)}
    assert [tuple(v.shape) for v in layer.value_variables] == [(25, 7)]
    assert len(layer.trainable_weights) == 3 + 3 * 4  # keys, values, 3 MLPs of 2 Dense layers
    out, slots = layer(items, user, mask=mask, return_slots=True)
    assert slots.shape == (3, 4, 2, 3) and slots.dtype == tf.int32
    assert layer.compute_mask(items, mask) is mask


def test_config_round_trip():
    layer = _layer(value_dim=7, query_hidden_units=(8,), head_hidden_units=(5, 6),
                   activation="tanh", memory_loss_weight=0.25,
                   memory_loss_stop_gradient="query", scoring="broadcast",
                   key_initializer="zeros", value_initializer="ones", query_norm=True,
                   addressing="fixed_keys")
    config = layer.get_config()
    clone = LMNLayer.from_config(config)
    assert clone.get_config() == config
    assert config["num_keys"] == 5 and config["head_hidden_units"] == [5, 6]
    assert config["addressing"] == "fixed_keys" and "trainable_keys" not in config
    rebuilt = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
    assert isinstance(rebuilt, LMNLayer) and rebuilt.get_config() == config


@pytest.mark.parametrize(("kwargs", "arg"), [
    ({"num_keys": 0}, "num_keys"), ({"top_k": -1}, "top_k"), ({"num_heads": 0}, "num_heads"),
    ({"key_dim": 0}, "key_dim"), ({"value_dim": 0}, "value_dim"),
    ({"num_keys": 2.5}, "num_keys"), ({"top_k": 6}, "top_k"),
    ({"query_hidden_units": (4, 0)}, "query_hidden_units"),
    ({"head_hidden_units": (-1,)}, "head_hidden_units"),
    ({"memory_loss_weight": -0.1}, "memory_loss_weight"),
    ({"memory_loss_stop_gradient": "both"}, "memory_loss_stop_gradient"),
    ({"scoring": "dense"}, "scoring"), ({"value_store": "local"}, "value_store"),
])
def test_invalid_arguments_name_the_argument(kwargs, arg):
    with pytest.raises(ValueError, match=f"Received: {arg}="):
        _layer(**kwargs)


def test_invalid_inputs_name_the_argument():
    items, user, mask = _inputs()
    layer = _layer()
    with pytest.raises(ValueError, match=r"items\.shape"):
        layer(items[:, 0], user)
    layer(items, user)
    with pytest.raises(ValueError, match=r"user\.shape"):
        layer(items, user[:, None])
    with pytest.raises(ValueError, match=r"user\.shape=.*items\.shape"):
        layer(items, user[:2])
    with pytest.raises(ValueError, match=r"mask\.shape"):
        layer(items, user, mask=mask[:, :2])
    with pytest.raises(ValueError, match=r"Received: items\.shape=\(3, 4, 3\)"):
        layer(items[..., :3], user)
    with pytest.raises(ValueError, match=r"Received: user\.shape=\(3, 2\)"):
        layer(items, user[:, :2])


def test_gradients_reach_keys_queries_and_values_sparsely():
    items, user, mask = _inputs()
    layer = _layer(query_hidden_units=(8,), head_hidden_units=(5,))
    with tf.GradientTape() as tape:
        out = layer(items, user, mask=mask)
        loss = tf.reduce_sum(out**2) + tf.add_n(layer.losses)
    grads = dict(zip([w.name for w in layer.trainable_weights],
                     tape.gradient(loss, layer.trainable_weights), strict=True))
    for name, grad in grads.items():
        assert grad is not None, name
        assert float(tf.reduce_max(tf.abs(tf.convert_to_tensor(grad)))) > 0, name
    (values_grad,) = [grads[v.name] for v in layer.value_variables]
    assert isinstance(values_grad, tf.IndexedSlices), type(values_grad)


def test_docstring_optimizer_recipe_moves_only_rows_read_and_addressing_slowly():
    items, user, mask = _inputs()
    layer = _layer()
    layer(items, user, mask=mask)
    optimizer = tfrs.experimental.optimizers.CompositeOptimizer([
        (SparseAdam(0.03), lambda: layer.value_variables),
        (tf.keras.optimizers.legacy.Adam(1e-4), lambda: layer.addressing_variables)])
    assert {v.ref() for v in layer.value_variables + layer.addressing_variables} == {
        v.ref() for v in layer.trainable_variables}
    before = [v.numpy() for v in layer.trainable_variables]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            out, slots = layer(items, user, mask=mask, return_slots=True)
            loss = tf.reduce_sum(out**2) + sum(layer.losses)
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply_gradients(zip(grads, layer.trainable_variables, strict=True))
        return slots

    slots = step().numpy()
    read = np.unique(slots[slots >= 0])
    unread = np.setdiff1d(np.arange(layer.num_slots), read)
    values = layer.value_variables[0]
    after = values.numpy()
    old = before[[v.ref() for v in layer.trainable_variables].index(values.ref())]
    assert len(unread) > 0
    np.testing.assert_array_equal(after[unread], old[unread])
    # Adam's first step is lr per coordinate: 0.03 for the values read, 1e-4 for addressing.
    np.testing.assert_allclose(np.abs(after[read] - old[read]).max(), 0.03, rtol=1e-3)
    moments = optimizer._optimizers_and_vars[0][0].get_slot(values, "m").numpy()
    np.testing.assert_array_equal(moments[unread], 0.0)  # untouched: a sparse apply
    for var, start in zip(layer.trainable_variables, before, strict=True):
        if var.ref() != values.ref():
            # 1e-4, read back from float32 weights of up to ~1 (an ulp there is 6e-8).
            assert 0 < np.abs(var.numpy() - start).max() <= 1e-4 + 2e-7, var.name


def test_fixed_keys_stay_put_while_queries_and_values_learn():
    items, user, mask = _inputs()
    layer = _layer(addressing="fixed_keys")
    layer(items, user, mask=mask)
    keys = {id(layer.row_keys), id(layer.col_keys)}
    assert keys.isdisjoint(id(v) for v in layer.trainable_variables)
    assert keys <= {id(v) for v in layer.non_trainable_variables}  # still checkpointed
    before = [v.numpy() for v in layer.weights]
    optimizer = tf.keras.optimizers.legacy.SGD(0.5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(items, user, mask=mask) ** 2) + tf.add_n(layer.losses)
    grads = tape.gradient(loss, layer.trainable_variables)
    optimizer.apply_gradients(zip(grads, layer.trainable_variables, strict=True))
    moved = {v.name for v, b in zip(layer.weights, before, strict=True)
             if not np.array_equal(v.numpy(), b)}
    assert not any("keys" in name for name in moved), moved
    assert any("values" in name for name in moved) and any("query" in name for name in moved)


def test_padded_items_change_nothing():
    items, user, mask = _inputs(seed=1)
    layer = _layer()
    garbage = tf.where(mask[..., None], items, 1e6)
    with tf.GradientTape() as tape:
        tape.watch(garbage)
        out, slots = layer(garbage, user, mask=mask, return_slots=True)
        loss = layer.losses[-1]
        target = tf.reduce_sum(out) + loss
    ref = layer(items, user, mask=mask)
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
    np.testing.assert_allclose(loss.numpy(), layer.losses[-1].numpy(), rtol=1e-6)
    assert not np.any(out.numpy()[~mask.numpy()])
    assert np.all(slots.numpy()[~mask.numpy()] == -1)
    grad = tape.gradient(target, garbage).numpy()
    assert not np.any(grad[~mask.numpy()]) and np.any(grad[mask.numpy()])


def test_query_norm_uses_unmasked_moments_and_moving_averages_at_inference(tmp_path):
    items, user, mask = _inputs(seed=3)
    layer = _layer(query_norm=True)
    garbage = tf.where(mask[..., None], items, 1e6)
    out = layer(garbage, user, mask=mask, training=True)
    np.testing.assert_allclose(out.numpy(), layer(items, user, mask=mask, training=True).numpy(),
                               atol=1e-6)  # padding never enters the batch moments
    # Hand-computed moments of the unmasked row queries: what the moving mean moved toward.
    m_q = layer.query_mlp(tf.concat([items, tf.repeat(user[:, None], 4, 1)], -1))
    q = layer.row_query_mlp(m_q).numpy()[mask.numpy()]  # (unmasked items, H·d_k)
    moving = layer.query_moments["row_mean"].numpy()
    np.testing.assert_allclose(moving, q.mean(0) * (1 - 0.99**2), rtol=1e-4, atol=1e-6)
    before = [v.numpy() for v in layer.query_moments.values()]
    first = layer(items, user, mask=mask, training=False)
    second = layer(items, user, mask=mask, training=False)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    for b, v in zip(before, layer.query_moments.values(), strict=True):
        np.testing.assert_array_equal(b, v.numpy())  # inference does not update them
    assert len(layer.non_trainable_weights) == 4  # row/col moving mean and variance
    path = tf.train.Checkpoint(layer=layer).write(str(tmp_path / "ckpt"))  # they checkpoint
    clone = _layer(query_norm=True)
    clone(items, user, mask=mask, training=True)  # moves its own moments
    tf.train.Checkpoint(layer=clone).read(path).assert_consumed()
    np.testing.assert_array_equal(clone(items, user, mask=mask).numpy(), first.numpy())


def test_memory_loss_stop_gradient_sides():
    items, user, mask = _inputs()

    def loss_grads(side):
        # Distinct keys and value rows: with equal ones the read-out would not depend on the
        # query, and "none" and "readout" would give the query kernel the same gradient.
        layer = _layer(memory_loss_stop_gradient=side, kernel_initializer="ones",
                       key_initializer=tf.keras.initializers.RandomUniform(seed=1),
                       value_initializer=tf.keras.initializers.RandomNormal(seed=0))
        layer(items, user, mask=mask)
        with tf.GradientTape() as tape:
            layer(items, user, mask=mask)
            loss = layer.losses[-1]
        mq_kernel = layer.query_mlp.layers[-1].kernel
        return loss, tape.gradient(loss, [layer.value_variables[0], mq_kernel])

    (l_none, (v_none, q_none)), (l_query, (v_query, q_query)), (l_read, (v_read, q_read)) = (
        loss_grads(side) for side in ("none", "query", "readout"))
    assert float(l_none) == float(l_query) == float(l_read) > 0
    assert v_read is None and v_none is not None and v_query is not None
    np.testing.assert_allclose(tf.convert_to_tensor(v_none), tf.convert_to_tensor(v_query))
    assert not np.allclose(q_none.numpy(), q_query.numpy())
    assert not np.allclose(q_none.numpy(), q_read.numpy())


def test_memory_loss_metric_and_zero_weight():
    items, user, mask = _inputs()
    layer = _layer(memory_loss_weight=0.0)
    layer(items, user, mask=mask)
    assert layer.losses == [] and layer.metrics == []
    layer = _layer(memory_loss_weight=2.0)
    layer(items, user, mask=mask)
    assert [m.name for m in layer.metrics] == ["memory_loss"]
    np.testing.assert_allclose(layer.losses[-1], 2.0 * layer.metrics[0].result(), rtol=1e-6)


@pytest.mark.parametrize("scoring", ["two_stage", "broadcast"])
def test_tf_function_and_xla_match_eager(scoring):
    items, user, mask = _inputs()
    layer = _layer(scoring=scoring)
    eager = layer(items, user, mask=mask)
    graph = tf.function(lambda *a: layer(*a, mask=mask))(items, user)
    xla = tf.function(lambda *a: layer(*a, mask=mask), jit_compile=True)(items, user)
    np.testing.assert_allclose(graph, eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xla, eager, rtol=1e-5, atol=1e-6)


def test_mixed_precision_keeps_float32_variables():
    items, user, mask = _inputs()
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = _layer()
        with tf.GradientTape() as tape:
            out = layer(items, user, mask=mask)
            loss = tf.reduce_sum(tf.cast(out, tf.float32)) + tf.add_n(layer.losses)
        grads = tape.gradient(loss, layer.trainable_variables)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == tf.float16 and layer.losses[-1].dtype == tf.float32
    assert {v.dtype for v in layer.trainable_variables} == {tf.float32}
    values_grad = grads[[id(v) for v in layer.trainable_variables].index(
        id(layer.value_variables[0]))]
    assert isinstance(values_grad, tf.IndexedSlices) and values_grad.dtype == tf.float32
    assert all(np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in grads)


class Float16Values(ValueStore):
    """A serving-style store: a float16 table whose lookup returns float32."""

    def build(self, layer, num_rows, dim, initializer):
        self.num_rows, self.dim = num_rows, dim
        self.table = layer.add_weight(name="values16", shape=(num_rows, dim), dtype="float16",
                                      initializer=initializer, trainable=False)

    def lookup(self, ids):
        return tf.cast(tf.gather(self.table, ids), tf.float32)


def test_custom_value_store_float16_table():
    items, user, mask = _inputs()
    local = _layer(memory_loss_weight=0.0)
    local(items, user, mask=mask)
    served = _layer(memory_loss_weight=0.0, value_store=Float16Values())
    served(items, user, mask=mask)
    for name in ("query_mlp", "row_query_mlp", "col_query_mlp"):
        getattr(served, name).set_weights(getattr(local, name).get_weights())
    served.row_keys.assign(local.row_keys)
    served.col_keys.assign(local.col_keys)
    served.value_store.table.assign(tf.cast(local.value_variables[0], tf.float16))
    assert served.value_variables == [] and served.value_store.table.dtype == tf.float16
    np.testing.assert_allclose(served(items, user, mask=mask), local(items, user, mask=mask),
                               atol=2e-3)


def _functional(layer, seq=4, d=6, d_u=3):
    items = tf.keras.Input((seq, d))
    user = tf.keras.Input((d_u,))
    mask = tf.keras.Input((seq,), dtype=tf.bool)
    out = layer(items, user, mask=mask)
    score = tf.keras.layers.Dense(1)(tf.reduce_mean(out, axis=1))
    return tf.keras.Model([items, user, mask], score)


class _Subclassed(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.memory = _layer()
        self.head = tf.keras.layers.Dense(1)

    def call(self, inputs, training=None):
        items, user, mask = inputs
        out = self.memory(items, user, mask=mask, training=training)
        return self.head(tf.reduce_mean(out, axis=1))


@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_models_fit_and_show_memory_loss(kind):
    model = _functional(_layer()) if kind == "functional" else _Subclassed()
    model.compile(optimizer="adam", loss="mse", jit_compile=False)
    x = list(_inputs(b=8))
    history = model.fit(x, tf.ones((8, 1)), batch_size=4, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "memory_loss"}
    assert history.history["memory_loss"][0] > 0


def test_saved_model_round_trips(tmp_path):
    model = _functional(_layer(scoring="broadcast", head_hidden_units=(5,)))
    x = list(_inputs())
    expected = model(x).numpy()
    # A reloaded model runs the same math in a traced graph, which may order float32 sums
    # differently: a few ulps of the summed terms (observed 1.4e-7 relative), not bit-equal.
    close = {"rtol": 1e-5, "atol": 1e-6}
    model.save(tmp_path / "model.keras")
    np.testing.assert_allclose(tf.keras.models.load_model(tmp_path / "model.keras")(x), expected,
                               **close)
    model.save(tmp_path / "keras_sm", save_format="tf")
    np.testing.assert_allclose(tf.keras.models.load_model(tmp_path / "keras_sm")(x), expected,
                               **close)
    tf.saved_model.save(model, str(tmp_path / "raw"))
    np.testing.assert_allclose(tf.saved_model.load(str(tmp_path / "raw"))(x), expected, **close)


@pytest.mark.parametrize("module", [lmn_tf.memory.layer, lmn_tf.memory.scoring,
                                    lmn_tf.memory.diagnostics, lmn_tf.memory.optimizer])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, extraglobs={"tf": tf}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0 or module is lmn_tf.memory.scoring


def test_fixed_addressing_learns_only_the_values_and_moves_no_input():
    layer = lmn_tf.LMNLayer(num_keys=8, top_k=4, num_heads=2, addressing="fixed")
    items, user = tf.random.normal((3, 5, 16)), tf.random.normal((3, 6))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([items, user])
        out = layer(items, user, training=True)
    assert [v.name for v in layer.trainable_variables] == [
        v.name for v in layer.value_variables]
    assert tape.gradient(out, items) is None and tape.gradient(out, user) is None
    assert tape.gradient(out, layer.value_variables[0]) is not None
    _, before = layer(items, user, return_slots=True)
    layer.value_variables[0].assign_add(tf.ones_like(layer.value_variables[0]))
    _, after = layer(items, user, return_slots=True)
    np.testing.assert_array_equal(before, after)  # values move, addresses do not
    assert layer.get_config()["addressing"] == "fixed"
    assert lmn_tf.LMNLayer.from_config(layer.get_config()).addressing == "fixed"


@pytest.mark.parametrize(("trainable_keys", "addressing", "expected"), [
    (False, "learned", "fixed_keys"), (True, "learned", "learned"), (False, "fixed", "fixed"),
    (True, "fixed", "fixed"), (False, None, "fixed_keys")])
def test_configs_with_the_old_trainable_keys_load_as_addressing(trainable_keys, addressing,
                                                               expected):
    config = {**_layer().get_config(), "trainable_keys": trainable_keys,
              "addressing": addressing}
    if addressing is None:  # from before `addressing` existed
        del config["addressing"]
    assert LMNLayer.from_config(config).addressing == expected


def test_a_keras_file_saved_with_trainable_keys_loads_with_fixed_keys(tmp_path):
    model = _functional(_layer(addressing="fixed_keys"))
    x = list(_inputs())
    expected = model(x).numpy()
    model.save(tmp_path / "new.keras")
    # The same file as the code before "fixed_keys" wrote it: trainable_keys=False.
    with zipfile.ZipFile(tmp_path / "new.keras") as new, \
            zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for item in new.infolist():
            data = new.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                (layer,) = [c for c in config["config"]["layers"]
                            if c.get("registered_name") == "lmn_tf>LMNLayer"]
                layer["config"].update(addressing="learned", trainable_keys=False)
                data = json.dumps(config).encode()
            old.writestr(item, data)
    loaded = tf.keras.models.load_model(tmp_path / "old.keras")
    (memory,) = [layer for layer in loaded.layers if isinstance(layer, LMNLayer)]
    assert memory.addressing == "fixed_keys"
    assert {id(memory.row_keys), id(memory.col_keys)}.isdisjoint(
        id(v) for v in memory.trainable_variables)
    np.testing.assert_allclose(loaded(x), expected, rtol=1e-5, atol=1e-6)


def test_unknown_addressing_is_rejected():
    with pytest.raises(ValueError, match="Received: addressing='hashed'"):
        lmn_tf.LMNLayer(num_keys=8, top_k=4, addressing="hashed")
