"""Crash recovery of `lmn-tf train`: kill -9 mid-epoch, rerun the same command, and the run
resumes from the last checkpoint (weights, Adam and Adagrad slots, iteration counts) and
ends bit-for-bit where the uninterrupted run ends; a run directory refuses another config."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf import checkpointing, train
from lmn_tf.data import schema
from lmn_tf.data.random_batches import random_arrays, zero_features
from lmn_tf.models import build_model

REPO = Path(__file__).resolve().parents[2]
TINY_LMN = {"embedding_dim": 8, "hidden_units": [8], "attention_units": [4], "num_keys": 4,
            "top_k": 2, "value_dim": 8}
VOCAB = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
DATA = (random_arrays(VOCAB, 200, seed=1), random_arrays(VOCAB, 64, seed=2), VOCAB)
CONFIG = {"model": "lmn", "dataset": "ml-100k", "batch_size": 16, "epochs": 3,
          "hparams": TINY_LMN, "checkpoint_every": 5}  # 13 steps per epoch


def tensors(prefix) -> dict[str, np.ndarray]:
    """Every numeric tensor of a checkpoint except the training-AUC counters (they restart
    with each epoch's progress bar, and a resumed epoch's bar starts mid-way)."""
    reader = tf.train.load_checkpoint(str(prefix))
    return {k: reader.get_tensor(k) for k, dtype in reader.get_variable_to_dtype_map().items()
            if dtype != tf.string and "_ranking_metrics" not in k}


def assert_same_checkpoints(a, b):
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    diff = {k: float(np.abs(ta[k].astype(float) - tb[k].astype(float)).max()) for k in ta}
    assert max(diff.values()) <= 1e-6, {k: d for k, d in diff.items() if d > 1e-6}  # measured: 0
    return ta


class Crash(tf.keras.callbacks.Callback):
    """Raises out of fit after ``at`` steps: an in-process stand-in for kill -9."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.steps = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps == self.at:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted")
    return run, train.train(CONFIG, run, data=DATA, verbose=0)


def test_crash_mid_epoch_resumes_to_the_same_model(uninterrupted, tmp_path):
    run_a, metrics_a = uninterrupted
    with pytest.raises(KeyboardInterrupt):  # dies at step 22 = epoch 2, step 9
        train.train(CONFIG, tmp_path, data=DATA, verbose=0, callbacks=[Crash(22)])
    assert checkpointing.latest(tmp_path / "checkpoints").endswith("ckpt-1")
    assert checkpointing.latest(tmp_path / "checkpoints" / "mid-epoch").endswith("ckpt-20")
    metrics_b = train.train(CONFIG, tmp_path, data=DATA, verbose=0)
    assert metrics_b["initial_step"] == 20  # 2 steps lost, not the epoch's 9
    assert metrics_b["auc"] == pytest.approx(metrics_a["auc"], abs=1e-6)
    assert metrics_b["logloss"] == pytest.approx(metrics_a["logloss"], abs=1e-6)
    final = assert_same_checkpoints(run_a / "checkpoints" / "ckpt-3",
                                    tmp_path / "checkpoints" / "ckpt-3")
    # The comparison covered the optimizer state: SparseAdam moments of the memory values,
    # the slow Adam's of the memory's keys, Adam's of the dense weights, and all three
    # iteration counts.
    slots = [k for k in final if ".OPTIMIZER_SLOT" in k]
    for owner, optimizer in (("memory/values", 0), ("memory/row_keys", 1),
                             ("model/attention/", 2)):  # DIN's attention: the dense Adam
        for moment in ("m", "v"):
            assert any(owner in k and f"Optimizer{optimizer}/{moment}/" in k
                       for k in slots), (owner, moment, slots)
    for optimizer in range(3):
        assert final[f"optimizer/Optimizer{optimizer}/iter/.ATTRIBUTES/VARIABLE_VALUE"] == 39


def test_rerunning_a_finished_run_only_evaluates(uninterrupted):
    run, metrics = uninterrupted
    before = tensors(run / "checkpoints" / "ckpt-3")
    again = train.train(CONFIG, run, data=DATA, verbose=0)
    assert again["initial_step"] == 39
    assert again["auc"] == pytest.approx(metrics["auc"], abs=1e-6)
    assert checkpointing.latest(run / "checkpoints").endswith("ckpt-3")
    after = tensors(run / "checkpoints" / "ckpt-3")
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_a_run_dir_refuses_another_config(uninterrupted):
    run, _ = uninterrupted
    with pytest.raises(ValueError, match=r"batch_size: 16 -> 32.*new --run-dir"):
        train.train({**CONFIG, "batch_size": 32}, run, data=DATA, verbose=0)
    with pytest.raises(ValueError, match=r"hparams: .*num_keys"):
        train.train({**CONFIG, "hparams": {**TINY_LMN, "num_keys": 5}}, run, data=DATA, verbose=0)
    with pytest.raises(ValueError, match="past --epochs 2"):
        train.train({**CONFIG, "epochs": 2}, run, data=DATA, verbose=0)
    assert json.loads((run / "config.json").read_text())["batch_size"] == 16  # untouched


def test_a_config_key_added_later_keeps_older_runs_resumable(uninterrupted, tmp_path):
    run = tmp_path / "older"
    shutil.copytree(uninterrupted[0], run)
    stored = json.loads((run / "config.json").read_text())
    del stored["values_initial_accumulator"]  # as written before the key existed
    (run / "config.json").write_text(json.dumps(stored))
    assert train.train(CONFIG, run, data=DATA, verbose=0)["initial_step"] > 0  # accepted
    with pytest.raises(ValueError, match=r"values_initial_accumulator: 0.1 -> 1e-10"):
        train.train({**CONFIG, "values_initial_accumulator": 1e-10}, run, data=DATA, verbose=0)


def test_a_checkpoint_without_optimizer_state_is_refused(tmp_path):
    """Resuming must never re-initialise the optimizer silently."""
    tf.keras.utils.set_random_seed(0)
    model = build_model("lmn", VOCAB, **TINY_LMN)
    model(zero_features(1))
    ckpt = train.run_checkpoint(model)  # model only, as load_run reads it
    ckpt.step.assign(13)
    ckpt.epoch.assign(1)
    train.train({**CONFIG, "epochs": 1}, tmp_path, data=DATA, verbose=0, evaluate=False)
    checkpointing.Manager(ckpt, tmp_path / "checkpoints").save(1)
    with pytest.raises(checkpointing.CheckpointError,
                       match=r"ckpt-1: optimizer SparseAdam restored at iteration 0.*step 13"):
        train.train(CONFIG, tmp_path, data=DATA, verbose=0)


def lmn_tf_train(run_dir: Path) -> subprocess.Popen:
    args = ["--model", "lmn", "--dataset", "ml-100k", "--limit", "2400", "--eval-limit", "500",
            "--batch-size", "32", "--epochs", "2", "--checkpoint-every", "10", "--num-keys", "8",
            "--top-k", "4",
            "--hparams", '{"embedding_dim": 8, "hidden_units": [16], "attention_units": [8]}',
            "--quiet", "--run-dir", str(run_dir)]  # 75 steps per epoch
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "lmn_tf", "train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_kill_9_mid_epoch_then_the_same_command_resumes(tmp_path):
    runs = {name: tmp_path / name for name in ("killed", "uninterrupted")}
    state = runs["killed"] / "checkpoints" / "mid-epoch" / "checkpoint"
    proc = lmn_tf_train(runs["killed"])
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:  # wait for epoch 2, step 15
        if state.exists() and int(checkpointing.latest(state.parent).rsplit("-", 1)[1]) >= 90:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL, output[-3000:]
    assert not (runs["killed"] / "metrics.json").exists()
    killed_at = int(checkpointing.latest(state.parent).rsplit("-", 1)[1])

    results = {}
    for name, run in runs.items():  # the same command again; and a run never interrupted
        proc = lmn_tf_train(run)
        output = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, output[-3000:]
        results[name] = json.loads(output.strip().splitlines()[-1])
    resumed = results["killed"]
    assert 75 < resumed["initial_step"] == killed_at < 150  # from the mid-epoch-2 checkpoint
    assert resumed["auc"] == pytest.approx(results["uninterrupted"]["auc"], abs=1e-6)
    assert resumed["logloss"] == pytest.approx(results["uninterrupted"]["logloss"], abs=1e-6)
    assert_same_checkpoints(runs["killed"] / "checkpoints" / "ckpt-2",
                            runs["uninterrupted"] / "checkpoints" / "ckpt-2")
