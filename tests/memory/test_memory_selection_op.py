"""The C++ selection kernel equals the stock two-stage path; the fallback; the layer with both."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from lmn_tf.memory import LMNLayer, scoring
from lmn_tf.memory.ops import selection

# Built by `pip install -e .` (what .ci/bootstrap runs): a missing kernel is a failure here,
# unless the run asks for the stock path on purpose.
pytestmark = pytest.mark.skipif(os.environ.get(selection.ENV_SWITCH) == "0",
                                reason="selection kernel disabled by LMN_TF_SELECTION_KERNEL=0")


@pytest.fixture(scope="module")
def kernel():
    library = selection.load_library()
    assert library is not None, f"{selection.LIBRARY_PATH} is not built: pip install -e ."
    return library.lmn_two_stage_top_k


@st.composite
def scores(draw, max_m=3000, max_k=None):
    m = draw(st.integers(1, max_m))
    k = draw(st.integers(1, min(m, max_k or m)))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 2)), m)  # (B·L, H, m)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["normal", "ties", "binary", "constant"]))
    if kind == "normal":
        make = lambda: rng.normal(size=shape)  # noqa: E731
    elif kind == "ties":  # small integers: sums exact, ties everywhere
        make = lambda: rng.integers(-3, 3, shape)  # noqa: E731
    elif kind == "binary":
        make = lambda: rng.integers(0, 2, shape) * 0.5  # noqa: E731
    else:
        make = lambda: np.zeros(shape)  # noqa: E731
    return make().astype(np.float32), make().astype(np.float32), k


def _assert_selects_as(reference, kernel, case):
    """The kernel's slots and scores equal ``reference``'s, slot for slot, in order."""
    s_row, s_col, k = case
    want_s, want_id = reference(s_row, s_col, k)
    got_s, got_id = kernel(s_row, s_col, k=k)
    np.testing.assert_array_equal(got_id.numpy(), want_id.numpy())
    np.testing.assert_array_equal(got_s.numpy(), want_s.numpy())


@settings(max_examples=60, deadline=None)
@given(scores())
def test_kernel_equals_stock_two_stage(kernel, case):
    _assert_selects_as(scoring.two_stage_top_k, kernel, case)


@settings(max_examples=60, deadline=None)
@given(scores(max_k=64))
def test_kernel_equals_stock_small_k(kernel, case):
    """The layer's regime, m >> K: the bounded scan, its cuts on ties, the pruned pairs."""
    _assert_selects_as(scoring.two_stage_top_k, kernel, case)


@settings(max_examples=30, deadline=None)
@given(scores(max_m=200))
def test_kernel_equals_broadcast(kernel, case):
    _assert_selects_as(scoring.broadcast_top_k, kernel, case)


def test_ids_and_ties_by_hand(kernel):
    s_row = tf.constant([[0.0, 1.0, 1.0]])  # rows 1 and 2 tie
    s_col = tf.constant([[2.0, 0.0, 2.0]])  # columns 0 and 2 tie
    s, ids = kernel(s_row, s_col, k=3)
    assert ids.numpy().tolist() == [[3, 5, 6]]  # (1,0), (1,2), (2,0): lower slot id first
    assert s.numpy().tolist() == [[3.0, 3.0, 3.0]]


def test_nan_ranks_last(kernel):
    s_row = tf.constant([[np.nan, 0.0, -np.inf]])
    s_col = tf.constant([[0.0, 1.0, np.nan]])
    _, ids = kernel(s_row, s_col, k=3)
    assert ids.numpy().tolist() == [[4, 3, 7]]  # 1.0, 0.0, -inf + 1; no NaN sum wins


def test_shape_function():
    fn = tf.function(lambda r, c: selection.two_stage_top_k(r, c, 4))
    spec = tf.TensorSpec((None, 3, 16), tf.float32)
    out = fn.get_concrete_function(spec, spec).structured_outputs
    assert [t.shape.as_list() for t in out] == [[None, 3, 4], [None, 3, 4]]
    assert [t.dtype for t in out] == [tf.float32, tf.int32]


def test_validation(kernel):
    x = tf.zeros((2, 5))
    with pytest.raises(ValueError, match="same shape"):
        selection.two_stage_top_k(x, tf.zeros((2, 6)), 2)
    with pytest.raises(ValueError, match="must be in"):
        selection.two_stage_top_k(x, x, 6)
    with pytest.raises(ValueError, match="must be in"):
        selection.two_stage_top_k(x, x, 0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must be <="):
        kernel(x, x, k=6)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        kernel(x, tf.zeros((2, 6)), k=2)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        kernel(tf.zeros(()), tf.zeros(()), k=1)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        kernel(x, x, k=0)
    # Shapes known only at run time: the kernel's OP_REQUIRES, not the shape function.
    spec = tf.TensorSpec(None, tf.float32)
    fn = tf.function(lambda r, c: kernel(r, c, k=3), input_signature=[spec, spec])
    with pytest.raises(tf.errors.InvalidArgumentError, match="same shape"):
        fn(x, tf.zeros((5, 2)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must be <="):
        fn(tf.zeros((2, 2)), tf.zeros((2, 2)))


def test_empty_batch(kernel):
    s, ids = kernel(tf.zeros((0, 2, 7)), tf.zeros((0, 2, 7)), k=3)
    assert s.shape == ids.shape == (0, 2, 3)


def test_gradient_equals_stock(kernel):
    rng = np.random.default_rng(0)
    s_row, s_col = (tf.constant(rng.normal(size=(4, 2, 30)), tf.float32) for _ in range(2))
    w = tf.constant(rng.normal(size=(4, 2, 5)), tf.float32)
    grads = []
    for fn in (scoring.two_stage_top_k, lambda r, c, k: kernel(r, c, k=k)):
        with tf.GradientTape() as tape:
            tape.watch([s_row, s_col])
            loss = tf.reduce_sum(w * fn(s_row, s_col, 5)[0])
        grads.append(tape.gradient(loss, [s_row, s_col]))
    for got, want in zip(grads[1], grads[0], strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)


def test_missing_library_falls_back_with_one_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(selection, "LIBRARY_PATH", tmp_path / "missing.so")
    monkeypatch.setattr(selection, "_state", {"loaded": False, "library": None, "warned": False})
    rng = np.random.default_rng(1)
    s_row, s_col = (rng.integers(-2, 2, (3, 40)).astype(np.float32) for _ in range(2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = selection.two_stage_top_k(s_row, s_col, 6)
        second = selection.two_stage_top_k(s_row, s_col, 6)
    messages = [str(w.message) for w in caught if "selection kernel" in str(w.message)]
    assert len(messages) == 1 and "is not built" in messages[0]
    assert not selection.kernel_available()
    want = scoring.two_stage_top_k(s_row, s_col, 6)
    for got in (first, second):
        np.testing.assert_array_equal(got[1].numpy(), want[1].numpy())
        np.testing.assert_array_equal(got[0].numpy(), want[0].numpy())


def test_broken_library_falls_back(monkeypatch, tmp_path):
    broken = tmp_path / "broken.so"
    broken.write_bytes(b"not an ELF file")
    monkeypatch.setattr(selection, "LIBRARY_PATH", broken)
    monkeypatch.setattr(selection, "_state", {"loaded": False, "library": None, "warned": False})
    with pytest.warns(RuntimeWarning, match="failed to load"):
        assert selection.load_library() is None


def test_stock_selection_traces_stock_ops(kernel):
    fn = tf.function(lambda r, c: selection.two_stage_top_k(r, c, 4))
    spec = tf.TensorSpec((2, 16), tf.float32)
    ops_of = lambda f: {n.op for n in f.graph.as_graph_def().node}  # noqa: E731
    assert selection.OP_NAME in ops_of(fn.get_concrete_function(spec, spec))
    with selection.stock_selection():
        stock = tf.function(lambda r, c: selection.two_stage_top_k(r, c, 4))
        assert selection.OP_NAME not in ops_of(stock.get_concrete_function(spec, spec))
    assert selection.kernel_available()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("heads", [1, 3])
def test_layer_identical_with_either_path(kernel, training, heads):
    tf.keras.utils.set_random_seed(3)
    layer = LMNLayer(num_keys=40, top_k=7, num_heads=heads, key_dim=8, query_norm=True)
    items = tf.random.normal((4, 6, 8))
    user = tf.random.normal((4, 5))
    mask = tf.sequence_mask([6, 3, 1, 0], 6)
    layer(items, user, mask=mask)  # build

    def run():
        with tf.GradientTape() as tape:
            out, slots = layer(items, user, mask=mask, training=training, return_slots=True)
            loss = tf.reduce_sum(out**2) + tf.add_n(layer.losses)
        return out, slots, tape.gradient(loss, layer.trainable_variables)

    def graph_ops(path_fn):
        return {n.op for n in tf.function(path_fn).get_concrete_function()
                .graph.as_graph_def().node}

    moments = [v.numpy() for v in layer.non_trainable_variables]
    with_op = run()
    for v, value in zip(layer.non_trainable_variables, moments, strict=True):
        v.assign(value)  # query_norm's moving moments: both runs start from the same state
    with selection.stock_selection():
        stock = run()
        assert selection.OP_NAME not in graph_ops(lambda: layer(items, user, mask=mask))
    assert selection.OP_NAME in graph_ops(lambda: layer(items, user, mask=mask))
    np.testing.assert_array_equal(with_op[1].numpy(), stock[1].numpy())
    np.testing.assert_allclose(with_op[0].numpy(), stock[0].numpy(), atol=1e-6)
    for got, want in zip(with_op[2], stock[2], strict=True):
        got, want = (tf.convert_to_tensor(g).numpy() for g in (got, want))
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_xla_takes_the_stock_path(kernel):
    # The kernel has no XLA implementation: under jit_compile the wrapper traces stock ops.
    rng = np.random.default_rng(2)
    s_row, s_col = (tf.constant(rng.normal(size=(3, 50)), tf.float32) for _ in range(2))
    got = tf.function(lambda: selection.two_stage_top_k(s_row, s_col, 5), jit_compile=True)()
    want = kernel(s_row, s_col, k=5)
    np.testing.assert_array_equal(got[1].numpy(), want[1].numpy())


def test_portable_path_equals_stock(tmp_path):
    """LMN_TF_SELECTION_PORTABLE=1 runs the code CPUs without AVX-512 get; same answers."""
    script = (
        "import numpy as np, tensorflow as tf\n"
        "from lmn_tf.memory import scoring\n"
        "from lmn_tf.memory.ops import selection\n"
        "op = selection.load_library().lmn_two_stage_top_k\n"
        "rng = np.random.default_rng(3)\n"
        "for m, k, kind in [(100, 32, 'normal'), (1000, 32, 'normal'), (1000, 8, 'ties'),\n"
        "                   (300, 300, 'ties'), (2000, 40, 'binary'), (50, 7, 'normal')]:\n"
        "    make = {'normal': lambda: rng.normal(size=(64, 2, m)),\n"
        "            'ties': lambda: rng.integers(-3, 3, (64, 2, m)),\n"
        "            'binary': lambda: rng.integers(0, 2, (64, 2, m)) * 0.5}[kind]\n"
        "    a, b = (make().astype(np.float32) for _ in range(2))\n"
        "    want, got = scoring.two_stage_top_k(a, b, k), op(a, b, k=k)\n"
        "    assert np.array_equal(got[1], want[1]) and np.array_equal(got[0], want[0]), (m, k)\n"
        "print('portable ok')\n")
    env = {**os.environ, "LMN_TF_SELECTION_PORTABLE": "1", "TF_CPP_MIN_LOG_LEVEL": "0"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "portable ok" in done.stdout
    assert "using the portable path" in done.stderr  # the switch was honoured
