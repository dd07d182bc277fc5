"""make_dataset and shard."""

import numpy as np
import pytest

from lmn_tf.data import make_dataset, shard, synthetic
from lmn_tf.data.schema import FEATURES, LABEL


@pytest.fixture(scope="module")
def arrays():
    train, _, _ = synthetic.load(num_users=7, events_per_user=10, warmup_events=5, seed=3)
    return train


def _first_epoch_ids(ds):
    return np.concatenate([b["item_id"].numpy() for b in ds])


def test_batches_are_label_carrying_dicts(arrays):
    batch = next(iter(make_dataset(arrays, batch_size=4)))
    assert set(batch) == {*FEATURES, LABEL}  # true_prob is dropped
    for name, (dtype, shape) in FEATURES.items():
        assert batch[name].dtype.name == dtype and tuple(batch[name].shape) == (4, *shape)
    assert batch[LABEL].dtype.name == "float32"
    np.testing.assert_array_equal(batch["hist_item_ids"], arrays["hist_item_ids"][:4])


def test_order_shuffle_and_remainder(arrays):
    n = len(arrays[LABEL])  # 56
    ordered = _first_epoch_ids(make_dataset(arrays, batch_size=5))
    np.testing.assert_array_equal(ordered, arrays["item_id"])
    ds = make_dataset(arrays, batch_size=5, shuffle=True, seed=1)
    epoch1, epoch2 = _first_epoch_ids(ds), _first_epoch_ids(ds)
    again = _first_epoch_ids(make_dataset(arrays, batch_size=5, shuffle=True, seed=1))
    np.testing.assert_array_equal(epoch1, again)  # reproducible by seed
    assert not np.array_equal(epoch1, epoch2)  # reshuffled each epoch
    np.testing.assert_array_equal(np.sort(epoch1), np.sort(arrays["item_id"]))
    dropped = make_dataset(arrays, batch_size=5, drop_remainder=True)
    assert sum(1 for _ in dropped) == n // 5
    with pytest.raises(ValueError, match="lacks keys"):
        make_dataset({LABEL: arrays[LABEL]}, batch_size=2)


def test_shards_are_equal_disjoint_and_cover(arrays):
    n = len(arrays[LABEL])
    rows = {k: v for k, v in arrays.items()}
    rows["row"] = np.arange(n)
    parts = [shard(rows, 3, i)["row"] for i in range(3)]
    assert {len(p) for p in parts} == {n // 3}
    merged = np.concatenate(parts)
    assert len(set(merged)) == len(merged) == n // 3 * 3
    assert all((np.diff(p) > 0).all() for p in parts)  # time order kept
    with pytest.raises(ValueError, match="index=3"):
        shard(rows, 3, 3)
