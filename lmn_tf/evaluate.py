"""`lmn-tf evaluate`: AUC and LogLoss of a run directory's latest checkpoint.

Example:
    lmn-tf evaluate --run-dir runs/lmn
"""

from __future__ import annotations

import argparse
import json

from lmn_tf.ctr_metrics import evaluate_arrays
from lmn_tf.training.datasets import load_data
from lmn_tf.training.run_dir import history_of, load_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--eval-limit", type=int,
                        help="first N eval events (default: the run's own setting)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    model, config = load_run(args.run_dir)
    eval_limit = args.eval_limit if args.eval_limit is not None else config.get("eval_limit")
    _, eval_arrays, _ = load_data(config["dataset"], limit=1, eval_limit=eval_limit,
                                  progress=not args.quiet, history=history_of(config))
    metrics = evaluate_arrays(model, eval_arrays, args.batch_size, verbose=0 if args.quiet else 1)
    print(f"AUC {metrics['auc']:.4f}  LogLoss {metrics['logloss']:.4f}  (n={metrics['n']})")
    print(json.dumps({"run_dir": args.run_dir, "model": config["model"], **metrics}))
    return 0
