"""Broadcast (paper eq. 9) and exact two-stage top-K select the same slots, ties included."""

from unittest import mock

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lmn_tf.memory import LMNLayer, scoring
from lmn_tf.memory.scoring import axis_top_k, block_top_k, broadcast_top_k, two_stage_top_k


def _reference(s_row, s_col, k):
    """Plain numpy: sort all (score desc, slot id asc); slot (i, j) has id i*m + j."""
    m = s_row.shape[-1]
    scores = (s_row[..., :, None] + s_col[..., None, :]).reshape(*s_row.shape[:-1], m * m)
    order = np.lexsort((np.broadcast_to(np.arange(m * m), scores.shape), -scores), axis=-1)
    ids = order[..., :k]
    return np.take_along_axis(scores, ids, -1), ids


@st.composite
def _scores(draw):
    lead = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))  # e.g. (B, L, H)
    m = draw(st.integers(1, 9))
    k = draw(st.integers(1, m))
    # Small integers (forced ties), -0.0 or halves: every sum is exact in float32.
    values = (st.integers(-3, 3).map(float) | st.just(-0.0)
              | st.integers(-200, 200).map(lambda v: v / 2))
    row, col = (draw(arrays(np.float32, (*lead, m), elements=values)) for _ in range(2))
    return row, col, k


@settings(max_examples=150, deadline=None)
@given(_scores())
def test_modes_select_the_same_slots_in_the_same_order(case):
    s_row, s_col, k = case
    ref_scores, ref_ids = _reference(s_row, s_col, k)
    for fn in (broadcast_top_k, two_stage_top_k):
        scores, ids = fn(tf.constant(s_row), tf.constant(s_col), k)
        np.testing.assert_array_equal(ids.numpy(), ref_ids, err_msg=fn.__name__)
        np.testing.assert_array_equal(scores.numpy(), ref_scores, err_msg=fn.__name__)


@st.composite
def _rows(draw):
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    m = draw(st.integers(1, 40))
    k = draw(st.integers(1, m))
    block = draw(st.integers(1, m))  # m % block != 0 often: a padded last block
    # Few distinct values (heavy ties), signed zeros and -inf (ties with the padding).
    values = st.sampled_from([-2.0, -1.0, -0.0, 0.0, 1.0, 2.0, float("-inf")]) | st.floats(
        -4, 4, width=32)
    return draw(arrays(np.float32, (*lead, m), elements=values)), k, block


@settings(max_examples=300, deadline=None)
@given(_rows())
def test_block_top_k_equals_top_k(case):
    x, k, block = case
    ref = tf.math.top_k(tf.constant(x), k=k)
    values, ids = block_top_k(tf.constant(x), k, block)
    np.testing.assert_array_equal(ids.numpy(), ref.indices.numpy())
    np.testing.assert_array_equal(values.numpy(), ref.values.numpy())


def test_axis_top_k_prunes_long_rows_exactly():
    rng = np.random.default_rng(0)
    m = scoring.BLOCK_MIN_KEYS + 5  # pruned, with a padded last block
    x = rng.integers(-50, 50, (3, 2, m)).astype(np.float32)  # many ties
    x[0, 0] = rng.normal(size=m)
    ref = tf.math.top_k(tf.constant(x), k=32)
    with mock.patch.object(scoring, "block_top_k", wraps=block_top_k) as pruned:
        values, ids = tf.function(lambda t: axis_top_k(t, 32))(tf.constant(x))
    pruned.assert_called_once()
    np.testing.assert_array_equal(ids.numpy(), ref.indices.numpy())
    np.testing.assert_array_equal(values.numpy(), ref.values.numpy())


@settings(max_examples=100, deadline=None)
@given(_scores(), st.integers(1, 4))
def test_two_stage_with_pruned_axes_matches_reference(case, block):
    s_row, s_col, k = case
    ref_scores, ref_ids = _reference(s_row, s_col, k)
    with mock.patch.multiple(scoring, BLOCK_MIN_KEYS=1, BLOCK_SIZE=block):
        scores, ids = two_stage_top_k(tf.constant(s_row), tf.constant(s_col), k)
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_array_equal(scores.numpy(), ref_scores)


def test_two_stage_tie_across_stages():
    # Sums: row 1 = (5, 3, 4), row 0 = (3, 1, 2). Third place is a tie at 3 between slot 4
    # = (1, 1) and slot 0 = (0, 0); slot 0 wins although row 0 ranks below row 1, so listing
    # candidates in per-axis rank order (as PKM code does) would pick slot 4.
    s_row = tf.constant([[1.0, 3.0, 0.0]])
    s_col = tf.constant([[2.0, 0.0, 1.0]])
    for fn in (broadcast_top_k, two_stage_top_k):
        scores, ids = fn(s_row, s_col, 3)
        np.testing.assert_array_equal(ids.numpy(), [[3, 5, 0]], err_msg=fn.__name__)
        np.testing.assert_array_equal(scores.numpy(), [[5.0, 4.0, 3.0]])
    # Signed zeros compare equal, so every sum below ties and ids decide.
    for fn in (broadcast_top_k, two_stage_top_k):
        _, ids = fn(tf.constant([[-0.0, 0.0]]), tf.constant([[-0.0, -0.0]]), 2)
        np.testing.assert_array_equal(ids.numpy(), [[0, 1]], err_msg=fn.__name__)


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_layer_modes_give_the_same_slots_and_output(data):
    m = data.draw(st.integers(1, 6), "num_keys")
    k = data.draw(st.integers(1, m), "top_k")
    heads = data.draw(st.integers(1, 3), "num_heads")
    b, seq = data.draw(st.integers(1, 3), "B"), data.draw(st.integers(1, 4), "L")
    seed = data.draw(st.integers(0, 2**16), "seed")
    rng = np.random.default_rng(seed)
    items = tf.constant(rng.normal(size=(b, seq, 4)), tf.float32)
    user = tf.constant(rng.normal(size=(b, 2)), tf.float32)
    mask = tf.constant(rng.random((b, seq)) < 0.8)
    layers = [LMNLayer(m, k, heads, key_dim=3, scoring=s) for s in ("broadcast", "two_stage")]
    for layer in layers:
        layer(items, user, mask=mask)
    # Keys drawn from only two distinct vectors: many exactly equal scores, i.e. ties.
    layers[0].set_weights(layers[1].get_weights())
    for keys in (layers[0].row_keys, layers[0].col_keys):
        keys.assign(tf.gather(rng.normal(size=(2, 3)).astype("float32"),
                              rng.integers(0, 2, (heads, m))))
    layers[1].set_weights(layers[0].get_weights())
    (out_b, slots_b), (out_t, slots_t) = (
        layer(items, user, mask=mask, return_slots=True) for layer in layers)
    np.testing.assert_array_equal(slots_b.numpy(), slots_t.numpy())
    np.testing.assert_allclose(out_b.numpy(), out_t.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layers[0].losses[-1], layers[1].losses[-1], rtol=1e-6)
