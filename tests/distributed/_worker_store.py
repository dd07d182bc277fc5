"""AlltoallValues vs LocalValues on the same table: outputs and gradients, per case.

Each rank looks up its own ids; the local reference (computed on every rank without any
communication) gathers from the full table, and its table gradient sums every rank's loss.
"""

import json
import sys

import numpy as np
import tensorflow as tf

import lmn_tf  # noqa: F401  (tf-keras first)
from lmn_tf.distributed import training
from lmn_tf.distributed.values import AlltoallValues
from lmn_tf.memory.values import LocalValues

training.init()
import horovod.tensorflow as hvd  # noqa: E402

ROWS, DIM = 11, 3  # 11 rows on 2 ranks: shards of 6, rank 1 has a padding row
rank, size = hvd.rank(), hvd.size()
table = np.random.default_rng(0).normal(size=(ROWS, DIM)).astype("float32")


def ids_for(case: str, r: int) -> np.ndarray:
    rng = np.random.default_rng([r, len(case)])
    if case == "uneven_duplicates":  # many repeats, splits differ per rank and direction
        return rng.integers(0, ROWS, size=(3, 4, 2)) if r == 0 else rng.integers(0, 4, (2, 5))
    if case == "rank1_receives_none":  # even ids only: rank 1 owns none of them
        return 2 * rng.integers(0, (ROWS + 1) // 2, size=(4, 3))
    if case == "rank1_sends_none":  # rank 1 has an empty batch
        return rng.integers(0, ROWS, size=(5,)) if r == 0 else np.zeros((0, 2), "int64")
    if case == "one_hot_id":  # every lookup the same row
        return np.full((2, 3), 7)
    raise ValueError(case)


def weights_for(ids: np.ndarray, r: int) -> np.ndarray:
    return np.random.default_rng([r, 99]).normal(size=(*ids.shape, DIM)).astype("float32")


layer_s, layer_l = tf.keras.layers.Layer(), tf.keras.layers.Layer()
sharded, local = AlltoallValues(), LocalValues()
sharded.build(layer_s, ROWS, DIM, "random_normal")
local.build(layer_l, ROWS, DIM, "zeros")
drawn = sharded.full_table().numpy()  # independent per-rank draws, not rank 0's copy
sharded.assign_full_table(table)
local.table.assign(table)
dense = tf.Variable(1.5)  # a replicated weight, to check the tape averages it


def step(ids, weights):
    with tf.GradientTape() as tape:
        out = sharded.lookup(ids)
        loss = tf.reduce_sum(out * weights) * dense
    raw = tape.gradient(loss, [sharded.table, dense], unconnected_gradients="zero")
    with tf.GradientTape() as tape:
        out2 = sharded.lookup(ids)
        loss2 = tf.reduce_sum(out2 * weights) * dense
    model = tf.keras.Model()  # the tape wrapper looks shards up among model variables
    model.shard, model.scalar = sharded.table, dense
    grads = training.distributed_tape(tape, model).gradient(loss2, [sharded.table, dense])
    return out, raw[0], raw[1], grads[0], grads[1]


traced = tf.function(step)
results = {"full_table": float(np.abs(sharded.full_table().numpy() - table).max()),
           "shards_differ": bool(np.abs(drawn[0::2][:5] - drawn[1::2][:5]).max() > 1e-3),
           "cases": {}}
for case in ["uneven_duplicates", "rank1_receives_none", "rank1_sends_none", "one_hot_id"]:
    for mode, fn in [("eager", step), ("function", traced)]:
        ids = ids_for(case, rank)
        weights = weights_for(ids, rank)
        out, graw, gdense, gtape, gtape_dense = fn(tf.constant(ids), tf.constant(weights))
        # Local reference: the same rows, and the table gradient of Σ_r loss_r.
        ref_out = local.lookup(tf.constant(ids)).numpy()
        ref_grad = np.zeros_like(table)
        ref_dense = 0.0
        for r in range(size):
            ids_r = ids_for(case, r)
            w_r = weights_for(ids_r, r)
            np.add.at(ref_grad, ids_r.reshape(-1), 1.5 * w_r.reshape(-1, DIM))
            ref_dense += float((table[ids_r] * w_r).sum())
        owned = np.zeros((sharded.local_rows, DIM), "float32")
        mine = ref_grad[rank::size]
        owned[: len(mine)] = mine
        dense_raw = tf.convert_to_tensor(graw).numpy() if graw is not None else 0 * owned
        dense_tape = tf.convert_to_tensor(gtape).numpy()
        results["cases"][f"{case}/{mode}"] = {
            "shape_ok": list(out.shape) == [*list(ids.shape), DIM],
            "indexed_slices": isinstance(graw, tf.IndexedSlices),
            "out": float(np.abs(out.numpy() - ref_out).max(initial=0)),
            "grad": float(np.abs(dense_raw - owned).max()),
            # the tape: shard gradient divided by N, replicated gradient averaged
            "tape_shard": float(np.abs(dense_tape - owned / size).max()),
            "tape_sparse": isinstance(gtape, tf.IndexedSlices),
            "tape_dense": abs(float(gtape_dense) - ref_dense / size),
            "received": int(tf.size(graw.indices)) if graw is not None else 0,
        }
try:  # a global batch that 2 ranks cannot split evenly must be refused
    training.shard_dataset(tf.data.Dataset.range(10), 3)
    results["odd_batch_refused"] = False
except ValueError:
    results["odd_batch_refused"] = True
# GroupRouter's k-means over the store's sum_over_workers: each rank routes its own
# histories, and the centroids and counts stay equal on every rank.
from lmn_tf.models.group_router import GroupRouter  # noqa: E402

router = GroupRouter(num_groups=3, buckets=16, value_store=sharded)
step = tf.function(lambda ids: router(ids, ids != 0, training=True))
for call in range(3):  # the first eagerly (it builds the weights), then in a tf.function
    ids = tf.constant(np.random.default_rng([rank, call]).integers(0, 30, size=(4 + rank, 5)))
    if call:
        step(ids)
    else:
        router(ids, ids != 0, training=True)
results["router"] = {"centroids": router.centroids.numpy().tolist(),
                     "assigned": router.assigned.numpy().tolist()}
with open(f"{sys.argv[1]}/rank{rank}.json", "w") as f:
    json.dump(results, f, indent=1)
