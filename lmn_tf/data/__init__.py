"""Data: MovieLens CTR samples, synthetic data with a known answer, and tf.data pipelines.

- `load(dataset="ml-1m" | "ml-100k", split=0.8, limit=None) -> (train, eval, vocab)`:
  dicts of arrays (every `FEATURES` name plus `LABEL`), samples in global time order.
- `synthetic.load(..., seed=0)`: the same, plus ``true_prob``; `synthetic.expected_auc`.
- `make_dataset(arrays, batch_size, shuffle, seed)`: batches as single dicts, label inside,
  the form `tfrs.models.Model.compute_loss(features)` receives.
- `epoch_batches(arrays, batch_size, seed, epochs, skip)`: training batches whose epoch-e
  order depends only on (seed, e), so a run resumed mid-epoch sees the same batches.
- `shard(arrays, num_shards, index)`: one Horovod worker's equal share.

Example (per Horovod worker; without Horovod, skip the `shard` line):

    train, eval_, vocab = lmn_tf.data.load("ml-1m")
    train = lmn_tf.data.shard(train, hvd.size(), hvd.rank())
    ds = lmn_tf.data.make_dataset(train, 256, shuffle=True, seed=0, drop_remainder=True)
"""

from lmn_tf.data import synthetic
from lmn_tf.data.movielens import DataFileError, load
from lmn_tf.data.pipeline import epoch_batches, make_dataset, shard
from lmn_tf.data.schema import FEATURES, LABEL, Vocab

__all__ = [
    "FEATURES",
    "LABEL",
    "DataFileError",
    "Vocab",
    "epoch_batches",
    "load",
    "make_dataset",
    "shard",
    "synthetic",
]
