"""LMNLayer on AlltoallValues (2 real ranks) is the LocalValues model: outputs, gradients,
sharded checkpoints and consolidation."""

import json

import pytest
from hvdrun import horovodrun

pytestmark = pytest.mark.horovod  # deselect with -m 'not horovod' (tests/conftest.py)

TOL = 1e-5


@pytest.fixture(scope="module", params=["kernel", "stock"])
def layer_job(request, tmp_path_factory):
    # Both selection paths: the C++ kernel (built by pip install -e .) and the stock ops.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMN_TF_SELECTION_KERNEL", "1" if request.param == "kernel" else "0")
        job = horovodrun("_worker_layer.py", 2, tmp_path_factory.mktemp("layer"), timeout=90)
    job.selection = request.param
    return job


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_layer_sharded_equals_local(layer_job, mode):
    for rank, result in enumerate(layer_job.results):
        assert result["selection_kernel"] == (layer_job.selection == "kernel"), (rank, result)
        r = result[mode]
        assert r["num_weights"] == 11, (rank, r)
        assert max(r["out"], r["loss"], r["dense_grads"], r["values_grad"]) <= TOL, (rank, r)
        assert r["values_indexed_slices"] and r["values_grad_norm"] > 0, (rank, r)


def test_sharded_checkpoint_restores_and_consolidates(layer_job):
    for rank, result in enumerate(layer_job.results):
        r = result["restore"]
        assert r["fresh_differed"] > 0.1, (rank, r)  # the restore really changed the weights
        assert max(r["sharded"], r["consolidated"], r["full_table"]) <= TOL, (rank, r)


def test_restore_refuses_another_world_size(tmp_path):
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from lmn_tf.distributed import shard_checkpoints

    hvd.init()  # a single process: world size 1
    world = {"world_size": 2, "version": 1}
    (tmp_path / shard_checkpoints.WORLD_FILE).write_text(json.dumps(world))
    with pytest.raises(ValueError, match="holds 2 shards"):
        shard_checkpoints.restore(str(tmp_path), tf.keras.Sequential())
