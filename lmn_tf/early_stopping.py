"""Training to convergence: validation AUC after every epoch, stop when it stops improving.

The validation split is the last ``validation`` fraction of the training period by time
(`split_validation`), so it is as much "later" than what the model trains on as the test
period is. After each epoch `ValidationStopping` scores it and writes ``RUN/validation.json``

    {"auc": {"1": 0.71, "2": 0.72, ...}, "best_epoch": 2, "stopped": false, "patience": 2}

before that epoch's checkpoint is committed; training stops once ``patience`` epochs in a
row did not beat the best one (ties keep the earlier epoch). The run then holds the best
epoch's checkpoint (the epoch checkpoints kept number ``patience + 1``, see `keep_epochs`),
and `best_prefix` names it for evaluation, export and `load_run`. A resumed run re-reads
the file, so a crash loses no validation history; a stopped run trains no further.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import tensorflow as tf

from lmn_tf import checkpointing, ctr_metrics
from lmn_tf import data as lmn_data
from lmn_tf.data import schema

STATE_FILE = "validation.json"


def split_validation(arrays: dict[str, np.ndarray], fraction: float
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(fit, validation): the earliest ``1 - fraction`` of the time-ordered samples, the rest.

    Raises:
        ValueError: ``fraction`` outside (0, 1), or a split with no sample on one side.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1). Received: {fraction=}")
    n = len(arrays[schema.LABEL])
    cut = n - round(n * fraction)
    if not 0 < cut < n:
        raise ValueError(f"{n} training samples leave nothing to validate on or to fit with "
                         f"at validation fraction {fraction}")
    return {k: v[:cut] for k, v in arrays.items()}, {k: v[cut:] for k, v in arrays.items()}


def read_state(run: str | pathlib.Path) -> dict:
    path = pathlib.Path(run) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {"auc": {}}


def best_prefix(run: str | pathlib.Path) -> str | None:
    """The checkpoint of the best validation epoch, or None for a run without validation."""
    state = read_state(run)
    if state.get("best_epoch") is None:
        return None
    return str(pathlib.Path(run) / "checkpoints" / f"ckpt-{state['best_epoch']}")


def keep_epochs(patience: int) -> int:
    """Epoch checkpoints to keep so the best one survives ``patience`` worse epochs."""
    return max(2, patience + 1)


class ValidationStopping(tf.keras.callbacks.Callback):
    """Scores the validation split after every epoch; stops after ``patience`` non-improving
    epochs. Place it before the callback that commits the epoch's checkpoint.

    Raises:
        ValueError: ``patience`` < 1.
    """

    def __init__(self, run: str | pathlib.Path, validation: dict[str, np.ndarray],
                 patience: int, batch_size: int = 4096):
        super().__init__()
        if patience < 1:
            raise ValueError(f"patience must be >= 1. Received: {patience=}")
        self.run, self.validation = pathlib.Path(run), validation
        self.patience, self.batch_size = patience, batch_size

    def on_epoch_end(self, epoch, logs=None):
        labels, logits = ctr_metrics.predict(
            self.model, lmn_data.make_dataset(self.validation, self.batch_size), verbose=0)
        auc = ctr_metrics.score(labels, logits)["auc"]
        state = read_state(self.run)
        state["auc"] = {**state["auc"], str(epoch + 1): auc}
        aucs = {int(k): v for k, v in state["auc"].items() if int(k) <= epoch + 1}
        best = max(sorted(aucs), key=lambda e: aucs[e])  # ties: the earlier epoch
        stopped = epoch + 1 - best >= self.patience
        state.update(best_epoch=best, stopped=stopped, patience=self.patience,
                     last_epoch=epoch + 1)
        checkpointing.atomic_write(self.run / STATE_FILE, json.dumps(state, indent=2) + "\n")
        if logs is not None:
            logs["val_auc"] = auc
        if stopped:
            self.model.stop_training = True
