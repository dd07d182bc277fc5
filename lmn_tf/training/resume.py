"""The resumable fit: ``model.fit`` that continues from a run's checkpoint, exactly.

Rerunning a run resumes from the most advanced checkpoint: the end-of-epoch one or the
mid-epoch one (every ``checkpoint_every`` steps). It restores model weights and optimizer
state (moments, accumulators, iteration counts), then trains the rest of the interrupted
epoch in the same order (`lmn_tf.data.epoch_batches`: each epoch's shuffle is a function of
(seed, epoch)), so a kill costs at most ``checkpoint_every`` steps and the resumed run equals
the uninterrupted one. Checkpoints are verified before loading (`lmn_tf.checkpointing`): a
damaged one is an error naming the file, never loaded; so is optimizer state that is absent
or stale (`optimizer.check_iterations`), which would otherwise be re-initialised silently.
"""

from __future__ import annotations

import math
import pathlib

import tensorflow as tf

from lmn_tf import checkpointing
from lmn_tf import data as lmn_data
from lmn_tf.data import schema
from lmn_tf.data.random_batches import zero_features
from lmn_tf.training.optimizer import check_iterations


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
    check_iterations(ckpt.optimizer, int(ckpt.step.numpy()), prefix)
    return status


def check_not_past(where, epoch: int, epochs: int, skip: int | None = None) -> None:
    """A checkpoint at ``epoch`` (and ``skip`` steps into the next) is within ``epochs``.

    Raises:
        ValueError: the checkpoint is past ``epochs``.
    """
    if epoch > epochs or (epoch == epochs and skip):
        at = f"epoch {epoch}" if skip is None else f"epoch {epoch} step {skip}"
        raise ValueError(f"{where} is at {at}, past --epochs {epochs}. Received: epochs={epochs}")


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

    ``ckpt`` is the run's checkpoint (`run_dir.run_checkpoint`) of ``model`` and its
    optimizer; the end-of-epoch checkpoints keep the last ``keep_epochs``.

    Returns:
        The global step it started from (0 for a fresh run).

    Raises:
        ValueError: the checkpoint is past ``config["epochs"]``.
        lmn_tf.checkpointing.CheckpointError: the checkpoint to resume from is damaged.
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
    check_not_past(prefix, epoch, epochs, skip)
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
