"""`lmn-tf train`: train a ranking model into a run directory, then evaluate it.

A run directory holds everything needed to rebuild the model (``load_run``):

    RUN/config.json      {"model", "dataset", "vocab", "hparams", "world_size", "seed", ...}
    RUN/checkpoints/     Checkpoint(model, optimizer, epoch, step) at each epoch's end,
                         ckpt-<epoch>, the last 2 kept: what load_run, evaluate, export read
    RUN/checkpoints/mid-epoch/   the same every ``checkpoint_every`` steps, ckpt-<step>,
                         the last one kept: resume only
    RUN/logs/            TensorBoard (train scalars per 50 steps, eval AUC/LogLoss)
    RUN/metrics.json     the final evaluation

Crash recovery. Rerunning the same command resumes from the most advanced checkpoint of the
two: model weights and optimizer state (Adam moments, Adagrad accumulators of the memory
values, iteration counts), then the rest of the interrupted epoch in the same order (see
`lmn_tf.data.epoch_batches`), so a kill costs at most ``checkpoint_every`` steps and the
resumed run equals the uninterrupted one. Checkpoints carry a manifest of SHA-256 digests and
are verified before loading (`lmn_tf.checkpointing`); a damaged one is an error naming the
file, never loaded. A run directory accepts only its own config (``epochs``, ``eval_limit``
and ``checkpoint_every`` may change); rerunning a finished run only re-evaluates it.

Example:
    lmn-tf train --model lmn --dataset ml-1m --epochs 1 --run-dir runs/lmn
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import time

import numpy as np
import tensorflow as tf

from lmn_tf import checkpointing, early_stopping, evaluation
from lmn_tf import data as lmn_data
from lmn_tf.data import schema
from lmn_tf.models import MODELS, build_model
from lmn_tf.models.base import RankingModel
from lmn_tf.models.lmn import QUERIES, legacy_hparams
from lmn_tf.models.testing import zero_features

DATASETS = ("ml-1m", "ml-100k", "synthetic")
DEFAULTS = {"epochs": 1, "batch_size": 1024, "learning_rate": 4e-3,
            "values_optimizer": "sparse_adam", "values_learning_rate": 0.03,
            "values_initial_accumulator": 0.1, "addressing_learning_rate": 1e-4, "seed": 0,
            "checkpoint_every": 200, "history": "rated", "patience": 0, "validation": 0.1}
VALUES_OPTIMIZERS = ("sparse_adam", "adagrad")
# Config keys a run directory lets change between runs: none alters the trained model's math.
RESUMABLE_CHANGES = ("epochs", "eval_limit", "num_eval", "checkpoint_every")
# Config keys newer than some run directories (their default is what those runs did).
ADDED_KEYS = ("values_initial_accumulator", "patience", "validation")
# Config keys whose default changed: a config without the key ran with the old value
# (addressing_learning_rate None: the memory's queries and keys trained with the dense Adam).
LEGACY = {"history": "positive", "values_optimizer": "adagrad", "addressing_learning_rate": None}


def history_of(config: dict) -> str:
    """Which events a run's sequences hold (``schema.HISTORIES``); configs written before the
    key existed trained on positive-only sequences."""
    return config.get("history", LEGACY["history"])


def stored_config(config: dict) -> dict:
    """A run directory's config.json as today's code reads it: a key it lacks had its
    ``LEGACY`` value; a run from before the feedback-aware sequences (no "history" key) also
    had models without rating embeddings or statistics; LMN's hparams in older names are
    renamed (`lmn_tf.models.lmn.legacy_hparams`)."""
    before_feedback = "history" not in config
    config = {**LEGACY, **config}
    if before_feedback:
        config["hparams"] = {"feedback": False, "statistics": False,
                             **config.get("hparams", {})}
    if config.get("model") == "lmn":
        config["hparams"] = legacy_hparams(config.get("hparams", {}))
    return config


def load_data(dataset: str, limit: int | None = None, eval_limit: int | None = None,
              progress: bool = True, history: str = DEFAULTS["history"]):
    """(train, eval, vocab) arrays of ``dataset``; synthetic data is fixed (seed 0).

    ``limit`` keeps the *latest* ``limit`` training events (those nearest the eval period);
    ``eval_limit`` keeps the earliest eval events. Both keep time order. ``history`` picks
    the sequences' events ("rated" or "positive", see `lmn_tf.data.schema`).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}. Received: dataset={dataset!r}")
    if dataset == "synthetic":
        from lmn_tf.data import synthetic

        train, eval_, vocab = synthetic.load(seed=0, history=history)
    else:
        train, eval_, vocab = lmn_data.load(dataset, progress=progress, history=history)
    if limit:
        train = {k: v[-limit:] for k, v in train.items()}
    if eval_limit:
        eval_ = {k: v[:eval_limit] for k, v in eval_.items()}
    return train, eval_, vocab


def make_optimizer(model, learning_rate: float,
                   values_learning_rate: float = DEFAULTS["values_learning_rate"], *,
                   values_optimizer: str = DEFAULTS["values_optimizer"],
                   addressing_learning_rate: float | None = DEFAULTS["addressing_learning_rate"],
                   values_initial_accumulator: float = DEFAULTS["values_initial_accumulator"]):
    """The memory's optimizer recipe: three rates for three kinds of variables.

    ``model.sparse_variables()`` (memory values, Cross's rows) take ``values_optimizer``:
    ``"sparse_adam"`` (`lmn_tf.memory.SparseAdam`, a step of about ``values_learning_rate``
    per read row) or ``"adagrad"`` (from ``values_initial_accumulator``; its step shrinks with
    every read). ``model.addressing_variables()`` (the memory's query MLPs and keys) take
    Adam at ``addressing_learning_rate`` (None: the dense rate), so the slots a pair reads
    move slower than its values are written. Everything else takes Adam at
    ``learning_rate``. The split is resolved lazily at the first step, after the model
    built its variables. ``benchmarks/capacity_probe.py`` measures why (README).
    """
    if values_optimizer not in VALUES_OPTIMIZERS:
        raise ValueError(f"values_optimizer must be one of {VALUES_OPTIMIZERS}. "
                         f"Received: values_optimizer={values_optimizer!r}")
    adam = tf.keras.optimizers.legacy.Adam(learning_rate)
    if type(model).sparse_variables is RankingModel.sparse_variables:
        return adam
    import tensorflow_recommenders as tfrs

    from lmn_tf.memory import SparseAdam

    slow = addressing_learning_rate is not None

    def dense():
        other = {v.ref() for v in model.sparse_variables()}
        if slow:
            other |= {v.ref() for v in model.addressing_variables()}
        return [v for v in model.trainable_variables if v.ref() not in other]

    values = (SparseAdam(values_learning_rate) if values_optimizer == "sparse_adam" else
              tf.keras.optimizers.legacy.Adagrad(
                  values_learning_rate, initial_accumulator_value=values_initial_accumulator))
    parts = [(values, model.sparse_variables)]
    if slow:
        parts.append((tf.keras.optimizers.legacy.Adam(addressing_learning_rate),
                      model.addressing_variables))
    return tfrs.experimental.optimizers.CompositeOptimizer([*parts, (adam, dense)])


def config_optimizer(model, config: dict):
    """``make_optimizer`` with a run config's rates (`stored_config` fills legacy keys)."""
    return make_optimizer(model, config["learning_rate"], config["values_learning_rate"],
                          values_optimizer=config["values_optimizer"],
                          addressing_learning_rate=config["addressing_learning_rate"],
                          values_initial_accumulator=config["values_initial_accumulator"])


def build_from_config(config: dict):
    """The config's model with its variables created (an all-padding batch is run once)."""
    model = build_model(config["model"], config["vocab"], **config.get("hparams", {}))
    model(zero_features(1), training=False)
    return model


def run_checkpoint(model, optimizer=None) -> tf.train.Checkpoint:
    """What a run's checkpoints hold: the model, its optimizer, the epochs completed and the
    global step (batches trained; equals every optimizer's iteration count)."""
    parts = {"model": model, "epoch": tf.Variable(0, dtype=tf.int64, name="epoch"),
             "step": tf.Variable(0, dtype=tf.int64, name="step")}
    if optimizer is not None:
        parts["optimizer"] = optimizer
    ckpt = tf.train.Checkpoint(**parts)
    ckpt.save_counter  # noqa: B018  created now, so it is saved and restored like the rest
    return ckpt


def load_run(run_dir: str | pathlib.Path):
    """(model, config) of a run directory, with the latest epoch checkpoint's weights.

    Raises:
        FileNotFoundError: no such run directory, no config.json, or no checkpoint.
        lmn_tf.checkpointing.CheckpointError: the checkpoint is incomplete or corrupt.
    """
    run = pathlib.Path(run_dir)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"Not a run directory (no config.json): {run}")
    config = stored_config(json.loads((run / "config.json").read_text()))
    latest = early_stopping.best_prefix(run) or checkpointing.latest(run / "checkpoints")
    if latest is None:
        raise FileNotFoundError(f"No checkpoint in {run / 'checkpoints'}: train the run first")
    model = build_from_config(config)
    ckpt = run_checkpoint(model)
    checkpointing.restore(ckpt, latest).expect_partial().assert_existing_objects_matched()
    return model, config


def check_config(run_dir: str | pathlib.Path, config: dict) -> None:
    """Refuse to train ``config`` into a run directory that holds another config's training.

    Raises:
        ValueError: ``config.json`` and a checkpoint exist and a key outside
            ``RESUMABLE_CHANGES`` differs (the message lists the keys).
    """
    run = pathlib.Path(run_dir)
    if not (run / "config.json").is_file() or not (
            (run / "checkpoints").is_dir() or (run / "shards").is_dir()):
        return  # nothing trained yet: the new config simply replaces the old
    # A key added to DEFAULTS after the run was trained had its default's behaviour then.
    old = {**{k: v for k, v in DEFAULTS.items() if k in ADDED_KEYS},
           **stored_config(json.loads((run / "config.json").read_text()))}
    new = json.loads(json.dumps(config))  # tuples -> lists, as stored
    diff = sorted(k for k in {*old, *new} - set(RESUMABLE_CHANGES) if old.get(k) != new.get(k))
    if diff:
        changes = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        raise ValueError(f"{run} holds a run trained with another config ({changes}). Resume it "
                         "with the same flags, or train into a new --run-dir.")


def stepping_optimizers(optimizer) -> list:
    """The optimizers that step with every batch: a CompositeOptimizer's parts that own
    variables (LMN with fixed addressing has no addressing variables, so its slow Adam never
    steps), or the optimizer itself. Call once the model is built."""
    parts = getattr(optimizer, "_optimizers_and_vars", None)
    if parts is None:
        return [optimizer]
    return [part for part, variables in parts if variables()]


def resume_point(run: pathlib.Path, steps_per_epoch: int) -> str | None:
    """The checkpoint to resume from: the end-of-epoch or mid-epoch one with more steps."""
    candidates = []
    for directory, steps in ((run / "checkpoints", steps_per_epoch),
                             (run / "checkpoints" / "mid-epoch", 1)):
        prefix = checkpointing.latest(directory)
        if prefix is not None:
            candidates.append((int(prefix.rsplit("-", 1)[1]) * steps, prefix))
    return max(candidates)[1] if candidates else None


def restore_for_training(ckpt: tf.train.Checkpoint, prefix: str):
    """Restore model and optimizer from ``prefix``; returns the load status.

    Raises:
        CheckpointError: damaged files, or the optimizer state is absent or inconsistent
            (an optimizer's iteration count differs from the checkpoint's step).
    """
    status = checkpointing.restore(ckpt, prefix)
    step = int(ckpt.step.numpy())
    for optimizer in stepping_optimizers(ckpt.optimizer):
        iterations = int(optimizer.iterations.numpy())  # created now: restored on creation
        if iterations != step:
            raise checkpointing.CheckpointError(
                f"{prefix}: optimizer {type(optimizer).__name__} restored at iteration "
                f"{iterations}, but the checkpoint is at step {step}: its optimizer state is "
                "missing or stale")
    return status


class _CheckRestored(tf.keras.callbacks.Callback):
    """After the first resumed step (when the optimizer slots exist): every value of the
    checkpoint was restored, and every slot came from it rather than being re-initialised."""

    def __init__(self, status, prefix: str):
        super().__init__()
        self.status, self.prefix = status, prefix

    def on_train_batch_end(self, batch, logs=None):
        if self.status is not None:
            try:
                self.status.assert_consumed()
            except AssertionError as e:
                raise checkpointing.CheckpointError(
                    f"{self.prefix}: does not match the model and optimizer ({e})") from e
            self.status = None


class _SaveProgress(tf.keras.callbacks.Callback):
    """Counts steps; saves every ``every`` steps (mid-epoch) and at each epoch's end."""

    def __init__(self, ckpt, steps_per_epoch: int, every: int, epochs: checkpointing.Manager,
                 mid_epoch: checkpointing.Manager):
        super().__init__()
        self.ckpt, self.steps_per_epoch, self.every = ckpt, steps_per_epoch, every
        self.epochs, self.mid_epoch = epochs, mid_epoch

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.ckpt.step.assign_add(1).numpy())
        if self.every and step % self.every == 0 and step % self.steps_per_epoch:
            self.mid_epoch.save(step)  # an epoch's last step is saved by on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        self.ckpt.epoch.assign(epoch + 1)
        self.epochs.save(epoch + 1)


def fit_resumable(model, ckpt, run: pathlib.Path, train_arrays: dict, config: dict,
                  callbacks: list, verbose: int = 1, drop_remainder: bool = False,
                  keep_epochs: int = 2) -> int:
    """``model.fit`` for ``config["epochs"]`` from the run's latest checkpoint, if any.

    Returns:
        The global step it started from (0 for a fresh run).
    """
    n, batch_size, epochs = len(train_arrays[schema.LABEL]), config["batch_size"], config["epochs"]
    steps_per_epoch = n // batch_size if drop_remainder else math.ceil(n / batch_size)
    epoch_manager = checkpointing.Manager(ckpt, run / "checkpoints", max_to_keep=keep_epochs)
    mid_manager = checkpointing.Manager(ckpt, run / "checkpoints" / "mid-epoch", max_to_keep=1)
    prefix, status = resume_point(run, steps_per_epoch), None
    if prefix is not None:
        model(zero_features(1), training=False)
        status = restore_for_training(ckpt, prefix)
    start = int(ckpt.step.numpy())
    epoch, skip = divmod(start, steps_per_epoch)
    if epoch > epochs or (epoch == epochs and skip):
        raise ValueError(f"{prefix} is at epoch {epoch} step {skip}, past --epochs {epochs}. "
                         f"Received: epochs={epochs}")
    if status is not None and epoch == epochs:
        status.expect_partial()  # no step will create the optimizer's slots: nothing to check
    if prefix is not None and verbose:
        print(f"Resuming {run} from {prefix}: epoch {epoch + 1}, step {skip} of "
              f"{steps_per_epoch}" if epoch < epochs else
              f"{run} is complete ({epochs} epochs in {prefix}): evaluating only")
    callbacks = [_CheckRestored(status, prefix), *callbacks, _SaveProgress(
        ckpt, steps_per_epoch, config.get("checkpoint_every") or 0, epoch_manager, mid_manager)]

    def batches(first: int, last: int, skip: int = 0):
        return lmn_data.epoch_batches(train_arrays, batch_size, config["seed"],
                                      range(first, last), skip, drop_remainder)

    # Always give fit the step count: past the end of a dataset of unknown length, fit runs
    # one more step that stops at the missing batch, yet ops without a data dependency still
    # run (measured: legacy Adam's sparse `m *= beta_1` decayed the embedding slots once more).
    if skip:  # the interrupted epoch's remaining batches, then the whole epochs
        model.fit(batches(epoch, epoch + 1, skip), initial_epoch=epoch, epochs=epoch + 1,
                  steps_per_epoch=steps_per_epoch - skip, verbose=verbose, callbacks=callbacks)
        epoch += 1
    if epoch < epochs:
        model.fit(batches(epoch, epochs), initial_epoch=epoch, epochs=epochs,
                  steps_per_epoch=steps_per_epoch, verbose=verbose, callbacks=callbacks)
    return start


def train(config: dict, run_dir: str | pathlib.Path, data=None, verbose: int = 1,
          callbacks: list | None = None, evaluate: bool = True) -> dict:
    """Trains ``config["model"]`` into ``run_dir`` and returns the eval metrics.

    ``config`` needs "model" and "dataset" and may set "hparams", "epochs", "batch_size",
    "learning_rate", "values_learning_rate", "values_initial_accumulator", "seed", "limit",
    "eval_limit", "checkpoint_every" (steps between mid-epoch checkpoints; 0: epoch ends
    only), "history" ("rated" or "positive": which earlier events the sequences hold).
    ``data`` may pass preloaded ``(train, eval, vocab)`` arrays. A run directory's
    checkpoint is resumed (see the module docstring). Extra Keras ``callbacks`` are appended.

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
    config["vocab"] = dataclasses.asdict(vocab) if dataclasses.is_dataclass(vocab) else vocab
    config["num_train"], config["num_eval"] = len(train_arrays[schema.LABEL]), len(
        eval_arrays[schema.LABEL])
    check_config(run, config)
    run.mkdir(parents=True, exist_ok=True)
    checkpointing.atomic_write(run / "config.json",
                               json.dumps(config, indent=2, sort_keys=True) + "\n")

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
        checkpointing.atomic_write(run / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        with tf.summary.create_file_writer(str(run / "logs" / "eval")).as_default():
            for k in ("auc", "logloss"):
                tf.summary.scalar(k, metrics[k], step=int(ckpt.epoch.numpy()))
    return metrics


def evaluate_arrays(model, eval_arrays: dict[str, np.ndarray], batch_size: int = 4096,
                    verbose: int = 1, warm_users: np.ndarray | None = None) -> dict:
    """AUC / LogLoss (and, on synthetic data, the oracle's) of ``model`` on eval arrays.

    With ``warm_users`` (the user ids of the training window) also the AUC on warm users'
    events ("auc_warm") and on cold users' ("auc_cold"), and the warm share of events.
    """
    ds = lmn_data.make_dataset(eval_arrays, batch_size)
    labels, logits = evaluation.predict(model, ds, verbose=verbose)
    metrics = evaluation.score(labels, logits)
    if warm_users is not None:
        warm = np.isin(eval_arrays["user_id"], warm_users)
        metrics["warm_share"] = float(warm.mean())
        for name, mask in (("auc_warm", warm), ("auc_cold", ~warm)):
            if 0 < labels[mask].sum() < mask.sum():  # AUC needs both labels
                metrics[name] = evaluation.auc(labels[mask], logits[mask])
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
                             "paper's setting, the results up to commit bae9dbd)")
    parser.add_argument("--no-statistics", action="store_true",
                        help="leave the running statistics out of the model (with --history "
                             "positive: the models of the results up to commit bae9dbd)")
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
            "addressing_learning_rate": args.addressing_learning_rate, "seed": args.seed,
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
