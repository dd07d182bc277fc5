"""`lmn-tf train --patience`: the validation split, the stop rule, the best epoch restored."""

import json

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf import checkpointing, early_stopping, train
from lmn_tf import data as lmn_data
from lmn_tf.ctr_metrics import predict, score
from lmn_tf.data import schema
from lmn_tf.data.random_batches import random_arrays

VOCAB = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
CONFIG = {"model": "din", "dataset": "ml-100k", "batch_size": 16, "epochs": 8, "patience": 1,
          "learning_rate": 0.02, "checkpoint_every": 0,
          "hparams": {"embedding_dim": 8, "hidden_units": [8], "attention_units": [4]}}


def test_validation_is_the_latest_tenth_of_training():
    arrays = {"label": np.arange(50, dtype=np.float32), "x": np.arange(50)}
    fit, val = early_stopping.split_validation(arrays, 0.1)
    np.testing.assert_array_equal(fit["x"], np.arange(45))
    np.testing.assert_array_equal(val["x"], np.arange(45, 50))
    with pytest.raises(ValueError, match="fraction"):
        early_stopping.split_validation(arrays, 1.0)


def test_stops_restores_the_best_epoch_and_a_rerun_trains_no_further(tmp_path):
    data = (random_arrays(VOCAB, 200, seed=1), random_arrays(VOCAB, 64, seed=2), VOCAB)
    metrics = train.train(CONFIG, tmp_path, data=data, verbose=0)
    state = json.loads((tmp_path / early_stopping.STATE_FILE).read_text())
    aucs = {int(k): v for k, v in state["auc"].items()}
    assert sorted(aucs) == list(range(1, state["last_epoch"] + 1))
    best = state["best_epoch"]
    assert aucs[best] == max(aucs.values()) and all(aucs[e] < aucs[best] for e in aucs if e < best)
    assert state["stopped"] and state["last_epoch"] == best + 1 < CONFIG["epochs"]
    assert metrics["best_epoch"] == best and metrics["epochs_trained"] == state["last_epoch"]
    # The validation AUC is the model's on the last 10% of the training samples.
    _, val = early_stopping.split_validation(data[0], 0.1)
    assert len(val["label"]) == 20
    model, _ = train.load_run(tmp_path)  # load_run reads the best epoch, not the last
    ds = lmn_data.make_dataset(val, 64)
    assert score(*predict(model, ds, verbose=0))["auc"] == pytest.approx(aucs[best], abs=1e-6)
    latest = checkpointing.latest(tmp_path / "checkpoints")
    assert latest.endswith(f"ckpt-{state['last_epoch']}")
    eval_ds = lmn_data.make_dataset(data[1], 64)
    assert score(*predict(model, eval_ds, verbose=0))["auc"] == pytest.approx(metrics["auc"],
                                                                              abs=1e-6)
    again = train.train(CONFIG, tmp_path, data=data, verbose=0)
    steps = -(-180 // CONFIG["batch_size"])  # 180 fit samples
    assert again["initial_step"] == state["last_epoch"] * steps  # nothing trained
    assert again["auc"] == pytest.approx(metrics["auc"], abs=1e-7)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) == latest


def test_patience_zero_is_the_fixed_epoch_run(tmp_path):
    data = (random_arrays(VOCAB, 64, seed=1), random_arrays(VOCAB, 32, seed=2), VOCAB)
    train.train({**CONFIG, "epochs": 2, "patience": 0}, tmp_path, data=data, verbose=0,
                evaluate=False)
    assert not (tmp_path / early_stopping.STATE_FILE).exists()
    assert checkpointing.latest(tmp_path / "checkpoints").endswith("ckpt-2")


def test_learning_rate_grid_chooses_on_validation_and_tests_once(tmp_path):
    from lmn_tf import tuning

    data = (random_arrays(VOCAB, 200, seed=1), random_arrays(VOCAB, 64, seed=2), VOCAB)
    config = {**CONFIG, "epochs": 3}
    table = tuning.tune(config, tmp_path, (0.002, 0.02), data=data, verbose=0)
    assert set(table["runs"]) == {"0.002", "0.02"}
    vals = {r: v["validation_auc"] for r, v in table["runs"].items()}
    assert table["chosen"] == max(vals, key=vals.get)
    for rate in ("0.002", "0.02"):
        stored = json.loads((tmp_path / f"lr-{rate}" / "config.json").read_text())
        assert stored["learning_rate"] == float(rate) and stored["epochs"] == 3
        assert not (tmp_path / f"lr-{rate}" / "metrics.json").exists()  # no test scoring
    model, _ = train.load_run(tmp_path / f"lr-{table['chosen']}")
    ds = lmn_data.make_dataset(data[1], 64)
    assert score(*predict(model, ds, verbose=0))["auc"] == pytest.approx(table["test"]["auc"],
                                                                         abs=1e-6)
    with pytest.raises(ValueError, match="patience"):
        tuning.tune({**config, "patience": 0}, tmp_path / "x", data=data)


def test_tune_command_takes_the_train_flags_and_the_grid(capsys):
    from lmn_tf import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["tune", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--learning-rates" in out and "--patience" in out and "--history" in out
