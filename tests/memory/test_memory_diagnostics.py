"""Slot-usage diagnostics: hand-checked values, windows, padding, reset, XLA, use in fit."""

import math

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf.memory import (
    LMNLayer,
    SlotCoverage,
    SlotUsageEntropy,
    TopSlotShare,
    slot_usage_metrics,
)


def test_values_by_hand():
    coverage, entropy, top = slot_usage_metrics(num_slots=8, top_fraction=0.25)
    for metric in (coverage, entropy, top):
        metric.update_state(tf.constant([[[0, 1]], [[1, -1]]]))  # (B, L, K); -1 = padding
        metric.update_state(tf.constant([1, 2, -1, -1]))
    # reads: slot 0 once, slot 1 three times, slot 2 once; padding ignored.
    assert float(coverage.result()) == pytest.approx(3 / 8)
    p = np.array([1, 3, 1]) / 5
    assert float(entropy.result()) == pytest.approx(-(p * np.log(p)).sum() / math.log(8))
    assert float(top.result()) == pytest.approx(4 / 5)  # top 2 slots: 3 + 1 reads of 5
    for metric in (coverage, entropy, top):
        metric.reset_state()
    assert float(coverage.result()) == 0.0 and float(entropy.result()) == 0.0


def test_uniform_use_gives_full_coverage_and_entropy():
    coverage, entropy, top = slot_usage_metrics(num_slots=4, top_fraction=0.5)
    for metric in (coverage, entropy, top):
        metric.update_state(tf.constant([3, 2, 1, 0, 0, 1, 2, 3]))
    assert float(coverage.result()) == 1.0
    assert float(entropy.result()) == pytest.approx(1.0)
    assert float(top.result()) == pytest.approx(0.5)


def test_coverage_window_forgets_old_reads():
    coverage = SlotCoverage(num_slots=4, window=2)
    for slots in ([0], [1], [2]):
        coverage.update_state(tf.constant(slots))
    assert float(coverage.result()) == pytest.approx(2 / 4)  # slot 0 is 3 updates old
    coverage.update_state(tf.constant([0, 0]))
    assert float(coverage.result()) == pytest.approx(2 / 4)  # slots 2 and 0


def test_xla_update_and_config():
    metric = TopSlotShare(num_slots=10, top_fraction=0.1)

    @tf.function(jit_compile=True)
    def update(slots):
        metric.update_state(slots)

    update(tf.constant([[1, 1, 2, -1]]))
    assert float(metric.result()) == pytest.approx(2 / 3)
    for cls, extra in ((SlotCoverage, {"window": 3}), (SlotUsageEntropy, {}),
                       (TopSlotShare, {"top_fraction": 0.2})):
        metric = cls(num_slots=5, **extra)
        assert cls.from_config(metric.get_config()).get_config() == metric.get_config()


@pytest.mark.parametrize(("cls", "kwargs", "arg"), [
    (SlotCoverage, {"num_slots": 0}, "num_slots"),
    (SlotCoverage, {"num_slots": 4, "window": 0}, "window"),
    (SlotUsageEntropy, {"num_slots": -1}, "num_slots"),
    (TopSlotShare, {"num_slots": 4, "top_fraction": 0.0}, "top_fraction"),
])
def test_invalid_arguments(cls, kwargs, arg):
    with pytest.raises(ValueError, match=f"Received: {arg}="):
        cls(**kwargs)


class _Tracked(tf.keras.Model):
    """How a model leaves the diagnostics on: slots from the layer, metrics in train_step."""

    def __init__(self):
        super().__init__()
        self.memory = LMNLayer(num_keys=4, top_k=2, num_heads=2, key_dim=4)
        self.head = tf.keras.layers.Dense(1)
        self.usage = slot_usage_metrics(self.memory.num_slots, window=2)

    def call(self, inputs, training=None):
        items, user, mask = inputs
        out, slots = self.memory(items, user, mask=mask, return_slots=True)
        for metric in self.usage:
            metric.update_state(slots)
        return self.head(tf.reduce_mean(out, axis=1))


def test_metrics_show_in_fit():
    model = _Tracked()
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(8, 3, 5)).astype("float32"), rng.normal(size=(8, 2)).astype("float32"),
         rng.random((8, 3)) < 0.7]
    history = model.fit(x, np.ones((8, 1), "float32"), batch_size=4, verbose=0)
    assert {"slot_coverage", "slot_entropy", "top_slot_share", "memory_loss"} <= set(
        history.history)
    assert 0 < history.history["slot_coverage"][0] <= 1


def test_group_slot_overlap_by_hand():
    from lmn_tf.memory.diagnostics import group_slot_overlap

    # item 7: users of group 0 read {1, 2} and {1, 2} (1.0), of group 1 {3} and {3, -1}
    # (1.0: -1 is no slot); across groups every pair is disjoint. Item 8: one sample only.
    slots = np.array([[1, 2], [1, 2], [3, -1], [3, 3], [1, 2]])
    got = group_slot_overlap(slots, groups=[0, 0, 1, 1, 1], items=[7, 7, 7, 7, 8])
    assert got == {"within": 1.0, "across": 0.0}
    # Two samples of one user are no evidence: with users given, only the pair of users 5, 6
    # of group 0 is within (1.0), and samples 0, 1 of user 5 are not compared.
    got = group_slot_overlap(np.array([[1, 2], [1, 2], [1, 3]]), groups=[0, 0, 0],
                             items=[7, 7, 7], users=[5, 5, 6])
    assert got["within"] == 0.333 and np.isnan(got["across"])
    # Half-overlapping sets: |{1,2} & {2,3}| / |{1,2,3}| = 1/3, across groups.
    got = group_slot_overlap(np.array([[1, 2], [2, 3]]), groups=[0, 1], items=[7, 7])
    assert got["across"] == 0.333 and np.isnan(got["within"])
