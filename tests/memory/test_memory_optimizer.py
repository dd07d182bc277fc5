"""SparseAdam: Adam's step on the rows read, nothing on the others."""

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf.memory import SparseAdam


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
