"""The run directory: its config (defaults, legacy keys, what may change on resume), its
checkpoint's contents, and the model rebuilt from it (`load_run`).

    RUN/config.json      {"model", "dataset", "vocab", "hparams", "world_size", "seed", ...}
    RUN/checkpoints/     Checkpoint(model, optimizer, epoch, step) at each epoch's end,
                         ckpt-<epoch>: what load_run, evaluate, export read
    RUN/checkpoints/mid-epoch/   the same every ``checkpoint_every`` steps: resume only
    RUN/shards/          Horovod runs: every rank's shard (`lmn_tf.distributed.shard_checkpoints`)
    RUN/logs/            TensorBoard
    RUN/metrics.json     the final evaluation

A run directory accepts only its own config: a key outside ``RESUMABLE_CHANGES`` that differs
from the stored one is refused (`check_config`). Configs written by older code are read as
today's (`stored_config`): a missing key had its ``LEGACY`` value.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import tensorflow as tf

from lmn_tf import checkpointing, early_stopping
from lmn_tf.data import schema
from lmn_tf.data.random_batches import zero_features
from lmn_tf.models import build_model
from lmn_tf.models.lmn import DEFAULT_QUERY_USER, PRESETS, legacy_hparams

# `lmn-tf train`'s defaults (its flags' and `lmn_tf.train.train`'s), the one place they live.
DEFAULTS = {"epochs": 1, "batch_size": 1024, "learning_rate": 4e-3,
            "values_optimizer": "sparse_adam", "values_learning_rate": 0.03,
            "values_initial_accumulator": 0.1, "addressing_learning_rate": 1e-4, "seed": 0,
            "learning_rate_decay": "cosine", "checkpoint_every": 200, "history": "rated",
            "patience": 0, "validation": 0.1}
# Config keys a run directory lets change between runs: none alters the trained model's math.
RESUMABLE_CHANGES = ("epochs", "eval_limit", "num_eval", "checkpoint_every")
# Config keys newer than some run directories (their default is what those runs did).
ADDED_KEYS = ("values_initial_accumulator", "patience", "validation")
# Config keys whose default changed: a config without the key ran with the old value
# (addressing_learning_rate None: the memory's queries and keys trained with the dense Adam;
# learning_rate_decay "none": constant Adam rates).
LEGACY = {"history": "positive", "values_optimizer": "adagrad", "addressing_learning_rate": None,
          "learning_rate_decay": "none"}


def history_of(config: dict) -> str:
    """Which events a run's sequences hold (``schema.HISTORIES``); configs written before the
    key existed trained on positive-only sequences."""
    return config.get("history", LEGACY["history"])


def stored_config(config: dict) -> dict:
    """A run directory's config.json as today's code reads it: a key it lacks had its
    ``LEGACY`` value; a run from before the feedback-aware sequences (no "history" key) also
    had models without rating embeddings or statistics; LMN's hparams in older names are
    renamed (`lmn_tf.models.lmn.legacy_hparams`), an LMN from before the decayed recipe
    (no "learning_rate_decay" key) had the paper's design as its defaults, and one whose
    hparams name no ``query_user`` (written before run configs recorded it) had the profile
    store alone."""
    before_feedback = "history" not in config
    before_decay = "learning_rate_decay" not in config  # and before LMN's current defaults
    config = {**LEGACY, **config}
    if before_feedback:
        config["hparams"] = {"feedback": False, "statistics": False,
                             **config.get("hparams", {})}
    if config.get("model") == "lmn":
        config["hparams"] = legacy_hparams(config.get("hparams", {}))
        if before_decay:  # LMN's defaults were the paper's design then
            config["hparams"] = {**PRESETS["paper"], **config["hparams"]}
        config["hparams"] = {"query_user": "profile", **config["hparams"]}
    return config


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


def run_config(config: dict, train_arrays: dict, eval_arrays: dict, vocab) -> dict:
    """``config`` completed as config.json stores it: ``DEFAULTS`` under it, the vocabulary
    and the train and eval sizes added, and an LMN's stores named (``query_user``), so that
    a later default cannot change what the run holds."""
    config = {**DEFAULTS, "hparams": {}, "world_size": 1, **config}
    if config["model"] == "lmn":
        config["hparams"] = {"query_user": list(DEFAULT_QUERY_USER), **config["hparams"]}
    config["vocab"] = dataclasses.asdict(vocab) if dataclasses.is_dataclass(vocab) else vocab
    config["num_train"] = len(train_arrays[schema.LABEL])
    config["num_eval"] = len(eval_arrays[schema.LABEL])
    return config


def write_json(path: pathlib.Path, doc: dict, sort_keys: bool = False) -> None:
    """config.json, metrics.json: written atomically (`checkpointing.atomic_write`)."""
    checkpointing.atomic_write(path, json.dumps(doc, indent=2, sort_keys=sort_keys) + "\n")


def write_config(run_dir: str | pathlib.Path, config: dict) -> None:
    """Creates the run directory and (re)writes its config.json."""
    run = pathlib.Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / "config.json", config, sort_keys=True)


def build_from_config(config: dict, **layers):
    """The config's model with its variables created (an all-padding batch is run once);
    ``layers`` go to the model's constructor beside the config's hparams (``value_store``)."""
    model = build_model(config["model"], config["vocab"], **layers, **config.get("hparams", {}))
    model(zero_features(1), training=False)
    return model


def run_checkpoint(model, optimizer=None) -> tf.train.Checkpoint:
    """What a run's checkpoints hold: the model, its optimizer, the epochs completed and the
    global step (batches trained; equals every stepping optimizer's iteration count)."""
    parts = {"model": model, "epoch": tf.Variable(0, dtype=tf.int64, name="epoch"),
             "step": tf.Variable(0, dtype=tf.int64, name="step")}
    if optimizer is not None:
        parts["optimizer"] = optimizer
    ckpt = tf.train.Checkpoint(**parts)
    ckpt.save_counter  # noqa: B018  created now, so it is saved and restored like the rest
    return ckpt


def load_run(run_dir: str | pathlib.Path):
    """(model, config) of a run directory, with the latest epoch checkpoint's weights (with
    early stopping: the best epoch's).

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
