"""Horovod: the memory's value rows sharded over workers, data-parallel training around them.

The only package that imports Horovod. From the command line::

    horovodrun -np 2 -H localhost:2 --gloo lmn-tf train --horovod --model lmn --run-dir RUN

(``fit``: shard checkpoints for resume, a consolidated model that ``lmn-tf evaluate`` and
``lmn-tf export`` read unchanged.) From Python, ``values.AlltoallValues`` plugs into
``LMNLayer(value_store=...)``; ``training`` wraps the TFRS step's tape, broadcasts initial
weights and shards the data; ``checkpoint`` saves every rank's shard and consolidates shards
into one table for export. Recipe, run under
``horovodrun -np N -H localhost:N --gloo python your_script.py``::

    import lmn_tf
    from lmn_tf.distributed import checkpoint, training

    training.init()
    model = build_model("lmn", vocab, value_store=training.value_store(), ...)
    model(zero_features(1))                      # build: shards exist before broadcast
    model.compile(optimizer=make_optimizer(model, 1e-3, 0.05))
    training.distribute(model)                   # Horovod tape, shards kept local
    model.fit(training.shard_dataset(unbatched, global_batch_size),
              callbacks=training.callbacks(chief_only=[tensorboard]),
              verbose=training.fit_verbose())
    checkpoint.save(run_dir + "/shards", model, model.optimizer)   # every rank
    single = build_model("lmn", vocab, ...); single(zero_features(1))
    checkpoint.copy_weights(model, single)       # every rank: allgather of the shards
    checkpoint.run_on_chief(export, single, export_dir)             # rank 0 only

Every lookup of a sharded model is a collective: all ranks must run the same steps (hence
``shard_dataset`` drops the remainder). Evaluate the consolidated ``single`` model on rank 0,
which needs no other rank and sees every example.
"""

from lmn_tf.distributed.values import AlltoallValues, shard_store

__all__ = ["AlltoallValues", "shard_store"]
