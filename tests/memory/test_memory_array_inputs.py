"""NumPy arrays and Python lists work wherever tensors do (issue 20): Keras converts only a
layer's first positional argument, so `user` and `mask` used to fail with an AttributeError."""

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf.memory import LMNLayer, diagnostics


def _arrays(b=2, seq=5, d=8, d_u=3):
    rng = np.random.default_rng(0)
    items = rng.normal(size=(b, seq, d)).astype("float32")
    user = rng.normal(size=(b, d_u)).astype("float32")
    mask = rng.random((b, seq)) < 0.6
    return items, user, mask


@pytest.mark.parametrize("training", [False, True])
def test_numpy_and_list_inputs_equal_tensor_inputs(training):
    items, user, mask = _arrays()
    layer = LMNLayer(num_keys=8, top_k=4)
    expected = layer(tf.constant(items), tf.constant(user), mask=tf.constant(mask),
                     training=training)
    for as_input in (np.asarray, lambda a: a.tolist()):
        got = layer(as_input(items), as_input(user), mask=as_input(mask), training=training)
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    unmasked = layer(items, user, training=training)  # NumPy, no mask
    np.testing.assert_array_equal(
        unmasked.numpy(), layer(tf.constant(items), tf.constant(user), training=training).numpy())


def test_numpy_slots_equal_tensor_slots():
    items, user, mask = _arrays()
    layer = LMNLayer(num_keys=8, top_k=4)
    _, slots = layer(items, user, mask=mask, return_slots=True)
    _, expected = layer(tf.constant(items), tf.constant(user), mask=tf.constant(mask),
                        return_slots=True)
    np.testing.assert_array_equal(slots.numpy(), expected.numpy())


def test_numpy_inputs_of_the_wrong_shape_get_the_layers_value_error():
    items, user, mask = _arrays()
    layer = LMNLayer(num_keys=8, top_k=4)
    with pytest.raises(ValueError, match=r"`user` must be \(B, d_u\)\. Received: user\.shape"):
        layer(items, user[:, None, :])
    with pytest.raises(ValueError, match=r"`user` must be \(B, d_u\)"):
        layer(items, user.tolist()[0])  # a list of rank 1
    with pytest.raises(ValueError, match=r"`mask` must be \(B, L\)"):
        layer(items, user, mask=mask[:, :2])
    with pytest.raises(ValueError, match=r"batch sizes differ"):
        layer(items, user[:1])


@pytest.mark.parametrize("as_input", [np.asarray, lambda a: a.tolist()],
                         ids=["numpy", "list"])
def test_diagnostics_accept_arrays(as_input):
    slots = np.array([[0, 0, 1, -1], [3, 3, 3, -1]])
    for metric in diagnostics.slot_usage_metrics(num_slots=4, window=2):
        expected = type(metric).from_config(metric.get_config())
        expected.update_state(tf.constant(slots))
        metric.update_state(as_input(slots))
        assert float(metric.result()) == pytest.approx(float(expected.result()))
