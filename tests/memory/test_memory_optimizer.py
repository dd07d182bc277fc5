"""SparseAdam: Adam's step on the rows read, nothing on the others."""

import os

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf.memory import SparseAdam
from lmn_tf.memory.ops import selection, sparse_adam


def _steps(optimizer, table, rows_per_step):
    for rows in rows_per_step:
        with tf.GradientTape() as tape:
            # Row r's gradient: (r + 1) * (step's weight), repeated rows summed.
            loss = tf.reduce_sum(tf.gather(table, rows) * np.arange(1.0, 4.0))
        grad = tape.gradient(loss, table)
        assert isinstance(grad, tf.IndexedSlices)
        optimizer.apply_gradients([(grad, table)])


def test_rows_read_every_step_follow_adam_exactly():
    start = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    sparse, dense = tf.Variable(start), tf.Variable(start)
    steps = [[0, 1, 2, 2], [2, 1, 0], [1, 0, 2, 0]]
    _steps(SparseAdam(0.1), sparse, steps)
    _steps(tf.keras.optimizers.legacy.Adam(0.1), dense, steps)
    np.testing.assert_allclose(sparse.numpy(), dense.numpy(), rtol=1e-6, atol=1e-7)


def test_unread_rows_and_their_moments_stay_put():
    table = tf.Variable(np.ones((4, 3), np.float32))
    optimizer = SparseAdam(0.1)
    _steps(optimizer, table, [[1], [1, 3]])
    np.testing.assert_array_equal(table.numpy()[[0, 2]], 1.0)
    for slot in ("m", "v"):
        np.testing.assert_array_equal(optimizer.get_slot(table, slot).numpy()[[0, 2]], 0.0)
    # Row 3 read once, at step 2: Adam's first step, lr per coordinate (bias-corrected at
    # the global step 2, as in lazy Adam: 0.1 * sqrt(1 - b2²) / (1 - b1²) / sqrt(1 - b2)).
    b1, b2 = 0.9, 0.999
    expected = 0.1 * np.sqrt(1 - b2**2) / (1 - b1**2) * (1 - b1) / np.sqrt(1 - b2)
    np.testing.assert_allclose(1.0 - table.numpy()[3], expected, rtol=1e-4)
    assert 0.0 < 1.0 - table.numpy()[1, 0] < 0.25  # two steps of about lr each


def test_config_round_trips():
    optimizer = SparseAdam(0.03, beta_1=0.8)
    again = SparseAdam.from_config(optimizer.get_config())
    assert again.get_config() == optimizer.get_config()
    assert float(again.learning_rate) == pytest.approx(0.03)


def _random_steps(optimizer, table, seed, steps=3, reads=500):
    rng = np.random.default_rng(seed)
    n, d = table.shape
    for _ in range(steps):
        rows = rng.integers(0, n, reads)  # many repeats: each row's gradients are summed
        grad = tf.constant(rng.normal(size=(reads, d)), tf.float32)
        optimizer.apply_gradients([(tf.IndexedSlices(grad, tf.constant(rows), (n, d)), table)])


# Built by `pip install -e .` (what .ci/bootstrap runs): as for the selection op's tests, a
# missing library fails these, unless the run asks for the stock path on purpose.
kernel_tests = pytest.mark.skipif(os.environ.get(selection.ENV_SWITCH) == "0",
                                  reason="kernel library disabled by LMN_TF_SELECTION_KERNEL=0")


@pytest.fixture
def library():
    library = selection.load_library()
    assert library is not None, f"{selection.LIBRARY_PATH} is not built: pip install -e ."
    return library


@kernel_tests
def test_the_kernel_step_equals_the_stock_step(library, monkeypatch):
    # SparseAdam through the C++ op (the default where the library loads) against the stock
    # path (OptimizerV2's deduplication + _resource_apply_sparse): float rounding only.
    start = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    fused, stock = tf.Variable(start), tf.Variable(start)
    fused_opt, stock_opt = SparseAdam(0.03), SparseAdam(0.03)
    _random_steps(fused_opt, fused, seed=2)

    def step():  # traced, not run: which op the step uses
        fused_opt.apply_gradients([(tf.IndexedSlices(tf.zeros((1, 8)), tf.constant([0]),
                                                     (300, 8)), fused)])

    graph = tf.function(step).get_concrete_function().graph
    assert "LmnSparseAdamApply" in {op.type for op in graph.get_operations()}
    monkeypatch.setattr(sparse_adam, "supports", lambda *args: False)  # the stock path
    _random_steps(stock_opt, stock, seed=2)
    np.testing.assert_allclose(fused.numpy(), stock.numpy(), rtol=1e-5, atol=1e-6)
    for slot in ("m", "v"):
        np.testing.assert_allclose(fused_opt.get_slot(fused, slot).numpy(),
                                   stock_opt.get_slot(stock, slot).numpy(), rtol=1e-5,
                                   atol=1e-7)


@kernel_tests
def test_the_kernel_refuses_rows_outside_the_table(library):
    table = tf.Variable(np.zeros((4, 2), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"indices\[1\] = 4 is not in"):
        SparseAdam(0.1).apply_gradients([(tf.IndexedSlices(
            tf.ones((2, 2)), tf.constant([0, 4]), (4, 2)), table)])
    np.testing.assert_array_equal(table.numpy(), 0.0)  # nothing written
