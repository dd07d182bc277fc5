"""The old name of ``lmn_tf.data.random_batches``, kept so that code written against it runs."""

from lmn_tf.data.random_batches import random_arrays, random_features, zero_features

__all__ = ["random_arrays", "random_features", "zero_features"]
