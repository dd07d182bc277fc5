"""Rank script for test_export_sharded: LMN on AlltoallValues exported by the chief.

Every rank enters export_saved_model (full_table is an allgather); only rank 0 writes. Rank 0
then loads the export in a v1 Session and compares it with a single-worker twin.
"""

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from lmn_tf.data import schema
from lmn_tf.data.random_batches import random_arrays, zero_features
from lmn_tf.distributed import shard_checkpoints, training
from lmn_tf.distributed.values import AlltoallValues
from lmn_tf.export import export_saved_model
from lmn_tf.models import build_model

training.init()
import horovod.tensorflow as hvd  # noqa: E402

out_dir = Path(sys.argv[1])
VOCAB = schema.Vocab(30, 40, 3, 8, 22, 100, 19, 10)
TINY = dict(embedding_dim=4, hidden_units=(8,), attention_units=(8,), num_keys=7, top_k=4,
            value_dim=8)  # 49 slots: uneven shards

tf.keras.utils.set_random_seed(0)
local = build_model("lmn", VOCAB, **TINY)
local(zero_features(1))
training.broadcast_variables(local)  # the same single-worker model on every rank
sharded = build_model("lmn", VOCAB, **TINY, value_store=AlltoallValues())
sharded(zero_features(1))
shard_checkpoints.copy_weights(local, sharded)
features = {k: v for k, v in random_arrays(VOCAB, 8, seed=2).items() if k != schema.LABEL}
path = export_saved_model(sharded, str(out_dir / "models"), "lmn", warmup=features,
                          write=training.is_chief())
result = {"path": path}
if training.is_chief():
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        sig = meta.signature_def["serving_indices"]  # index features
        got = sess.run(sig.outputs["probability"].name,
                       {sig.inputs[k].name: features[k] for k in sig.inputs})
        names = sorted(n.attr["shared_name"].s.decode() for n in meta.graph_def.node
                       if n.op == "VarHandleOp")
    want = tf.sigmoid(local(features, training=False)[:, 0]).numpy()
    result.update(max_diff=float(np.max(np.abs(got - want))), variables=names)
(out_dir / f"rank{hvd.rank()}.json").write_text(json.dumps(result))
