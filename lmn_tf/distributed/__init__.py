"""Horovod: the memory's value rows sharded over workers, data-parallel training around them.

The only package that imports Horovod. From the command line::

    horovodrun -np 2 -H localhost:2 --gloo lmn-tf train --horovod --model lmn --run-dir RUN

(``fit``: shard checkpoints for resume, a consolidated model that ``lmn-tf evaluate`` and
``lmn-tf export`` read unchanged.) From Python, ``values.AlltoallValues`` plugs into
``LMNLayer(value_store=...)``; ``training`` wraps the TFRS step's tape, broadcasts initial
weights and shards the data; ``shard_checkpoints`` saves every rank's shard and consolidates shards
into one table for export. Recipe, run under
``horovodrun -np N -H localhost:N --gloo python your_script.py``::

    import lmn_tf
    from lmn_tf.distributed import shard_checkpoints, training

    training.init()
    model = build_model("lmn", vocab, value_store=training.value_store(), ...)
    model(zero_features(1))                      # build: shards exist before broadcast
    model.compile(optimizer=make_optimizer(model, 1e-3, 0.05))
    training.distribute(model)                   # Horovod tape, shards kept local
    model.fit(training.shard_dataset(unbatched, global_batch_size),
              callbacks=training.callbacks(chief_only=[tensorboard]),
              verbose=training.fit_verbose())
    shard_checkpoints.save(run_dir + "/shards", model, model.optimizer)   # every rank
    single = build_model("lmn", vocab, ...); single(zero_features(1))
    shard_checkpoints.copy_weights(model, single)       # every rank: allgather of the shards
    shard_checkpoints.run_on_chief(export, single, export_dir)             # rank 0 only

Every lookup of a sharded model is a collective: all ranks must run the same steps (hence
``shard_dataset`` drops the remainder). Evaluate the consolidated ``single`` model on rank 0,
which needs no other rank and sees every example.
"""

import re

# Horovod 0.28.1, its newest release, compiles its TensorFlow ops against the installed
# TensorFlow, and only up to 2.18 (setup.py's `distributed` extra; the README's version table).
HOROVOD_MAX_TENSORFLOW = (2, 18)
HOROVOD_BUILD = ("HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 "
                 "pip install --no-build-isolation 'lmn-tf[distributed]'")


def _check_horovod() -> None:
    """Raise an ImportError that says what to do, instead of Horovod's own (an undefined
    symbol from a library built against another TensorFlow, or a bare ModuleNotFoundError)."""
    import tensorflow as tf

    tf_minor = tuple(int(x) for x in re.findall(r"\d+", tf.__version__)[:2])
    too_new = tf_minor > HOROVOD_MAX_TENSORFLOW
    supported = (f"Horovod 0.28 builds only against TensorFlow <= "
                 f"{'.'.join(map(str, HOROVOD_MAX_TENSORFLOW))}; this environment has "
                 f"TensorFlow {tf.__version__}")
    try:
        import horovod
    except ImportError as e:
        raise ImportError(
            "lmn_tf.distributed needs Horovod, which is not installed. " + (
                f"{supported}: distributed training needs TensorFlow 2.16-2.18 "
                "(requirements/ci.txt pins 2.18.1)." if too_new else
                f"Build it against this TensorFlow with `{HOROVOD_BUILD}`.")) from e
    if too_new and horovod.__version__.startswith("0.28."):
        raise ImportError(f"lmn_tf.distributed: {supported}. Use TensorFlow 2.16-2.18 for "
                          "distributed training (requirements/ci.txt pins 2.18.1).")
    try:
        import horovod.tensorflow
    except ImportError as e:
        raise ImportError(
            f"lmn_tf.distributed: Horovod {horovod.__version__} is installed but its "
            f"TensorFlow ops do not load with TensorFlow {tf.__version__} ({e}). Rebuild it "
            f"against this TensorFlow: `pip uninstall horovod`, then `{HOROVOD_BUILD}`.") from e


_check_horovod()

from lmn_tf.distributed.values import AlltoallValues, shard_store  # noqa: E402

__all__ = ["HOROVOD_MAX_TENSORFLOW", "AlltoallValues", "shard_store"]
