"""The learning-rate grid: one early-stopped run per rate, chosen on validation, tested once.

Every rate gets the same budget: the same ``epochs`` (the most) and ``patience``, the same
validation split (the last ``validation`` fraction of the training period) and the same
seed, so no model is favoured by more trials or epochs. The test period is scored once, for
the chosen rate only. ``RUN/lr-<rate>/`` holds each rate's run (each resumable as usual) and
``RUN/tuning.json`` the table:

    {"grid": [...], "runs": {"0.004": {"validation_auc": ..., "best_epoch": ...}, ...},
     "chosen": "0.004", "test": {"auc": ..., "logloss": ...}}

Example (`lmn-tf tune` takes every `lmn-tf train` flag, plus the grid):
    lmn-tf tune --model din --learning-rates 0.001 0.002 0.004 0.008 --patience 2 \
        --epochs 10 --run-dir runs/din-grid
"""

from __future__ import annotations

import argparse
import json
import pathlib

from lmn_tf import checkpointing
from lmn_tf import train as training

GRID = (1e-3, 2e-3, 4e-3, 8e-3)  # Adam rates around the default 4e-3, factor 2 apart


def tune(config: dict, run_dir: str | pathlib.Path, learning_rates=GRID, data=None,
         verbose: int = 1) -> dict:
    """Trains ``config`` once per learning rate and returns the tuning table.

    Raises:
        ValueError: ``config`` without a positive ``patience`` (no validation to choose on),
            or an empty grid.
    """
    if not config.get("patience"):
        raise ValueError("a learning-rate grid chooses on validation: set patience >= 1. "
                         f"Received: patience={config.get('patience')!r}")
    if not learning_rates:
        raise ValueError("learning_rates must not be empty")
    run = pathlib.Path(run_dir)
    data = data or training.load_data(
        config["dataset"], config.get("limit"), config.get("eval_limit"), progress=verbose > 0,
        history=config.get("history", training.DEFAULTS["history"]))
    runs = {}
    for rate in learning_rates:
        metrics = training.train({**config, "learning_rate": float(rate)}, run / f"lr-{rate:g}",
                                 data=data, verbose=verbose, evaluate=False)
        runs[f"{rate:g}"] = {k: metrics[k] for k in ("validation_auc", "best_epoch",
                                                     "epochs_trained")}
    chosen = max(runs, key=lambda r: runs[r]["validation_auc"])  # ties: the earlier rate
    model, stored = training.load_run(run / f"lr-{chosen}")
    test = training.evaluate_arrays(model, data[1], stored["batch_size"], verbose)
    table = {"grid": [float(r) for r in learning_rates], "runs": runs, "chosen": chosen,
             "test": test}
    checkpointing.atomic_write(run / "tuning.json", json.dumps(table, indent=2) + "\n")
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    training.add_arguments(parser)
    parser.add_argument("--learning-rates", type=float, nargs="+", metavar="LR", default=GRID,
                        help="the grid (default: %(default)s); needs --patience >= 1")


def run(args: argparse.Namespace) -> int:
    table = tune(training.config_from_args(args), args.run_dir, args.learning_rates,
                 verbose=0 if args.quiet else 1)
    print(f"chosen learning rate {table['chosen']} of {table['grid']}")
    training.report(args, table["test"])
    return 0
