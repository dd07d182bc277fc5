"""The datasets a run config names, as (train, eval, vocab) arrays."""

from __future__ import annotations

from lmn_tf import data as lmn_data
from lmn_tf.training.run_dir import DEFAULTS

# "synthetic": long-term interests in topics; "synthetic-items": in items (synthetic.load's
# long_term).
DATASETS = ("ml-1m", "ml-100k", "synthetic", "synthetic-items")


def load_data(dataset: str, limit: int | None = None, eval_limit: int | None = None,
              progress: bool = True, history: str = DEFAULTS["history"]):
    """(train, eval, vocab) arrays of ``dataset``; synthetic data is fixed (seed 0).

    ``limit`` keeps the *latest* ``limit`` training events (those nearest the eval period);
    ``eval_limit`` keeps the earliest eval events. Both keep time order. ``history`` picks
    the sequences' events ("rated" or "positive", see `lmn_tf.data.schema`).

    Raises:
        ValueError: an unknown dataset.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}. Received: dataset={dataset!r}")
    if dataset.startswith("synthetic"):
        from lmn_tf.data import synthetic

        long_term = "items" if dataset == "synthetic-items" else "topics"
        train, eval_, vocab = synthetic.load(seed=0, history=history, long_term=long_term)
    else:
        train, eval_, vocab = lmn_data.load(dataset, progress=progress, history=history)
    if limit:
        train = {k: v[-limit:] for k, v in train.items()}
    if eval_limit:
        eval_ = {k: v[:eval_limit] for k, v in eval_.items()}
    return train, eval_, vocab
