"""The memory block: LMNLayer, its product-key scoring, value stores, the values' optimizer and
usage diagnostics."""

from lmn_tf.memory.diagnostics import (
    SlotCoverage,
    SlotUsageEntropy,
    TopSlotShare,
    slot_usage_metrics,
)
from lmn_tf.memory.layer import LMNLayer
from lmn_tf.memory.optimizer import SparseAdam
from lmn_tf.memory.values import LocalValues, ValueStore

__all__ = [
    "LMNLayer",
    "LocalValues",
    "SlotCoverage",
    "SlotUsageEntropy",
    "SparseAdam",
    "TopSlotShare",
    "ValueStore",
    "slot_usage_metrics",
]
