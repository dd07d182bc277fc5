"""GroupRouter: history bags, the seeding batch and one hand-computed k-means step."""

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf.models.group_router import GroupRouter


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_first_training_batch_seeds_the_centroids_then_each_moves_to_its_bags():
    router = GroupRouter(num_groups=2, buckets=4)
    ids = tf.constant([[1, 0, 0], [2, 3, 0]])  # bags e1 and (e2 + e3)/sqrt(2)
    np.testing.assert_array_equal(router(ids, ids != 0, training=True).numpy(), [0, 1])
    # seeded with the two bags, each then moved by n/N = 1/1 onto the mean of its own bag
    np.testing.assert_allclose(router.centroids.numpy().T,  # (D, C): a centroid per column
                               [[0, 1, 0, 0], _unit([0, 0, 1, 1])], atol=1e-6)
    np.testing.assert_array_equal(router.assigned.numpy(), [1, 1])

    # Second batch: bags e1 + e2 (nearer centroid 0: cos 0.71 vs 0.5) and e1 (centroid 0).
    ids = tf.constant([[1, 2, 0], [1, 1, 0]])
    np.testing.assert_array_equal(router(ids, ids != 0, training=True).numpy(), [0, 0])
    mean = (_unit([0, 1, 1, 0]) + _unit([0, 1, 0, 0])) / 2  # n = 2, N = 3: rate 2/3
    expected = _unit(np.array([0, 1, 0, 0]) + 2 / 3 * (mean - np.array([0, 1, 0, 0])))
    np.testing.assert_allclose(router.centroids.numpy()[:, 0], expected, atol=1e-6)
    np.testing.assert_allclose(router.centroids.numpy()[:, 1], _unit([0, 0, 1, 1]), atol=1e-6)
    np.testing.assert_array_equal(router.assigned.numpy(), [3, 1])


def test_inference_routes_without_moving_and_ignores_masked_items():
    router = GroupRouter(num_groups=2, buckets=8)
    ids = tf.constant([[1, 2], [5, 6]])
    router(ids, ids != 0, training=True)
    before = router.centroids.numpy().copy()
    # item 5 is masked out of the first history: only item 1 counts, so group 0
    got = router(tf.constant([[1, 5], [6, 6]]), tf.constant([[True, False], [True, True]]))
    np.testing.assert_array_equal(got.numpy(), [0, 1])
    np.testing.assert_array_equal(router.centroids.numpy(), before)


def test_ids_share_a_bucket_modulo_buckets():
    router = GroupRouter(num_groups=2, buckets=4)
    ids = tf.constant([[1, 0], [2, 0]])
    router(ids, ids != 0, training=True)
    wrapped = tf.constant([[5, 0], [6, 0]])  # 5 = 1 and 6 = 2 modulo 4
    np.testing.assert_array_equal(router(wrapped, wrapped != 0).numpy(), [0, 1])


@pytest.mark.parametrize("kwargs, match", [
    ({"num_groups": 0}, "num_groups=0"),
    ({"num_groups": 3, "buckets": -1}, "buckets=-1"),
    ({"num_groups": 2.5}, "num_groups=2.5"),
])
def test_bad_sizes_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GroupRouter(**kwargs)


def test_config_round_trips():
    router = GroupRouter(num_groups=5, buckets=16, name="r")
    again = GroupRouter.from_config(router.get_config())
    assert (again.num_groups, again.buckets, again.name) == (5, 16, "r")
