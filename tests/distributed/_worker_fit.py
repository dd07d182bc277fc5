"""One epoch of the LMN model under Horovod (any world size), the single-worker recipe's
weights as the start; rank 0 writes the per-step global loss and the final weights.

argv: out_dir mode, mode in {"padded", "full", "kill"}. "padded" keeps random history
lengths, so ranks hold different numbers of unmasked items (the memory-loss mean is then
global only because AlltoallValues.batch_mean divides by the allreduced count); "full" uses
full-length histories; "kill" makes rank 1 SIGKILL itself at step 3 of a long run.
"""

import json
import os
import signal
import sys
import time

import numpy as np
import tensorflow as tf

from lmn_tf.data import schema
from lmn_tf.data.random_batches import random_arrays, zero_features
from lmn_tf.distributed import shard_checkpoints, training
from lmn_tf.memory.values import LocalValues
from lmn_tf.models import build_model
from lmn_tf.train import make_optimizer

training.init()
import horovod.tensorflow as hvd  # noqa: E402

out_dir, mode = sys.argv[1], sys.argv[2]
VOCAB = schema.Vocab(50, 60, 3, 8, 22, 30, 19, 10)
HPARAMS = {"embedding_dim": 8, "hidden_units": (16,), "attention_units": (8,), "num_keys": 7,
           "top_k": 3, "value_dim": 8, "memory_loss_weight": 0.5,  # 49 slots: uneven shards
           # query_norm standardises with each rank's own batch (as unsynced BatchNorm): off,
           # so two ranks can equal one exactly
           "query_norm": False}
GLOBAL_BATCH, STEPS = 32, 6


def build(store):
    model = build_model("lmn", VOCAB, value_store=store, **HPARAMS)
    model(zero_features(1), training=False)
    return model


tf.keras.utils.set_random_seed(0)
twin = build(LocalValues())  # the single-worker model's initial weights, same in every run
model = build(training.value_store())  # AlltoallValues when size > 1
shard_checkpoints.copy_weights(twin, model)
arrays = random_arrays(VOCAB, GLOBAL_BATCH * STEPS, seed=1)
if mode == "full":  # every history full-length: equal item counts on every rank
    arrays["hist_item_ids"] = np.random.default_rng(2).integers(
        1, VOCAB.num_items, arrays["hist_item_ids"].shape).astype("int32")
model.compile(optimizer=make_optimizer(model, 0.01, 0.2))
training.distribute(model)
data = tf.data.Dataset.from_tensor_slices({k: v for k, v in arrays.items()
                                           if k in schema.FEATURES or k == schema.LABEL})
epochs = 1
if mode == "kill":
    data, epochs = data.repeat(), 1000


LOSSES = []


class Record(tf.keras.callbacks.Callback):

    def on_train_batch_end(self, batch, logs=None):
        LOSSES.append([logs["loss"], logs["total_loss"]])  # already rank-averaged
        if mode == "kill" and hvd.rank() == 1 and batch == 3:
            with open(f"{out_dir}/killed_at", "w") as f:
                f.write(str(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)


model.fit(training.shard_dataset(data, GLOBAL_BATCH), epochs=epochs,
          steps_per_epoch=STEPS if mode == "kill" else None, verbose=0,
          callbacks=[*training.callbacks(), Record()])
final = build(LocalValues())
shard_checkpoints.copy_weights(model, final)  # consolidated: shards gathered into one table
if training.is_chief():
    np.savez(f"{out_dir}/weights.npz", *[w.numpy() for w in final.weights])

# Resume: per-rank checkpoint (weights + optimizer state) into a fresh model, then two more
# steps on both; equal weights afterwards mean the optimizer state came back too.
shard_checkpoints.save(f"{out_dir}/ckpt", model, model.optimizer)
tf.keras.utils.set_random_seed(5)
resumed = build(training.value_store())
resumed.compile(optimizer=make_optimizer(resumed, 0.01, 0.2))
shard_checkpoints.restore(f"{out_dir}/ckpt", resumed, resumed.optimizer)
training.distribute(resumed)
more = training.shard_dataset(data.take(2 * GLOBAL_BATCH), GLOBAL_BATCH)
for m in (model, resumed):
    m.fit(more, verbose=0, callbacks=training.callbacks())
resume_diff = max(float(np.abs(a.numpy() - b.numpy()).max())
                  for a, b in zip(model.weights, resumed.weights, strict=True))
with open(f"{out_dir}/rank{hvd.rank()}.json", "w") as f:
    json.dump({"size": hvd.size(), "losses": LOSSES, "resume_diff": resume_diff}, f)
