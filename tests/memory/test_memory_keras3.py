"""The Keras 3 LMNLayer (lmn_tf.keras3): equal to the tf-keras layer, and the Keras 3 way.

The two layers share their math (lmn_tf.memory.core); these tests hold them equal on shared
weights, so they cannot drift, and run the Keras 3 layer through functional and subclassed
models, fit with MemoryAdam, .keras save/load, model.export and `lmn-tf serve`.
"""

from __future__ import annotations

import doctest
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import lmn_tf
from lmn_tf.keras3 import LMNLayer as K3Layer
from lmn_tf.keras3 import MemoryAdam
from lmn_tf.memory import keras3 as k3
from lmn_tf.memory import keras3_ops, keras3_optimizer
from lmn_tf.memory.layer import LMNLayer as K2Layer
from lmn_tf.memory.ops import selection as selection_ops
from lmn_tf.serving import (
    ServerProcess,
    ServingError,
    model_status_rest,
    predict_grpc,
    predict_rest,
)

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="compares with the tf-keras layer (TensorFlow)")

# Both layers run the same TensorFlow ops in the same order on the TensorFlow backend; 1e-6 is
# the bound, and float32 sums of this size agree far below it.
TOL = 1e-6
CONFIGS = [
    {},
    {"num_heads": 1, "query_norm": False, "query_hidden_units": (8,),
     "head_hidden_units": (6,), "value_dim": 5},
    {"scoring": "broadcast", "memory_loss_stop_gradient": "query", "addressing": "fixed_keys"},
]


def _inputs(seed=0, b=4, length=7, d=10, d_u=5):
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(b, length, d)).astype("float32")
    user = rng.normal(size=(b, d_u)).astype("float32")
    mask = np.arange(length)[None] < np.array([length, 3, 0, 5])[:b, None]
    return items, user, mask


def _pair(seed=0, **kwargs):
    """A tf-keras and a Keras 3 layer, built, the Keras 3 one holding the other's weights."""
    kwargs = {"num_keys": 12, "top_k": 4, "key_dim": 8, **kwargs}
    items, user, mask = _inputs(seed)
    tf.keras.utils.set_random_seed(seed)
    k2 = K2Layer(**kwargs)
    k2(items, user, mask=mask, training=True)  # builds everything
    k3_layer = K3Layer(**kwargs)
    k3_layer(items, user, mask=mask)
    dense2 = [[layer for layer in m.layers if isinstance(layer, tf.keras.layers.Dense)]
              for m in (k2.query_mlp, k2.row_query_mlp, k2.col_query_mlp)]
    dense3 = [k3_layer.query_layers, k3_layer.row_query_layers, k3_layer.col_query_layers]
    pairs = [(a.kernel, b.kernel) for x, y in zip(dense2, dense3, strict=True)
             for a, b in zip(x, y, strict=True)]
    pairs += [(a.bias, b.bias) for x, y in zip(dense2, dense3, strict=True)
              for a, b in zip(x, y, strict=True)]
    pairs += [(k2.row_keys, k3_layer.row_keys), (k2.col_keys, k3_layer.col_keys),
              (k2.value_variables[0], k3_layer.value_variables[0])]
    if k2.query_norm:
        pairs += [(k2.query_moments[n], k3_layer.query_moments[n]) for n in k2.query_moments]
    for a, b in pairs:
        b.assign(a.numpy())
    return k2, k3_layer, pairs


def _run(layer, variables, items, user, mask, training):
    items, user = tf.constant(items), tf.constant(user)
    with tf.GradientTape() as tape:
        tape.watch([items, user])
        out, slots = layer(items, user, mask=mask, training=training, return_slots=True)
        loss = tf.reduce_sum(out**2) + tf.add_n(layer.losses)
    grads = tape.gradient(loss, [items, user, *variables])
    return out, slots, loss, grads


@pytest.mark.parametrize("kwargs", CONFIGS, ids=["defaults", "hidden-1head", "broadcast"])
@pytest.mark.parametrize("training", [True, False])
def test_keras3_layer_equals_tf_keras_layer(kwargs, training):
    k2, k3_layer, pairs = _pair(**kwargs)
    items, user, mask = _inputs(1)
    a = _run(k2, [p[0] for p in pairs], items, user, mask, training)
    b = _run(k3_layer, [p[1] for p in pairs], items, user, mask, training)
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())  # the same slots
    np.testing.assert_allclose(b[0].numpy(), a[0].numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(b[2].numpy(), a[2].numpy(), atol=TOL, rtol=TOL)
    for (v2, _), g2, g3 in zip([(None, None), (None, None), *pairs], a[3], b[3], strict=True):
        if g2 is None:  # e.g. fixed keys, or the keys on the inference path
            assert g3 is None
            continue
        np.testing.assert_allclose(tf.convert_to_tensor(g3).numpy(),
                                   tf.convert_to_tensor(g2).numpy(), atol=TOL, rtol=0,
                                   err_msg=getattr(v2, "name", "input"))
    values = 2 + next(i for i, p in enumerate(pairs) if p[0] is k2.value_variables[0])
    assert isinstance(a[3][values], tf.IndexedSlices)  # sparse in both
    assert isinstance(b[3][values], tf.IndexedSlices)
    for v2, v3 in pairs:  # training moved the moving moments identically
        np.testing.assert_allclose(v3.numpy(), v2.numpy(), atol=TOL, rtol=0)


def test_keras_ops_path_equals_tensorflow_path():
    """The JAX / PyTorch namespace (keras.ops, stock top-K), run here on TF tensors."""
    for kwargs in CONFIGS:
        _, layer, _ = _pair(**kwargs)
        items, user, mask = _inputs(2)
        for training in (True, False):
            want = layer(items, user, mask=mask, training=training, return_slots=True)
            layer._ops = keras3_ops.KerasOps
            try:
                got = layer(items, user, mask=mask, training=training, return_slots=True)
            finally:
                layer._ops = keras3_ops.array_namespace()
            np.testing.assert_array_equal(np.asarray(got[1]), want[1].numpy())
            np.testing.assert_allclose(np.asarray(got[0]), want[0].numpy(), atol=1e-6)


BAD = [{"num_keys": 0}, {"top_k": 20}, {"num_heads": 1.5}, {"query_hidden_units": (0,)},
       {"memory_loss_weight": -1.0}, {"memory_loss_stop_gradient": "x"}, {"scoring": "x"},
       {"addressing": "x"}, {"value_store": "table"}]


@pytest.mark.parametrize("bad", BAD, ids=[next(iter(b)) for b in BAD])
def test_same_validation_messages(bad):
    kwargs = {"num_keys": 12, **bad}
    with pytest.raises(ValueError) as k2_err:
        K2Layer(**kwargs)
    with pytest.raises(ValueError) as k3_err:
        K3Layer(**kwargs)
    assert str(k3_err.value) == str(k2_err.value)


def test_same_defaults_and_config():
    import inspect

    p2 = inspect.signature(K2Layer.__init__).parameters
    p3 = inspect.signature(K3Layer.__init__).parameters
    assert {k: v.default for k, v in p2.items()} == {k: v.default for k, v in p3.items()}
    kwargs = {"num_keys": 12, "top_k": 3, "query_hidden_units": (4,), "scoring": "broadcast"}
    c2, c3 = K2Layer(**kwargs, name="m").get_config(), K3Layer(**kwargs, name="m").get_config()
    memory_keys = set(p2) - {"self", "kwargs"}
    initializers = {"kernel_initializer", "key_initializer", "value_initializer"}
    for key in memory_keys - initializers:  # initializers: each Keras' own serialisation
        assert c3[key] == c2[key], key
    assert c3["kernel_initializer"]["class_name"] == c2["kernel_initializer"]["class_name"]
    again = K3Layer.from_config(c3).get_config()
    assert again == c3


def test_inputs_checked_like_tf_keras():
    items, user, mask = _inputs()
    for bad in ({"user": user[:2]}, {"mask": mask[:, :3]}):
        args = {"items": items, "user": user, "mask": mask, **bad}
        layers = [K2Layer(num_keys=12, top_k=4), K3Layer(num_keys=12, top_k=4)]
        messages = []
        for layer in layers:
            with pytest.raises(ValueError) as err:
                layer(**args)
            # each Keras wraps the layer's message in its own; the message itself is core's
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(err.value))  # Keras 3 bolds it
            messages.append(next(line.strip() for line in text.splitlines()
                                 if "Received:" in line))
        assert messages[0] == messages[1], messages


# --- the Keras 3 way ------------------------------------------------------------------------

def _functional(**kwargs):
    items = keras.Input((7, 10), name="items")
    user = keras.Input((5,), name="user")
    read = K3Layer(num_keys=12, top_k=4, key_dim=8, name="memory", **kwargs)(items, user)
    return keras.Model([items, user], keras.layers.Dense(1)(keras.ops.mean(read, 1)))


@keras.saving.register_keras_serializable(package="lmn_tf_tests")
class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.memory = K3Layer(num_keys=12, top_k=4, key_dim=8)
        self.head = keras.layers.Dense(1)

    def call(self, inputs, training=None):
        return self.head(keras.ops.mean(self.memory(inputs["items"], inputs["user"],
                                                    training=training), 1))


def _data(b=32, seed=3):
    rng = np.random.default_rng(seed)
    x = {"items": rng.normal(size=(b, 7, 10)).astype("float32"),
         "user": rng.normal(size=(b, 5)).astype("float32")}
    return x, rng.normal(size=(b, 1)).astype("float32")


def _model(kind):
    keras.utils.set_random_seed(0)
    model = _functional() if kind == "functional" else Subclassed()
    x, _ = _data()
    model(x)  # builds a subclassed model
    return model


def _memory(model):
    return next(layer for layer in model.layers if isinstance(layer, K3Layer))


@pytest.mark.keras3_models
@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_fit_touches_only_the_rows_read_then_saves_and_reloads(kind, tmp_path):
    model = _model(kind)
    model.compile(optimizer=MemoryAdam(1e-3, values_learning_rate=0.03,
                                       addressing_learning_rate=1e-4), loss="mse")
    x, y = _data(b=2)
    memory = _memory(model)
    table = memory.value_variables[0]
    before = table.numpy().copy()
    _, slots = memory(x["items"], x["user"], training=True, return_slots=True)
    read = np.unique(slots.numpy())
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    moved = np.flatnonzero(np.any(table.numpy() != before, axis=1))
    np.testing.assert_array_equal(moved, read)  # every row read, and only those, moved
    assert 0 < len(read) < memory.num_slots

    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    want = model.predict(x, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), want, atol=1e-6, rtol=0)
    assert isinstance(loaded.optimizer, MemoryAdam)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)  # resumes with its optimizer state


def _wait_until_available(url: str, name: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = model_status_rest(url, name)["model_version_status"]
            if any(v["state"] == "AVAILABLE" for v in status):
                return
        except (ServingError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} never became AVAILABLE at {url}")


def _graph_ops(concrete) -> set[str]:
    graph = concrete.graph.as_graph_def()
    return {n.op for n in graph.node} | {n.op for f in graph.library.function
                                         for n in f.node_def}


@pytest.mark.keras3_models
@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_export_is_served_by_lmn_tf_serve(kind, tmp_path):
    model = _model(kind)
    x, y = _data()
    model.compile(optimizer=MemoryAdam(1e-3), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    want = model.predict(x, verbose=0)
    if selection_ops.kernel_available():  # in process, predict runs the selection kernel
        traced = tf.function(lambda i, u: _memory(model)(i, u)).get_concrete_function(
            tf.TensorSpec((None, 7, 10)), tf.TensorSpec((None, 5)))
        assert selection_ops.OP_NAME in _graph_ops(traced)
    # A functional model's inputs carry their names; a subclassed model's are named here.
    signature = None if kind == "functional" else [
        {name: tf.TensorSpec((None, *value.shape[1:]), name=name) for name, value in x.items()}]
    model.export(str(tmp_path / "m" / "1"), input_signature=signature, verbose=False)
    signature = tf.saved_model.load(str(tmp_path / "m" / "1")).signatures["serving_default"]
    assert not any(op.startswith("Lmn") for op in _graph_ops(signature))  # stock ops only
    server = ServerProcess(["--model-base-path", str(tmp_path / "m"), "--model-name", "m"],
                           str(tmp_path / "server.log"))
    try:
        _wait_until_available(server.rest, "m")
        for served in (predict_rest(server.rest, "m", x), predict_grpc(server.grpc, "m", x)):
            (out,) = served.values()
            np.testing.assert_allclose(out, want, atol=1e-5, rtol=0)
    finally:
        assert server.stop() == 0, server.log()


# --- other backends -------------------------------------------------------------------------

BACKEND_SCRIPT = r"""
import json, sys
import numpy as np
import keras
from lmn_tf.keras3 import LMNLayer
assert keras.backend.backend() == sys.argv[1]
data = np.load(sys.argv[2])
cfg = json.loads(sys.argv[3])
layer = LMNLayer(**cfg)
items, user, mask = data["items"], data["user"], data["mask"]
layer.build(items.shape, user.shape)
for w, name in zip(layer.weights, json.loads(sys.argv[4])):
    w.assign(data[name])
out = {}
for training in (False, True):
    read, slots = layer(items, user, mask=mask, training=training, return_slots=True)
    out[f"out_{training}"] = keras.ops.convert_to_numpy(read)
    out[f"slots_{training}"] = keras.ops.convert_to_numpy(slots)
# fit with MemoryAdam: only the rows read move here too (dense gradients, masked step)
from lmn_tf.keras3 import MemoryAdam
inp = [keras.Input(items.shape[1:]), keras.Input(user.shape[1:])]
model = keras.Model(inp, keras.ops.mean(layer(*inp), (1, 2)))
model.compile(optimizer=MemoryAdam(1e-3), loss="mse")
table = layer.value_variables[0]
before = keras.ops.convert_to_numpy(table).copy()
_, slots = layer(items[:1], user[:1], training=True, return_slots=True)
model.fit([items[:1], user[:1]], np.ones((1,), "float32"), verbose=0)
moved = np.flatnonzero(np.any(keras.ops.convert_to_numpy(table) != before, axis=1))
out["moved_equals_read"] = np.array_equal(moved, np.unique(keras.ops.convert_to_numpy(slots)))
np.savez(sys.argv[5], **out)
"""


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("backend", [
    pytest.param("jax", marks=pytest.mark.skipif(not _installed("jax"),
                                                 reason="jax not installed ([keras3] extra)")),
    pytest.param("torch", marks=pytest.mark.skipif(not _installed("torch"),
                                                   reason="torch not installed (README)")),
])
def test_other_backends_equal_tensorflow(backend, tmp_path):
    cfg = {"num_keys": 12, "top_k": 4, "key_dim": 8, "num_heads": 2}
    items, user, mask = _inputs(4)
    keras.utils.set_random_seed(4)
    layer = K3Layer(**cfg)
    layer.build(items.shape, user.shape)
    names = [f"w{i}" for i in range(len(layer.weights))]
    data = {n: w.numpy() for n, w in zip(names, layer.weights, strict=True)}
    np.savez(tmp_path / "in.npz", items=items, user=user, mask=mask, **data)
    want = {}
    for training in (False, True):  # before the moments move: both see the same weights
        read, slots = layer(items, user, mask=mask, training=training, return_slots=True)
        want[f"out_{training}"], want[f"slots_{training}"] = read.numpy(), slots.numpy()
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", BACKEND_SCRIPT, backend,
                          str(tmp_path / "in.npz"), json.dumps(cfg), json.dumps(names),
                          str(tmp_path / "out.npz")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    assert got["moved_equals_read"]
    for key, value in want.items():
        if key.startswith("slots"):
            np.testing.assert_array_equal(got[key], value, err_msg=key)
        else:
            np.testing.assert_allclose(got[key], value, atol=1e-5, rtol=0, err_msg=key)


def test_lmn_tf_import_keeps_tf_keras_and_keras3_apart():
    assert tf.keras.__name__.startswith("tf_keras") and keras.__version__.startswith("3.")
    assert lmn_tf.LMNLayer is K2Layer and Path(k3.__file__).name == "keras3.py"


def test_memory_adam_steps_like_the_tf_keras_recipe():
    """MemoryAdam(decay_steps) against the docstring's CompositeOptimizer parts: SparseAdam on
    the values, Adam on a cosine-decayed rate on the addressing; equal weights after steps
    before, at and after the end of the decay (the addressing then stops, the values not)."""
    from lmn_tf.memory import SparseAdam

    k2, k3_layer, pairs = _pair(num_heads=2)
    items, user, mask = _inputs(5)
    decay = 2
    parts2 = [(SparseAdam(0.03), k2.value_variables),
              (tf.keras.optimizers.legacy.Adam(
                  tf.keras.optimizers.schedules.CosineDecay(1e-4, decay)),
               k2.addressing_variables)]
    opt3 = MemoryAdam(1e-3, values_learning_rate=0.03, addressing_learning_rate=1e-4,
                      decay_steps=decay)
    for _ in range(decay + 2):
        for layer in (k2, k3_layer):
            with tf.GradientTape() as tape:
                out = layer(items, user, mask=mask, training=True)
                loss = tf.reduce_mean(out**2) + tf.add_n(layer.losses)
            grads = dict(zip(map(id, layer.trainable_variables),
                             tape.gradient(loss, layer.trainable_variables), strict=True))
            if layer is k2:
                for opt, variables in parts2:
                    opt.apply_gradients([(grads[id(v)], v) for v in variables])
            else:
                opt3.apply_gradients([(grads[id(v)], v) for v in layer.trainable_variables])
    for v2, v3 in pairs:  # float32 Adam steps in a different op order: rounding only
        np.testing.assert_allclose(v3.numpy(), v2.numpy(), atol=1e-6, rtol=0, err_msg=v2.name)
    with pytest.raises(ValueError, match="decay_steps"):
        MemoryAdam(decay_steps=0)


def test_the_tf_keras_layer_points_keras3_inputs_to_the_keras3_layer():
    import keras

    import lmn_tf

    items, user = keras.Input((50, 32)), keras.Input((16,))
    with pytest.raises(TypeError, match=r"use lmn_tf\.keras3\.LMNLayer"):
        lmn_tf.LMNLayer(num_keys=32, top_k=8)(items, user)


@pytest.mark.parametrize("module", [k3, keras3_optimizer])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
