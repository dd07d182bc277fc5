"""Damaged checkpoints are refused with an error naming the file, never loaded: by
`load_run` (evaluate, export) and by `train` (resume). A save interrupted by a crash leaves
the previous checkpoint as the latest."""

import dataclasses
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf import checkpointing, train
from lmn_tf.data import schema
from lmn_tf.data.random_batches import random_arrays

VOCAB = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
DATA = (random_arrays(VOCAB, 96, seed=1), random_arrays(VOCAB, 32, seed=2), VOCAB)
CONFIG = {"model": "lmn", "dataset": "ml-100k", "batch_size": 16, "epochs": 1,
          "checkpoint_every": 0, "hparams": {"embedding_dim": 8, "hidden_units": [8],
                                             "attention_units": [4], "num_keys": 4, "top_k": 2,
                                             "value_dim": 8}}
DATA_FILE = "ckpt-1.data-00000-of-00001"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained")
    train.train(CONFIG, run, data=DATA, verbose=0, evaluate=False)
    return run


def _flip(path, at=None):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _append(path):
    path.write_bytes(path.read_bytes() + b"\0\0\0\0")


DAMAGE = {  # name: (damage(checkpoint dir), the error's start, relative to that dir)
    "truncated data": (lambda d: _truncate(d / DATA_FILE), DATA_FILE + r": \d+ bytes"),
    "flipped data bit": (lambda d: _flip(d / DATA_FILE), DATA_FILE + ": SHA-256 differs"),
    "bytes appended to data": (lambda d: _append(d / DATA_FILE), DATA_FILE + r": \d+ bytes"),
    "missing data": (lambda d: os.remove(d / DATA_FILE), DATA_FILE + ": missing file"),
    "garbage index": (lambda d: (d / "ckpt-1.index").write_bytes(b"garbage"),
                      r"ckpt-1\.index: 7 bytes"),
    "flipped index bit": (lambda d: _flip(d / "ckpt-1.index", at=40),
                          r"ckpt-1\.index: SHA-256 differs"),
    "missing manifest": (lambda d: os.remove(d / "ckpt-1.manifest.json"),
                         r"ckpt-1\.manifest\.json: missing"),
    "garbage manifest": (lambda d: (d / "ckpt-1.manifest.json").write_text("{"),
                         r"ckpt-1\.manifest\.json: unreadable"),
    "garbage state file": (lambda d: (d / "checkpoint").write_text("garbage {{"),
                           "checkpoint: unreadable checkpoint state file"),
    "state names a missing checkpoint": (
        lambda d: (d / "checkpoint").write_text('model_checkpoint_path: "ckpt-7"\n'),
        r"ckpt-7\.index: missing, but .*checkpoint names it"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_checkpoint_is_refused_naming_the_file(trained, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    corrupt, message = DAMAGE[damage]
    corrupt(run / "checkpoints")
    pattern = f"^{run / 'checkpoints'}/{message}"
    with pytest.raises(checkpointing.CheckpointError, match=pattern):
        train.load_run(run)  # what `lmn-tf evaluate` and `lmn-tf export` call
    with pytest.raises(checkpointing.CheckpointError, match=pattern):
        train.train({**CONFIG, "epochs": 2}, run, data=DATA, verbose=0)  # resume


def test_tensorflow_alone_would_load_or_skip_these(trained, tmp_path):
    """Why the manifest: TF's own checks miss appended bytes and garbage state files."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    _append(run / "checkpoints" / DATA_FILE)
    model = train.build_from_config({**CONFIG, "vocab": dataclasses.asdict(VOCAB)})
    train.run_checkpoint(model).restore(str(run / "checkpoints" / "ckpt-1")).expect_partial()
    (run / "checkpoints" / "checkpoint").write_text("garbage {{")
    assert tf.train.latest_checkpoint(str(run / "checkpoints")) is None  # "untrained"


def test_interrupted_save_keeps_the_previous_checkpoint(trained, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    real_write = checkpointing.atomic_write

    def crash(path, text):  # the bundle of ckpt-2 is on disk; its manifest never gets written
        if str(path).endswith(checkpointing.MANIFEST):
            raise KeyboardInterrupt
        real_write(path, text)

    monkeypatch.setattr(checkpointing, "atomic_write", crash)
    with pytest.raises(KeyboardInterrupt):
        train.train({**CONFIG, "epochs": 2}, run, data=DATA, verbose=0)
    assert (run / "checkpoints" / "ckpt-2.index").exists()  # written, but never committed
    assert checkpointing.latest(run / "checkpoints").endswith("ckpt-1")
    model, _ = train.load_run(run)
    want = tf.train.load_checkpoint(str(run / "checkpoints" / "ckpt-1"))
    key = "model/logit/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    np.testing.assert_array_equal(model.logit.kernel.numpy(), want.get_tensor(key))

    monkeypatch.setattr(checkpointing, "atomic_write", real_write)
    metrics = train.train({**CONFIG, "epochs": 2}, run, data=DATA, verbose=0)
    assert metrics["initial_step"] == 6  # resumed from ckpt-1 (6 steps per epoch)
    checkpointing.verify(run / "checkpoints" / "ckpt-2")


def test_relative_run_directory_is_resumable_and_movable(tmp_path, monkeypatch):
    # `lmn-tf train --run-dir runs/x` passes a relative path; the state file must still name
    # the checkpoint by its bare name, so the run resumes and survives being moved.
    monkeypatch.chdir(tmp_path)
    train.train(CONFIG, "runs/a", data=DATA, verbose=0)
    assert "model_checkpoint_path: \"ckpt-1\"" in (
        tmp_path / "runs/a/checkpoints/checkpoint").read_text()
    shutil.move(tmp_path / "runs/a", tmp_path / "moved")
    train.load_run("moved")  # verifies and restores, or raises
    assert checkpointing.latest("moved/checkpoints").endswith("ckpt-1")
    assert train.train({**CONFIG, "epochs": 2}, "moved", data=DATA, verbose=0)["initial_step"] == 6


def test_latest_follows_a_save_that_retires_the_named_checkpoint(trained, tmp_path, monkeypatch):
    # A reader (e.g. a test or a monitor polling a running job) reads the state file naming
    # ckpt-1; before it looks at ckpt-1's files, the job saves ckpt-2 and deletes ckpt-1.
    directory = tmp_path / "checkpoints"
    shutil.copytree(trained / "checkpoints", directory)
    real = tf.train.get_checkpoint_state

    def racing(d, *args, **kwargs):
        state = real(d, *args, **kwargs)
        if state.model_checkpoint_path.endswith("ckpt-1"):  # the writer moves on meanwhile
            for f in directory.glob("ckpt-1.*"):
                f.rename(directory / f.name.replace("ckpt-1", "ckpt-2"))
            (directory / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n')
        return state

    monkeypatch.setattr(tf.train, "get_checkpoint_state", racing)
    assert checkpointing.latest(directory) == str(directory / "ckpt-2")
