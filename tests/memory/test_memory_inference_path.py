"""LMNLayer's inference path (training=False) computes the training path's read-out."""

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf.memory import LMNLayer


@pytest.mark.parametrize("kwargs", [
    {},
    {"query_hidden_units": (8,), "head_hidden_units": (5,)},
    {"query_norm": True},
    {"num_heads": 3, "query_norm": True, "head_hidden_units": (7,)},
    {"scoring": "broadcast", "num_heads": 2},
])
def test_inference_path_reads_the_same_slots_and_values(kwargs):
    rng = np.random.default_rng(0)
    items = tf.constant(rng.normal(size=(4, 9, 6)), tf.float32)
    user = tf.constant(rng.normal(size=(4, 5)), tf.float32)
    mask = tf.constant(rng.random((4, 9)) < 0.7)
    layer = LMNLayer(num_keys=20, top_k=6, key_dim=8, value_dim=12, **kwargs)
    layer(items, user, mask=mask, training=True)
    if layer.query_norm:  # moments far from (0, 1), so that the folded scaling matters
        for v in layer.query_moments.values():
            v.assign(tf.random.uniform(v.shape, 0.5, 2.0, seed=1))
    keep = tf.cast(mask, tf.bool)
    _, scores, slots = layer._select(items, user, keep, training=False)  # the training path
    m_q, fast_scores, fast_slots = layer._select_inference(items, user)
    np.testing.assert_array_equal(fast_slots.numpy(), slots.numpy())
    np.testing.assert_allclose(fast_scores.numpy(), scores.numpy(), rtol=1e-5, atol=1e-5)
    assert m_q.shape == (4, 9, 12)
    out, read = layer(items, user, mask=mask, training=False, return_slots=True)
    np.testing.assert_array_equal(read.numpy(), tf.where(keep[..., None, None], slots, -1))
    assert out.shape == (4, 9, 12)


def test_first_call_at_inference_builds_the_same_weights():
    items, user = tf.ones((2, 3, 4)), tf.ones((2, 5))
    trained, inferred = LMNLayer(num_keys=6, top_k=2), LMNLayer(num_keys=6, top_k=2)
    trained(items, user, training=True)
    inferred(items, user, training=False)
    assert [w.shape for w in inferred.weights] == [w.shape for w in trained.weights]
    assert [w.name.split("/", 1)[1] for w in inferred.weights] == [
        w.name.split("/", 1)[1] for w in trained.weights]
