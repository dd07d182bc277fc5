"""Rank r sends [10r + 0, 10r + 1, 10r + 2] with splits [1, 2] (2 ranks), eager and traced."""

import json
import sys

import horovod.tensorflow as hvd
import tensorflow as tf

hvd.init()
rank = hvd.rank()
send = tf.constant([10 * rank, 10 * rank + 1, 10 * rank + 2])


@tf.function
def traced(x):
    return hvd.alltoall(x, splits=[1, 2])


eager, eager_splits = hvd.alltoall(send, splits=[1, 2])
graph, _ = traced(send)
result = {"size": hvd.size(), "rank": rank, "eager": eager.numpy().tolist(),
          "splits": eager_splits.numpy().tolist(), "graph": graph.numpy().tolist()}
with open(f"{sys.argv[1]}/rank{rank}.json", "w") as f:
    json.dump(result, f)
