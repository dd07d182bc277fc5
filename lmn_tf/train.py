"""`lmn-tf train`: train a ranking model into a run directory, then evaluate it.

A run directory holds everything needed to rebuild the model (``load_run``):

    RUN/config.json      {"model", "dataset", "vocab", "hparams", "world_size", "seed", ...}
    RUN/checkpoints/     tf.train.CheckpointManager of Checkpoint(model, optimizer, epoch)
    RUN/logs/            TensorBoard (train scalars per 50 steps, eval AUC/LogLoss)
    RUN/metrics.json     the final evaluation

Example:
    lmn-tf train --model lmn --dataset ml-1m --epochs 1 --run-dir runs/lmn
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import numpy as np
import tensorflow as tf

from lmn_tf import data as lmn_data
from lmn_tf import evaluation
from lmn_tf.data import schema
from lmn_tf.models import MODELS, build_model
from lmn_tf.models.base import RankingModel
from lmn_tf.models.testing import zero_features

DATASETS = ("ml-1m", "ml-100k", "synthetic")
DEFAULTS = {"epochs": 1, "batch_size": 1024, "learning_rate": 4e-3,
            "values_learning_rate": 0.05, "seed": 0}


def load_data(dataset: str, limit: int | None = None, eval_limit: int | None = None,
              progress: bool = True):
    """(train, eval, vocab) arrays of ``dataset``; synthetic data is fixed (seed 0).

    ``limit`` keeps the *latest* ``limit`` training events (those nearest the eval period);
    ``eval_limit`` keeps the earliest eval events. Both keep time order.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}. Received: dataset={dataset!r}")
    if dataset == "synthetic":
        from lmn_tf.data import synthetic

        train, eval_, vocab = synthetic.load(seed=0)
    else:
        train, eval_, vocab = lmn_data.load(dataset, progress=progress)
    if limit:
        train = {k: v[-limit:] for k, v in train.items()}
    if eval_limit:
        eval_ = {k: v[:eval_limit] for k, v in eval_.items()}
    return train, eval_, vocab


def make_optimizer(model, learning_rate: float, values_learning_rate: float):
    """Adam for dense variables; Adagrad (sparse updates) for ``model.sparse_variables()``.

    The split is resolved lazily at the first step, after the model built its variables.
    """
    adam = tf.keras.optimizers.legacy.Adam(learning_rate)
    if type(model).sparse_variables is RankingModel.sparse_variables:
        return adam
    import tensorflow_recommenders as tfrs

    def dense():
        sparse = {v.ref() for v in model.sparse_variables()}
        return [v for v in model.trainable_variables if v.ref() not in sparse]

    return tfrs.experimental.optimizers.CompositeOptimizer([
        (tf.keras.optimizers.legacy.Adagrad(values_learning_rate), model.sparse_variables),
        (adam, dense)])


def build_from_config(config: dict):
    """The config's model with its variables created (an all-padding batch is run once)."""
    model = build_model(config["model"], config["vocab"], **config.get("hparams", {}))
    model(zero_features(1), training=False)
    return model


def run_checkpoint(model, optimizer=None) -> tf.train.Checkpoint:
    """What a run's ``checkpoints/`` hold: the model, its optimizer and the epoch reached."""
    parts = {"model": model, "epoch": tf.Variable(0, dtype=tf.int64, name="epoch")}
    if optimizer is not None:
        parts["optimizer"] = optimizer
    return tf.train.Checkpoint(**parts)


def load_run(run_dir: str | pathlib.Path):
    """(model, config) of a run directory, with the latest checkpoint's weights.

    Raises:
        FileNotFoundError: no such run directory, no config.json, or no checkpoint.
    """
    run = pathlib.Path(run_dir)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"Not a run directory (no config.json): {run}")
    config = json.loads((run / "config.json").read_text())
    latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    if latest is None:
        raise FileNotFoundError(f"No checkpoint in {run / 'checkpoints'}: train the run first")
    model = build_from_config(config)
    ckpt = run_checkpoint(model)
    ckpt.restore(latest).expect_partial().assert_existing_objects_matched()
    return model, config


class _SaveEachEpoch(tf.keras.callbacks.Callback):
    def __init__(self, manager: tf.train.CheckpointManager, epoch: tf.Variable):
        super().__init__()
        self.manager, self.epoch = manager, epoch

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


def train(config: dict, run_dir: str | pathlib.Path, data=None, verbose: int = 1,
          callbacks: list | None = None, evaluate: bool = True) -> dict:
    """Trains ``config["model"]`` into ``run_dir`` and returns the eval metrics.

    ``config`` needs "model" and "dataset" and may set "hparams", "epochs", "batch_size",
    "learning_rate", "values_learning_rate", "seed", "limit", "eval_limit". ``data`` may
    pass preloaded ``(train, eval, vocab)`` arrays. An existing checkpoint in ``run_dir``
    is resumed from its epoch. Extra Keras ``callbacks`` (e.g. Horovod's) are appended.
    """
    config = {**DEFAULTS, "hparams": {}, "world_size": 1, **config}
    if config["model"] not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}. Received: {config['model']!r}")
    run = pathlib.Path(run_dir)
    train_arrays, eval_arrays, vocab = data or load_data(
        config["dataset"], config.get("limit"), config.get("eval_limit"), progress=verbose > 0)
    config["vocab"] = dataclasses.asdict(vocab) if dataclasses.is_dataclass(vocab) else vocab
    config["num_train"], config["num_eval"] = len(train_arrays[schema.LABEL]), len(
        eval_arrays[schema.LABEL])
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    tf.keras.utils.set_random_seed(config["seed"])
    model = build_model(config["model"], config["vocab"], **config["hparams"])
    optimizer = make_optimizer(model, config["learning_rate"], config["values_learning_rate"])
    model.compile(optimizer=optimizer)
    ckpt = run_checkpoint(model, optimizer)
    manager = tf.train.CheckpointManager(ckpt, str(run / "checkpoints"), max_to_keep=2)
    if manager.latest_checkpoint:
        model(zero_features(1), training=False)
        ckpt.restore(manager.latest_checkpoint)
    ds = lmn_data.make_dataset(train_arrays, config["batch_size"], shuffle=True,
                               seed=config["seed"])
    start = time.time()
    model.fit(ds, epochs=config["epochs"], initial_epoch=int(ckpt.epoch.numpy()),
              verbose=verbose, callbacks=[
                  tf.keras.callbacks.TensorBoard(str(run / "logs"), update_freq=50),
                  _SaveEachEpoch(manager, ckpt.epoch), *(callbacks or [])])
    metrics = {"train_seconds": time.time() - start}
    if evaluate:
        metrics.update(evaluate_arrays(model, eval_arrays, config["batch_size"], verbose))
        (run / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        with tf.summary.create_file_writer(str(run / "logs" / "eval")).as_default():
            for k in ("auc", "logloss"):
                tf.summary.scalar(k, metrics[k], step=int(ckpt.epoch.numpy()))
    return metrics


def evaluate_arrays(model, eval_arrays: dict[str, np.ndarray], batch_size: int = 4096,
                    verbose: int = 1) -> dict:
    """AUC / LogLoss (and, on synthetic data, the oracle's) of ``model`` on eval arrays."""
    ds = lmn_data.make_dataset(eval_arrays, batch_size)
    labels, logits = evaluation.predict(model, ds, verbose=verbose)
    metrics = evaluation.score(labels, logits)
    if "true_prob" in eval_arrays:
        from lmn_tf.data.synthetic import expected_auc

        p = eval_arrays["true_prob"]
        metrics["oracle_auc"] = expected_auc(p, eval_arrays[schema.LABEL])
        metrics["bayes_auc"] = expected_auc(p, p)
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=sorted(MODELS), default="lmn")
    parser.add_argument("--dataset", choices=DATASETS, default="ml-1m")
    parser.add_argument("--run-dir", required=True, help="where config, checkpoints, logs go")
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--learning-rate", type=float, default=DEFAULTS["learning_rate"])
    parser.add_argument("--values-learning-rate", type=float,
                        default=DEFAULTS["values_learning_rate"],
                        help="Adagrad learning rate of the LMN memory values")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--limit", type=int, help="train on the latest N train events only")
    parser.add_argument("--eval-limit", type=int, help="evaluate on the first N eval events")
    group = parser.add_argument_group("LMN memory (ignored by other models)")
    group.add_argument("--num-keys", type=int, help="√n, keys per axis")
    group.add_argument("--top-k", type=int)
    group.add_argument("--num-heads", type=int)
    group.add_argument("--memory-loss-weight", type=float, help="alpha")
    group.add_argument("--readout", choices=("attended", "pooled"))
    group.add_argument("--no-target-query", action="store_true",
                       help="the target item does not query the memory")
    group.add_argument("--stop-gradient", choices=("none", "query", "readout"))
    parser.add_argument("--hparams", default="{}",
                        help='more model constructor arguments as JSON: \'{"dropout": 0.1}\'')
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--horovod", action="store_true",
                        help="data-parallel with sharded memory values; launch under "
                             "horovodrun -np N -H localhost:N --gloo (lmn_tf.distributed.fit)")


def hparams_from_args(args: argparse.Namespace) -> dict:
    """Model hparams from the CLI flags (memory flags only for LMN)."""
    hparams = json.loads(args.hparams)
    if args.model == "lmn":
        for flag in ("num_keys", "top_k", "num_heads", "memory_loss_weight", "readout",
                     "stop_gradient"):
            if getattr(args, flag) is not None:
                hparams[flag] = getattr(args, flag)
        if args.no_target_query:
            hparams["target_query"] = False
    return hparams


def config_from_args(args: argparse.Namespace) -> dict:
    """The ``train`` config of parsed ``lmn-tf train`` arguments."""
    return {"model": args.model, "dataset": args.dataset, "hparams": hparams_from_args(args),
            "epochs": args.epochs, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "values_learning_rate": args.values_learning_rate, "seed": args.seed,
            "limit": args.limit, "eval_limit": args.eval_limit}


def report(args: argparse.Namespace, metrics: dict) -> None:
    print(f"AUC {metrics['auc']:.4f}  LogLoss {metrics['logloss']:.4f}  (n={metrics['n']})")
    print(json.dumps({"run_dir": args.run_dir, **metrics}))


def run(args: argparse.Namespace) -> int:
    if args.horovod:  # lmn_tf.cli sends `train --horovod` to lmn_tf.distributed.fit
        raise SystemExit("--horovod: use `lmn-tf train --horovod` (lmn_tf.distributed.fit.run)")
    report(args, train(config_from_args(args), args.run_dir, verbose=0 if args.quiet else 1))
    return 0
