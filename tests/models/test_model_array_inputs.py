"""A ranking model called on a dict of NumPy arrays or Python lists predicts what it predicts
on tensors (issue 20)."""

import numpy as np
import pytest

from lmn_tf.data import schema
from lmn_tf.data.random_batches import random_arrays, random_features
from lmn_tf.models import build_model

VOCAB = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)


@pytest.mark.parametrize("name", ["base", "din", "lmn"])
def test_dict_of_arrays_or_lists_equals_dict_of_tensors(name):
    model = build_model(name, VOCAB, embedding_dim=4)
    expected = model(random_features(VOCAB, 3)).numpy()
    arrays = random_arrays(VOCAB, 3)
    np.testing.assert_allclose(model(arrays).numpy(), expected, rtol=0, atol=1e-6)
    lists = {k: v.tolist() for k, v in arrays.items()}
    np.testing.assert_allclose(model(lists).numpy(), expected, rtol=0, atol=1e-6)
