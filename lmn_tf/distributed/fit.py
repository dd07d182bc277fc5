"""`lmn-tf train --horovod`: the training run of ``lmn_tf.train``, data-parallel under
``horovodrun -np N -H localhost:N --gloo lmn-tf train --horovod ...``.

Same run directory as a single-worker run, plus the shards:

    RUN/config.json    written by rank 0 ("world_size": N)
    RUN/shards/        every rank's checkpoint (its value shard + optimizer state) at each
                       epoch's end, committed in two phases
                       (`lmn_tf.distributed.shard_checkpoints`): resume
    RUN/checkpoints/   the consolidated single-worker model, one per epoch, written by rank 0
                       from the gathered shards: `lmn-tf evaluate`, `lmn-tf export` and
                       `load_run` read it unchanged
    RUN/metrics.json   rank 0's evaluation of the consolidated model on the whole eval split

Step k's global batch is the single-worker run's batch k with the same seed (each rank
takes every N-th example of it; the epoch's last, smaller batch is dropped), so N workers and
one worker train the same model. A killed rank ends the job (horovodrun stops the others);
rerunning the command resumes from the last committed epoch. Checkpoints are per epoch here:
``--checkpoint-every`` applies to single-worker runs only.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import horovod.tensorflow as hvd
import tensorflow as tf

from lmn_tf import checkpointing
from lmn_tf import data as lmn_data
from lmn_tf import train as single  # the command-line flags and report of `lmn-tf train`
from lmn_tf.ctr_metrics import evaluate_arrays
from lmn_tf.distributed import shard_checkpoints, training
from lmn_tf.memory.values import LocalValues
from lmn_tf.training.datasets import load_data
from lmn_tf.training.optimizer import check_iterations, config_optimizer
from lmn_tf.training.resume import check_not_past
from lmn_tf.training.run_dir import (
    DEFAULTS,
    build_from_config,
    check_config,
    run_checkpoint,
    run_config,
    write_config,
    write_json,
)


class _EpochCheckpoints(tf.keras.callbacks.Callback):
    """Every rank saves its shard; the shards are gathered and rank 0 saves the whole model."""

    def __init__(self, run: pathlib.Path, twin: tf.keras.Model, manager, ckpt,
                 steps_per_epoch: int):
        super().__init__()
        self.run, self.twin, self.manager = run, twin, manager
        self.epoch, self.step, self.steps_per_epoch = ckpt.epoch, ckpt.step, steps_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.assign(epoch + 1)
        self.step.assign((epoch + 1) * self.steps_per_epoch)
        shard_checkpoints.save(str(self.run / "shards"), self.model, self.model.optimizer,
                               meta={"epoch": epoch + 1})  # all ranks; the commit: the epoch
        shard_checkpoints.copy_weights(self.model, self.twin)  # allgather of the shards: all ranks
        shard_checkpoints.run_on_chief(self.manager.save, epoch + 1)


PATIENCE_REFUSED = ("Early stopping is not supported with --horovod: train a fixed number "
                    "of --epochs (choose it with a single-process `lmn-tf train --patience` "
                    "run).")


def train(config: dict, run_dir: str | pathlib.Path, verbose: int = 1) -> dict | None:
    """Data-parallel ``lmn_tf.train.train`` (same ``config``); returns rank 0's metrics.

    Raises:
        ValueError: if ``batch_size`` is not a multiple of the number of ranks, the run
            directory holds another config's run, or ``patience`` asks for early stopping.
        lmn_tf.checkpointing.CheckpointError: a damaged shard or commit record.
    """
    config = {**DEFAULTS, "hparams": {}, **config}
    if config["patience"]:  # validation + best-epoch restore exist for one process only
        raise ValueError(PATIENCE_REFUSED + f" Received: patience={config['patience']}")
    training.init()
    size, rank = hvd.size(), hvd.rank()
    config = {**config, "world_size": size}
    training.check_global_batch_size(config["batch_size"])  # before loading any data
    run = pathlib.Path(run_dir)

    def load():
        return load_data(config["dataset"], config.get("limit"), config.get("eval_limit"),
                         progress=verbose > 0 and rank == 0, history=config["history"])

    data = shard_checkpoints.run_on_chief(load)  # rank 0 builds the data cache; the others read it
    train_arrays, eval_arrays, vocab = data if rank == 0 else load()
    config = run_config(config, train_arrays, eval_arrays, vocab)
    check_config(run, config)  # every rank: all of them stop on a mismatch
    if training.is_chief():  # one writer for the run's metadata
        write_config(run, config)
    shard_checkpoints.barrier()

    tf.keras.utils.set_random_seed(config["seed"])  # same shuffle order on every rank
    # the shards exist (the model is built) before anything is broadcast
    model = build_from_config(config, value_store=training.value_store())
    model.compile(optimizer=config_optimizer(model, config))
    training.distribute(model)  # Horovod tape: dense gradients averaged, shards kept local
    twin = build_from_config(config, value_store=LocalValues())
    ckpt = run_checkpoint(twin)
    manager = checkpointing.Manager(ckpt, run / "checkpoints", max_to_keep=2)
    steps_per_epoch = config["num_train"] // config["batch_size"]

    initial_epoch, shards = 0, str(run / "shards")
    if shard_checkpoints.committed(shards) is not None:  # resume: every rank its shard
        initial_epoch = shard_checkpoints.restore(shards, model, model.optimizer)["epoch"]
        check_iterations(model.optimizer, initial_epoch * steps_per_epoch, shards)
    check_not_past(run / "shards", initial_epoch, config["epochs"])

    global_batches = lmn_data.epoch_batches(  # epoch e's order depends on (seed, e) only
        train_arrays, config["batch_size"], config["seed"], range(initial_epoch, config["epochs"]),
        drop_remainder=True)
    mine = training.shard_batches(global_batches, config["batch_size"])  # my rows of each
    start = time.time()
    if initial_epoch < config["epochs"]:
        model.fit(mine, epochs=config["epochs"], initial_epoch=initial_epoch,
                  steps_per_epoch=steps_per_epoch, verbose=training.fit_verbose(verbose),
                  callbacks=[*training.callbacks(chief_only=[
                      tf.keras.callbacks.TensorBoard(str(run / "logs"), update_freq=50)]),
                             _EpochCheckpoints(run, twin, manager, ckpt, steps_per_epoch)])
    metrics = {"train_seconds": time.time() - start, "world_size": size,
               "initial_epoch": initial_epoch}
    shard_checkpoints.copy_weights(model, twin)  # all ranks: the consolidated model for evaluation

    def evaluate():
        metrics.update(evaluate_arrays(twin, eval_arrays, config["batch_size"], verbose))
        write_json(run / "metrics.json", metrics)
        return metrics

    return shard_checkpoints.run_on_chief(evaluate)  # the consolidated model needs no other rank


def add_arguments(parser: argparse.ArgumentParser) -> None:
    single.add_arguments(parser)  # the same flags as `lmn-tf train`


def run(args: argparse.Namespace) -> int:
    if args.patience:  # refused before horovodrun's workers load any data
        print(f"lmn-tf train --horovod: {PATIENCE_REFUSED} Received: --patience "
              f"{args.patience}", file=sys.stderr)
        return 2
    metrics = train(single.config_from_args(args), args.run_dir, verbose=0 if args.quiet else 1)
    if metrics is not None:  # rank 0 reports; the other ranks have nothing to add
        single.report(args, metrics)
    return 0
