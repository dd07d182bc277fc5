"""`lmn-tf train`: train a ranking model into a run directory, then evaluate it.

The run directory (config.json, checkpoints, logs, metrics.json) is described in
`lmn_tf.training.run_dir`; ``load_run`` rebuilds its model. Rerunning the same command
resumes from the most advanced checkpoint (`lmn_tf.training.resume`), so a kill costs at most
``--checkpoint-every`` steps and the resumed run equals the uninterrupted one; a damaged
checkpoint is an error naming the file, never loaded. A run directory accepts only its own
config (``epochs``, ``eval_limit`` and ``checkpoint_every`` may change); rerunning a finished
run only re-evaluates it. The optimizer recipe is `lmn_tf.training.optimizer`.

Example:
    lmn-tf train --model lmn --dataset ml-1m --epochs 1 --run-dir runs/lmn
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np
import tensorflow as tf

from lmn_tf import checkpointing, early_stopping
from lmn_tf.ctr_metrics import evaluate_arrays
from lmn_tf.data import schema
from lmn_tf.models import MODELS, build_model
from lmn_tf.models.lmn import QUERIES
from lmn_tf.training.datasets import DATASETS, load_data
from lmn_tf.training.optimizer import (
    LEARNING_RATE_DECAYS,
    VALUES_OPTIMIZERS,
    config_optimizer,
    make_optimizer,
    stepping_optimizers,
)
from lmn_tf.training.resume import fit_resumable
from lmn_tf.training.run_dir import (
    ADDED_KEYS,
    DEFAULTS,
    LEGACY,
    RESUMABLE_CHANGES,
    build_from_config,
    check_config,
    history_of,
    load_run,
    run_checkpoint,
    run_config,
    stored_config,
    write_config,
    write_json,
)

# The names users import from here; each lives in the module it is imported from above.
__all__ = [
    "ADDED_KEYS",
    "DATASETS",
    "DEFAULTS",
    "LEARNING_RATE_DECAYS",
    "LEGACY",
    "RESUMABLE_CHANGES",
    "VALUES_OPTIMIZERS",
    "add_arguments",
    "add_optimizer_arguments",
    "build_from_config",
    "check_config",
    "config_from_args",
    "config_optimizer",
    "evaluate_arrays",
    "history_of",
    "hparams_from_args",
    "load_data",
    "load_run",
    "make_optimizer",
    "rate_or_none",
    "report",
    "run",
    "run_checkpoint",
    "stepping_optimizers",
    "stored_config",
    "train",
]


def train(config: dict, run_dir: str | pathlib.Path, data=None, verbose: int = 1,
          callbacks: list | None = None, evaluate: bool = True) -> dict:
    """Trains ``config["model"]`` into ``run_dir`` and returns the eval metrics.

    ``config`` needs "model" and "dataset" and may set "hparams", "epochs", "batch_size",
    "learning_rate", "values_learning_rate", "values_initial_accumulator", "seed", "limit",
    "eval_limit", "checkpoint_every" (steps between mid-epoch checkpoints; 0: epoch ends
    only), "history" ("rated" or "positive": which earlier events the sequences hold),
    "patience" and "validation" (early stopping, `lmn_tf.early_stopping`); the rest come
    from ``DEFAULTS``. ``data`` may pass preloaded ``(train, eval, vocab)`` arrays. A run
    directory's checkpoint is resumed. Extra Keras ``callbacks`` are appended.

    Raises:
        ValueError: an unknown model, or ``run_dir`` holds another config's run.
        lmn_tf.checkpointing.CheckpointError: the checkpoint to resume from is damaged.
    """
    config = {**DEFAULTS, "hparams": {}, "world_size": 1, **config}
    if config["model"] not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}. Received: {config['model']!r}")
    run = pathlib.Path(run_dir)
    train_arrays, eval_arrays, vocab = data or load_data(
        config["dataset"], config.get("limit"), config.get("eval_limit"), progress=verbose > 0,
        history=config["history"])
    config = run_config(config, train_arrays, eval_arrays, vocab)
    check_config(run, config)
    write_config(run, config)

    tf.keras.utils.set_random_seed(config["seed"])
    model = build_model(config["model"], config["vocab"], **config.get("hparams", {}))
    optimizer = config_optimizer(model, config)
    model.compile(optimizer=optimizer)
    ckpt = run_checkpoint(model, optimizer)
    warm_users = np.unique(train_arrays["user_id"])  # the whole training window's users
    patience, fit_config, stopping = config["patience"], config, []
    if patience:  # epochs is then the most to run; validation picks the epoch
        train_arrays, validation = early_stopping.split_validation(train_arrays,
                                                                   config["validation"])
        stopping = [early_stopping.ValidationStopping(run, validation, patience)]
        state = early_stopping.read_state(run)
        if state.get("stopped"):  # a finished run: nothing more to train
            fit_config = {**config, "epochs": state["last_epoch"]}
    start = time.time()
    initial_step = fit_resumable(model, ckpt, run, train_arrays, fit_config, [
        tf.keras.callbacks.TensorBoard(str(run / "logs"), update_freq=50), *(callbacks or []),
        *stopping], verbose, keep_epochs=early_stopping.keep_epochs(patience))
    metrics = {"train_seconds": time.time() - start, "initial_step": initial_step}
    if patience:  # evaluate (and leave in the model) the best validation epoch's weights
        state = early_stopping.read_state(run)
        checkpointing.restore(ckpt, early_stopping.best_prefix(run)).expect_partial()
        metrics.update(best_epoch=state["best_epoch"], epochs_trained=state["last_epoch"],
                       validation_auc=state["auc"][str(state["best_epoch"])])
    if evaluate:
        metrics.update(evaluate_arrays(model, eval_arrays, config["batch_size"], verbose,
                                       warm_users=warm_users))
        write_json(run / "metrics.json", metrics)
        with tf.summary.create_file_writer(str(run / "logs" / "eval")).as_default():
            for k in ("auc", "logloss"):
                tf.summary.scalar(k, metrics[k], step=int(ckpt.epoch.numpy()))
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=sorted(MODELS), default="lmn")
    parser.add_argument("--dataset", choices=DATASETS, default="ml-1m")
    parser.add_argument("--run-dir", required=True, help="where config, checkpoints, logs go")
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--learning-rate", type=float, default=DEFAULTS["learning_rate"])
    add_optimizer_arguments(parser)
    parser.add_argument("--patience", type=int, default=DEFAULTS["patience"],
                        help="train until validation AUC has not improved for this many "
                             "epochs (--epochs is then the most), restore the best epoch and "
                             "evaluate it once; 0: exactly --epochs, no validation split (the "
                             "only choice with --horovod)")
    parser.add_argument("--validation", type=float, default=DEFAULTS["validation"],
                        help="with --patience: the last fraction of the training period, by "
                             "time, held out for validation")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--checkpoint-every", type=int, default=DEFAULTS["checkpoint_every"],
                        metavar="STEPS",
                        help="also checkpoint every STEPS steps inside an epoch, so a crash "
                             "loses at most STEPS steps; rerun the same command to resume "
                             "(0: epoch ends only; --horovod checkpoints at epoch ends)")
    parser.add_argument("--history", choices=schema.HISTORIES, default=DEFAULTS["history"],
                        help="which earlier events the behaviour sequences hold: every rated "
                             "one with its rating, or only the positives without ratings (the "
                             "paper's setting, and that of the README's earlier results)")
    parser.add_argument("--no-statistics", action="store_true",
                        help="leave the running statistics out of the model (with --history "
                             "positive: the models of the README's earlier results)")
    parser.add_argument("--limit", type=int, help="train on the latest N train events only")
    parser.add_argument("--eval-limit", type=int, help="evaluate on the first N eval events")
    group = parser.add_argument_group("LMN memory (ignored by other models)")
    group.add_argument("--num-keys", type=int, help="√n, keys per axis")
    group.add_argument("--top-k", type=int)
    group.add_argument("--num-heads", type=int)
    group.add_argument("--memory-loss-weight", type=float, help="alpha")
    group.add_argument("--readout", choices=("attended", "pooled"))
    group.add_argument("--queries", choices=QUERIES,
                       help="who queries the memory (lmn_tf.models.lmn)")
    group.add_argument("--memory-loss-stop-gradient", choices=("none", "query", "readout"))
    parser.add_argument("--hparams", default="{}",
                        help='more model constructor arguments as JSON: \'{"dropout": 0.1}\'')
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--horovod", action="store_true",
                        help="data-parallel with sharded memory values; launch under "
                             "horovodrun -np N -H localhost:N --gloo (lmn_tf.distributed.fit)")


def hparams_from_args(args: argparse.Namespace) -> dict:
    """Model hparams from the CLI flags (memory flags only for LMN)."""
    hparams = json.loads(args.hparams)
    if getattr(args, "history", DEFAULTS["history"]) == "positive":
        hparams.setdefault("feedback", False)  # positives all rate 4-5: nothing to tell apart
    if getattr(args, "no_statistics", False):
        hparams["statistics"] = False
    if args.model == "lmn":
        for flag in ("num_keys", "top_k", "num_heads", "memory_loss_weight", "readout",
                     "queries", "memory_loss_stop_gradient"):
            if getattr(args, flag) is not None:
                hparams[flag] = getattr(args, flag)
    return hparams


def add_optimizer_arguments(parser: argparse.ArgumentParser) -> None:
    """The memory's optimizer flags (`make_optimizer`), shared by train and experiment."""
    parser.add_argument("--values-optimizer", choices=VALUES_OPTIMIZERS,
                        default=DEFAULTS["values_optimizer"],
                        help="optimizer of the memory values (and Cross's rows)")
    parser.add_argument("--values-learning-rate", type=float,
                        default=DEFAULTS["values_learning_rate"],
                        help="learning rate of the memory values")
    parser.add_argument("--values-initial-accumulator", type=float,
                        default=DEFAULTS["values_initial_accumulator"],
                        help="with --values-optimizer adagrad: its starting accumulator")
    parser.add_argument("--addressing-learning-rate", type=rate_or_none,
                        default=DEFAULTS["addressing_learning_rate"],
                        help="Adam rate of the memory's query MLPs and keys; 'none': the "
                             "rest's Adam trains them (the recipe before this flag)")
    parser.add_argument("--learning-rate-decay", choices=LEARNING_RATE_DECAYS,
                        default=DEFAULTS["learning_rate_decay"],
                        help="'cosine': the Adam rates fall to 0 over the run (the values' "
                             "rate stays); 'none': constant (the recipe before this flag)")


def rate_or_none(text: str) -> float | None:
    """A learning-rate flag's value: a float, or None for "none"."""
    return None if text.lower() == "none" else float(text)


def config_from_args(args: argparse.Namespace) -> dict:
    """The ``train`` config of parsed ``lmn-tf train`` arguments."""
    return {"model": args.model, "dataset": args.dataset, "hparams": hparams_from_args(args),
            "epochs": args.epochs, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "values_optimizer": args.values_optimizer,
            "values_learning_rate": args.values_learning_rate,
            "values_initial_accumulator": args.values_initial_accumulator,
            "addressing_learning_rate": args.addressing_learning_rate,
            "learning_rate_decay": args.learning_rate_decay, "seed": args.seed,
            "limit": args.limit, "eval_limit": args.eval_limit,
            "checkpoint_every": args.checkpoint_every, "history": args.history,
            "patience": args.patience, "validation": args.validation}


def report(args: argparse.Namespace, metrics: dict) -> None:
    print(f"AUC {metrics['auc']:.4f}  LogLoss {metrics['logloss']:.4f}  (n={metrics['n']})")
    print(json.dumps({"run_dir": args.run_dir, **metrics}))


def run(args: argparse.Namespace) -> int:
    if args.horovod:  # lmn_tf.cli sends `train --horovod` to lmn_tf.distributed.fit
        raise SystemExit("--horovod: use `lmn-tf train --horovod` (lmn_tf.distributed.fit.run)")
    report(args, train(config_from_args(args), args.run_dir, verbose=0 if args.quiet else 1))
    return 0
