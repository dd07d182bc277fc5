"""LMNLayer with AlltoallValues vs LocalValues: outputs and gradients; sharded checkpoint
save/restore and consolidation back into a single-worker layer."""

import json
import sys

import numpy as np
import tensorflow as tf

from lmn_tf.distributed import shard_checkpoints, training
from lmn_tf.distributed.values import AlltoallValues
from lmn_tf.memory import LMNLayer
from lmn_tf.memory.ops import selection
from lmn_tf.memory.values import LocalValues

training.init()
import horovod.tensorflow as hvd  # noqa: E402

rank, size = hvd.rank(), hvd.size()
B, L, D, DU = 3, 4, 5, 2
OPTIONS = {"num_keys": 5, "top_k": 3, "num_heads": 2, "key_dim": 4, "value_dim": 6,
           "query_hidden_units": (8,), "memory_loss_weight": 0.5}  # 25 slots: uneven shards


def inputs_for(r):
    rng = np.random.default_rng([r, 7])
    items = tf.constant(rng.normal(size=(B, L, D)), tf.float32)
    user = tf.constant(rng.normal(size=(B, DU)), tf.float32)
    mask = tf.sequence_mask([L, 1 + r, 0], L)  # a user with no history on every rank
    weights = tf.constant(rng.normal(size=(B, L, 6)), tf.float32)
    return items, user, mask, weights


# AlltoallValues divides each rank's memory-loss sum by the global item count (x size), so
# the reference local layer must do the same to give the same per-rank loss.
GLOBAL_ITEMS = sum(float(tf.reduce_sum(tf.cast(inputs_for(r)[2], tf.float32)))
                   for r in range(size))


class GlobalMeanValues(LocalValues):
    def batch_mean(self, total, count):
        return total * size / GLOBAL_ITEMS


def grads(layer, items, user, mask, weights):
    with tf.GradientTape() as tape:
        out = layer(items, user, mask=mask, training=True)
        loss = tf.reduce_sum(out * weights) + tf.add_n(layer.losses)
    return out, loss, tape.gradient(loss, layer.trainable_weights)


def build(store=None):
    layer = LMNLayer(**OPTIONS, value_store=store)
    items, user, mask, _ = inputs_for(0)
    layer(items, user, mask=mask)
    return layer


tf.random.set_seed(1)
local = build(GlobalMeanValues())
training.broadcast_variables(local)  # unseeded Keras initializers differ per process
sharded = build(AlltoallValues())
shard_checkpoints.copy_weights(local, sharded)  # local -> shards: the same model on every rank
value_index = next(i for i, w in enumerate(sharded.trainable_weights)
               if w is sharded.value_variables[0])
result = {"selection_kernel": selection.kernel_available()}  # which path the layer ran
for mode, fn in [("eager", grads), ("function", tf.function(grads))]:
    out_s, loss_s, g_s = fn(sharded, *inputs_for(rank))
    out_l, loss_l, g_l = grads(local, *inputs_for(rank))
    # Reference table gradient: Σ over every rank's loss, computed locally.
    table_grad = sum(tf.convert_to_tensor(grads(local, *inputs_for(r))[2][value_index])
                     for r in range(size)).numpy()
    owned = np.zeros(sharded.value_variables[0].shape, "float32")
    owned[: len(table_grad[rank::size])] = table_grad[rank::size]
    dense_diff = max(float(np.abs(tf.convert_to_tensor(a) - tf.convert_to_tensor(b)).max())
                     for i, (a, b) in enumerate(zip(g_s, g_l, strict=True)) if i != value_index)
    result[mode] = {
        "out": float(np.abs(out_s - out_l).max()), "loss": abs(float(loss_s - loss_l)),
        "dense_grads": dense_diff, "num_weights": len(g_s),
        "values_indexed_slices": isinstance(g_s[value_index], tf.IndexedSlices),
        "values_grad": float(np.abs(tf.convert_to_tensor(g_s[value_index]) - owned).max()),
        "values_grad_norm": float(np.abs(owned).sum()),
    }

# Sharded checkpoint -> a fresh sharded layer -> consolidated into a fresh local layer.
ckpt_dir = f"{sys.argv[1]}/ckpt"
shard_checkpoints.save(ckpt_dir, sharded)
tf.random.set_seed(2)
restored = build(AlltoallValues())
changed = float(np.abs(restored.value_variables[0] - sharded.value_variables[0]).max())
shard_checkpoints.restore(ckpt_dir, restored)
single = build()
shard_checkpoints.copy_weights(restored, single)  # shards -> one table (allgather)
items, user, mask, _ = inputs_for(rank)
# The saved model itself is the reference: query_norm's moving moments are state that the
# training-mode calls above moved differently in `local` (called once per rank's inputs).
want = sharded(items, user, mask=mask, training=False)
result["restore"] = {
    "fresh_differed": changed,
    "sharded": float(np.abs(restored(items, user, mask=mask, training=False) - want).max()),
    "consolidated": float(np.abs(single(items, user, mask=mask, training=False) - want).max()),
    "full_table": float(np.abs(single.value_variables[0] - local.value_variables[0]).max()),
}
with open(f"{sys.argv[1]}/rank{rank}.json", "w") as f:
    json.dump(result, f, indent=1)
