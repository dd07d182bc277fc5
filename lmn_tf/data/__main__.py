"""Builds (or loads) a dataset and prints its figures.

python -m lmn_tf.data ml-1m          # sample counts, label rate, load time, vocab
python -m lmn_tf.data synthetic      # plus the Bayes-optimal AUC and model-free baselines
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lmn_tf.data import movielens, synthetic
from lmn_tf.data.schema import LABEL


def baselines(train: dict[str, np.ndarray], eval_: dict[str, np.ndarray]) -> dict[str, float]:
    """Eval AUCs of model-free scores: item CTR in train, and same-genre counts in sequences."""
    clicks = np.bincount(train["item_id"], weights=train[LABEL])
    shown = np.bincount(train["item_id"])
    size = max(len(shown), int(eval_["item_id"].max()) + 1)
    clicks, shown = (np.pad(a, (0, size - len(a))) for a in (clicks, shown))
    ctr = (clicks + 1) / (shown + 2)  # smoothed, so unseen items score the prior
    genre = eval_["item_genres"][:, :1]  # the target's first genre (synthetic items have one)
    first_genre = np.zeros(size, dtype=np.int64)
    for split in (train, eval_):
        first_genre[split["item_id"]] = split["item_genres"][:, 0]

    def same_genre(key: str) -> np.ndarray:
        # Count of sequence items sharing the target's first genre; item CTR breaks ties.
        return (first_genre[eval_[key]] == genre).sum(axis=1) + 1e-3 * ctr[eval_["item_id"]]

    y = eval_[LABEL]
    return {
        "item_ctr": synthetic.expected_auc(ctr[eval_["item_id"]], y),
        "same_genre_in_hist": synthetic.expected_auc(same_genre("hist_item_ids"), y),
        "same_genre_in_sim": synthetic.expected_auc(same_genre("sim_item_ids"), y),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Build a dataset and print its figures.")
    parser.add_argument("dataset", choices=[*movielens.DATASETS, "synthetic"])
    parser.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.dataset == "synthetic":
        train, eval_, vocab = synthetic.load(seed=args.seed)
    else:
        train, eval_, vocab = movielens.load(args.dataset)
    seconds = time.perf_counter() - start
    n_train, n_eval = len(train[LABEL]), len(eval_[LABEL])
    rate = (train[LABEL].sum() + eval_[LABEL].sum()) / (n_train + n_eval)
    print(
        f"{args.dataset}: {n_train + n_eval} samples (train {n_train}, eval {n_eval}) "
        f"ready in {seconds:.1f} s"
    )
    print(
        f"label rate {rate:.4f} (train {train[LABEL].mean():.4f}, eval {eval_[LABEL].mean():.4f})"
    )
    print(vocab)
    cold = ~np.isin(eval_["user_id"], train["user_id"])
    print(f"eval samples of users absent from train: {cold.mean():.2%}")
    for key in ("hist_item_ids", "sim_item_ids"):
        lengths = np.concatenate([(s[key] > 0).sum(1) for s in (train, eval_)])
        print(f"{key}: mean length {lengths.mean():.1f}, empty {np.mean(lengths == 0):.2%}")
    if args.dataset == "synthetic":
        p = eval_[synthetic.TRUE_PROB]
        print(
            f"eval Bayes AUC: expected {synthetic.expected_auc(p, p):.4f}, "
            f"on the drawn labels {synthetic.expected_auc(p, eval_[LABEL]):.4f}"
        )
    for name, value in baselines(train, eval_).items():
        print(f"eval AUC of model-free {name}: {value:.4f}")


if __name__ == "__main__":
    main()
