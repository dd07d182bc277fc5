"""Horovod shard checkpoints in one process (world size 1): a save is committed only when
every shard is on disk, an interrupted save leaves the last commit in force, and damaged
shard files or commit records are refused with an error naming the file."""

import json

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf import checkpointing

pytestmark = pytest.mark.horovod  # deselect with -m 'not horovod' (tests/conftest.py)


@pytest.fixture(scope="module")
def hvd_checkpoint():
    import horovod.tensorflow as hvd

    from lmn_tf.distributed import shard_checkpoints

    hvd.init()
    return shard_checkpoints


def model_with(value: float):
    model = tf.keras.Sequential([tf.keras.layers.Dense(3, kernel_initializer="zeros")])
    model.build((None, 2))
    model.layers[0].kernel.assign(tf.fill((2, 3), float(value)))
    return model


def test_commits_versions_and_keeps_two(hvd_checkpoint, tmp_path):
    for epoch in (1, 2, 3):
        hvd_checkpoint.save(str(tmp_path), model_with(epoch), meta={"epoch": epoch})
    world = json.loads((tmp_path / "world.json").read_text())
    assert world == {"world_size": 1, "version": 3, "meta": {"epoch": 3}}
    assert sorted(p.name for p in tmp_path.glob("v-*")) == ["v-000002", "v-000003"]
    restored = model_with(0.0)
    assert hvd_checkpoint.restore(str(tmp_path), restored) == {"epoch": 3}
    np.testing.assert_array_equal(restored.layers[0].kernel.numpy(), np.full((2, 3), 3.0))


def test_interrupted_save_leaves_the_last_commit(hvd_checkpoint, tmp_path, monkeypatch):
    hvd_checkpoint.save(str(tmp_path), model_with(1.0), meta={"epoch": 1})
    real_write = checkpointing.write

    def crash(checkpoint, prefix):  # this shard's files land, then the process dies
        real_write(checkpoint, prefix)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpointing, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        hvd_checkpoint.save(str(tmp_path), model_with(2.0), meta={"epoch": 2})
    assert (tmp_path / "v-000002").is_dir()  # written, never committed
    restored = model_with(0.0)
    assert hvd_checkpoint.restore(str(tmp_path), restored) == {"epoch": 1}
    np.testing.assert_array_equal(restored.layers[0].kernel.numpy(), np.ones((2, 3)))
    monkeypatch.setattr(checkpointing, "write", real_write)
    hvd_checkpoint.save(str(tmp_path), model_with(2.0), meta={"epoch": 2})  # retries cleanly
    assert hvd_checkpoint.restore(str(tmp_path), restored) == {"epoch": 2}


def test_damaged_shards_and_commit_records_are_refused(hvd_checkpoint, tmp_path):
    hvd_checkpoint.save(str(tmp_path), model_with(1.0), meta={"epoch": 1})
    data = next((tmp_path / "v-000001" / "rank-0-of-1").glob("ckpt.data-*"))
    blob = bytearray(data.read_bytes())
    blob[len(blob) // 2] ^= 1
    data.write_bytes(bytes(blob))
    with pytest.raises(checkpointing.CheckpointError, match=f"^{data}: SHA-256 differs"):
        hvd_checkpoint.restore(str(tmp_path), model_with(0.0))
    (tmp_path / "world.json").write_text('{"world_size": 1')
    with pytest.raises(checkpointing.CheckpointError,
                       match=f"^{tmp_path / 'world.json'}: unreadable commit record"):
        hvd_checkpoint.restore(str(tmp_path), model_with(0.0))
    with pytest.raises(FileNotFoundError, match="No committed shard checkpoint"):
        hvd_checkpoint.restore(str(tmp_path / "empty"), model_with(0.0))
