"""How much of the spatial task can a store keyed on (history item, target item) reach at all?

On ``synthetic.spatial`` (a ±1 preference per (latent group, item) pair; the group shows only
in what a user browses) this fits, per target item, a ridge regression of the label on the
multi-hot of the user's 50 history items: one weight per (history item, target item) pair,
which is what LMN's ``queries="item_pairs"`` can store, fitted in closed form on the whole
training split instead of by one epoch of SGD. It is a ceiling for that design with a linear
read-out, not a model: the Base here scores an item by its training click rate. Prints, for
warm and cold users, the AUC, the Base, the Bayes-optimal AUC and the share of the gap
closed, and writes ``benchmarks/results/spatial_ceiling.json``.

    python benchmarks/spatial_ceiling.py                       # the task's defaults, ~4 min
    python benchmarks/spatial_ceiling.py --taste-size 20 --history-noise 0

Results: README, "Where the memory helps".
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from lmn_tf.data import synthetic

OUT = pathlib.Path(__file__).parent / "results" / "spatial_ceiling.json"


def multi_hot(arrays: dict, num_items: int) -> np.ndarray:
    """(N, num_items) 0/1 of the items in each sample's history (column 0: padding, zeroed)."""
    x = np.zeros((len(arrays["hist_item_ids"]), num_items), np.float32)
    np.put_along_axis(x, arrays["hist_item_ids"], 1.0, 1)
    x[:, 0] = 0.0
    return x


def ridge_scores(train: dict, eval_: dict, num_items: int, lam: float) -> np.ndarray:
    """Per target item, ridge of the label on the centred history multi-hot; eval scores."""
    x_train, x_eval = multi_hot(train, num_items), multi_hot(eval_, num_items)
    scores = np.zeros(len(eval_["label"]))
    for item in np.unique(eval_["item_id"]):
        rows, out = train["item_id"] == item, eval_["item_id"] == item
        if not rows.any():
            continue
        x, y = x_train[rows].astype(np.float64), train["label"][rows]
        mean = x.mean(0)
        centred = x - mean
        w = np.linalg.solve(centred.T @ centred + lam * np.eye(num_items),
                            centred.T @ (y - y.mean()))
        scores[out] = (x_eval[out] - mean) @ w + y.mean()
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--exposures", type=int, default=20)
    parser.add_argument("--taste-size", type=int, default=50)
    parser.add_argument("--history-noise", type=float, default=0.2)
    parser.add_argument("--eval-samples", type=int, default=200_000)
    parser.add_argument("--ridge", type=float, default=100.0, help="the L2 penalty")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args(argv)
    start = time.time()
    task = {"num_groups": args.groups, "num_items": args.items, "exposures": args.exposures,
            "taste_size": args.taste_size, "history_noise": args.history_noise,
            "eval_samples": args.eval_samples, "seed": args.seed}
    train, eval_, vocab = synthetic.spatial(**task)
    scores = ridge_scores(train, eval_, vocab.num_items, args.ridge)
    counts = np.bincount(train["item_id"], minlength=vocab.num_items)
    rate = np.bincount(train["item_id"], train["label"], vocab.num_items) / np.maximum(counts, 1)
    warm = np.isin(eval_["user_id"], np.unique(train["user_id"]))
    labels, p = eval_["label"], eval_[synthetic.TRUE_PROB]
    rows = []
    print(f"{'users':<6} {'ridge AUC':>10} {'Base AUC':>9} {'Bayes':>7} {'gap closed':>11}")
    for name, mask in (("warm", warm), ("cold", ~warm)):
        auc = synthetic.expected_auc(scores[mask], labels[mask])
        base = synthetic.expected_auc(rate[eval_["item_id"][mask]], labels[mask])
        bayes = synthetic.expected_auc(p[mask], p[mask])
        rows.append({"users": name, "auc": auc, "base_auc": base, "bayes_auc": bayes,
                     "gap_closed": (auc - base) / (bayes - base)})
        print(f"{name:<6} {auc:>10.4f} {base:>9.4f} {bayes:>7.4f} "
              f"{rows[-1]['gap_closed']:>10.0%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"task": task, "ridge": args.ridge, "rows": rows,
                                    "wall_seconds": round(time.time() - start, 1)},
                                   indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
