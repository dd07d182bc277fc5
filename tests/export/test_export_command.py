"""`lmn-tf export` on a training run directory: success, and clear errors otherwise."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf import train as lmn_train
from lmn_tf.cli import main
from lmn_tf.data import schema
from lmn_tf.data.random_batches import random_arrays
from lmn_tf.data.vocabulary import Vocabulary
from lmn_tf.export.warmup import read_warmup

VOCAB = schema.Vocab(30, 40, 3, 8, 22, 100, 19, 10)
HPARAMS = dict(embedding_dim=4, hidden_units=(8,), attention_units=(8,), num_keys=8, top_k=4,
               value_dim=8)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    data = (random_arrays(VOCAB, 64, seed=0), random_arrays(VOCAB, 32, seed=1), VOCAB)
    lmn_train.train({"model": "lmn", "dataset": "synthetic", "hparams": HPARAMS,
                     "batch_size": 32}, run, data=data, verbose=0, evaluate=False)
    return run


def test_export_command_writes_a_version(run_dir, tmp_path, capsys):
    assert main(["export", "--run-dir", str(run_dir), "--base-path", str(tmp_path),
                 "--model-name", "lmn", "--values-dtype", "float16"]) == 0
    path = capsys.readouterr().out.strip()
    assert path == str(tmp_path / "lmn" / "1")
    model, _ = lmn_train.load_run(run_dir)
    x = {k: v for k, v in random_arrays(VOCAB, 8, seed=5).items() if k != schema.LABEL}
    signatures = tf.saved_model.load(path).signatures
    raw = Vocabulary.identity(VOCAB).to_raw(x)  # synthetic data: id k is spelled "k"
    served = signatures["serving_default"](**{k: tf.constant(v) for k, v in raw.items()})
    want = tf.sigmoid(model(x, training=False)[:, 0]).numpy()
    np.testing.assert_allclose(served["probability"].numpy(), want, atol=5e-3)
    by_index = signatures["serving_indices"](**{k: tf.constant(v) for k, v in x.items()})
    np.testing.assert_array_equal(by_index["logit"].numpy(), served["logit"].numpy())
    logs = read_warmup(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))
    batch = tf.make_ndarray(logs[-1].predict_log.request.inputs["hist_item_ids"])
    assert batch.shape == (64, schema.SEQ_LEN) and 0 < batch.max() < VOCAB.num_items
    assert main(["export", "--run-dir", str(run_dir), "--base-path", str(tmp_path),
                 "--version", "1"]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "no_config", "untrained"])
def test_export_command_clear_errors(tmp_path, capsys, case):
    run = tmp_path / "run"
    if case != "missing":
        run.mkdir()
    if case == "untrained":
        (run / "config.json").write_text(json.dumps({"model": "lmn", "vocab": {}}))
        (run / "checkpoints").mkdir()
    code = main(["export", "--run-dir", str(run), "--base-path", str(tmp_path / "models")])
    err = capsys.readouterr().err
    assert code == 2
    assert {"missing": "run directory not found", "no_config": "no config.json",
            "untrained": "no checkpoint"}[case] in err, err
    assert not (tmp_path / "models").exists()
