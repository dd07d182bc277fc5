"""lmn_tf.data.random_batches: batches shaped like the schema, for model building, export
warm-up and tests (production code builds models and warm-up rows with it)."""

import doctest

import numpy as np

from lmn_tf.data import random_batches, schema
from lmn_tf.data.random_batches import random_arrays, random_features, zero_features

VOCAB = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)


def test_random_arrays_follow_the_schema():
    arrays = random_arrays(VOCAB, 64, seed=1)
    assert set(arrays) == {*schema.FEATURES, schema.LABEL}
    for name, (dtype, shape) in schema.FEATURES.items():
        assert arrays[name].dtype == dtype and arrays[name].shape == (64, *shape), name
    items = arrays["hist_item_ids"]
    assert items.min() == 0 and 0 < items.max() < VOCAB.num_items  # padded, ids in range
    padded = np.arange(items.shape[1])[None, :] >= (items != 0).sum(1)[:, None]
    np.testing.assert_array_equal(items == 0, padded)  # left-aligned, zero-padded tail
    for seq, side in schema.RATINGS_OF.items():  # ratings padded exactly where items are
        np.testing.assert_array_equal(arrays[side] == 0, arrays[seq] == 0)
        assert arrays[side].max() < schema.NUM_RATINGS
    assert set(np.unique(arrays[schema.LABEL])) <= {0.0, 1.0}


def test_seeded_and_as_tensors():
    a, b = random_arrays(VOCAB, 5, seed=3), random_features(VOCAB, 5, seed=3)
    for name, value in a.items():
        np.testing.assert_array_equal(b[name].numpy(), value)
    assert not np.array_equal(random_arrays(VOCAB, 5, seed=4)["item_id"], a["item_id"])


def test_zero_features_is_one_padding_batch():
    batch = zero_features(2)
    assert set(batch) == set(schema.FEATURES)
    assert all(not np.any(t.numpy()) for t in batch.values())


def test_docstring_example():
    assert doctest.testmod(random_batches).failed == 0
