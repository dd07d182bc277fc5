"""Data-parallel training of TFRS models with Horovod, value shards kept rank-local.

Launch with ``horovodrun -np N -H localhost:N --gloo python script.py`` (the recipe in full is in
``lmn_tf/distributed/__init__.py``):

- ``init()`` once per process (before building any ``AlltoallValues``).
- ``distribute(model)`` before ``fit``: TFRS's ``train_step`` calls ``tape.gradient`` and
  ``optimizer.apply_gradients`` itself, so a ``hvd.DistributedOptimizer`` would be bypassed;
  instead the step's tape is wrapped. Replicated weights get their gradients averaged
  (allreduce); value shards are registered as local sources — their gradient already arrived
  summed over all ranks through the reverse alltoall.
- ``broadcast_variables(model)`` after building, or ``callbacks(model)`` in ``fit``: rank 0's
  initial replicated weights everywhere; shards are never broadcast (each rank owns others).
- ``shard_dataset`` gives each rank its slice with an equal number of steps.
- ``is_chief()`` gates logging, checkpoint metadata and export (see ``shard_checkpoints.py``).
"""

from __future__ import annotations

import numbers
import os

import horovod.tensorflow as hvd
import tensorflow as tf

from lmn_tf.distributed.values import AlltoallValues, shard_store
from lmn_tf.memory.values import LocalValues, ValueStore


def init() -> None:
    """Start Horovod; give each rank one GPU (by local rank) or its share of the CPU cores."""
    hvd.init()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:  # one process per GPU: rank k on a node sees only GPU k
        tf.config.experimental.set_memory_growth(gpus[hvd.local_rank()], True)
        tf.config.set_visible_devices(gpus[hvd.local_rank()], "GPU")
        return
    # N ranks on one host would each default to all cores and oversubscribe the CPU.
    if hvd.local_size() > 1:
        try:
            cores = len(os.sched_getaffinity(0))
            tf.config.threading.set_intra_op_parallelism_threads(
                max(cores // hvd.local_size(), 1))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TF already initialised its thread pools: keep its choice
            pass


def is_chief() -> bool:
    """True on rank 0, the one rank that logs, writes metadata and exports."""
    return hvd.rank() == 0


def value_store() -> ValueStore:
    """``AlltoallValues`` when several ranks run, else the plain ``LocalValues``."""
    return AlltoallValues() if hvd.size() > 1 else LocalValues()


def is_shard(variable: tf.Variable) -> bool:
    """True for an ``AlltoallValues`` shard (rank-local), False for replicated weights."""
    return shard_store(variable) is not None


def check_global_batch_size(global_batch_size: int) -> int:
    """The per-rank batch size ``G / N``.

    Raises:
        ValueError: if ``global_batch_size`` is not a multiple of the number of ranks.
    """
    if global_batch_size % hvd.size():
        raise ValueError(f"global_batch_size must be a multiple of {hvd.size()} ranks. "
                         f"Received: global_batch_size={global_batch_size}")
    return global_batch_size // hvd.size()


def shard_batches(global_batches: tf.data.Dataset, global_batch_size: int) -> tf.data.Dataset:
    """Rank r's rows ``r, r + N, ...`` of each global batch (a dict or a tensor per element).

    ``global_batches`` must be batched by ``global_batch_size`` with ``drop_remainder=True``
    and ordered identically on every rank (shuffle with a seed): then every rank runs the
    same number of steps, and step k's union over ranks is the single worker's batch k.

    Raises:
        ValueError: if ``global_batch_size`` is not a multiple of the number of ranks.
    """
    check_global_batch_size(global_batch_size)
    rank, size = hvd.rank(), hvd.size()
    return global_batches.map(lambda batch: tf.nest.map_structure(lambda t: t[rank::size], batch))


def shard_dataset(dataset: tf.data.Dataset, global_batch_size: int) -> tf.data.Dataset:
    """Rank r's elements ``r, r + N, ...`` batched by ``global_batch_size / N``.

    Step k's global batch (the union over ranks) is elements ``[k·G, (k+1)·G)`` — the same
    batch a single worker sees with batch size G, so the runs are the same optimisation.
    ``dataset`` must be unbatched and ordered identically on every rank (shuffle with a seed).

    Raises:
        ValueError: if ``global_batch_size`` is not a multiple of the number of ranks.
    """
    # Batch globally, then split: every rank gets floor(n / G) steps. (Sharding first could
    # leave one rank a step more, which then waits forever in a collective.)
    return shard_batches(dataset.batch(global_batch_size, drop_remainder=True),
                         global_batch_size)


def distributed_tape(tape: tf.GradientTape, model: tf.keras.Model) -> tf.GradientTape:
    """Wrap ``tape``: replicated gradients averaged over ranks, shard gradients kept local.

    A shard's gradient is Σ_r ∂loss_r/∂row (the alltoall brought every rank's share home);
    the global loss is mean_r loss_r, so it is divided by N (``scale_local_gradients``) —
    exactly the single-worker gradient on the global batch.
    """
    tape = hvd.DistributedGradientTape(tape, scale_local_gradients=True)
    for variable in model.trainable_variables:
        if is_shard(variable):
            tape.register_local_source(variable)  # no allreduce: other ranks hold other rows
    return tape


def train_step(model: tf.keras.Model, inputs) -> dict[str, tf.Tensor]:
    """TFRS's ``Model.train_step`` with the Horovod tape; logged losses are global means."""
    with tf.GradientTape() as tape:
        loss = model.compute_loss(inputs, training=True)
        regularization_loss = tf.reduce_sum([tf.reduce_sum(x) for x in model.losses])
        total_loss = loss + regularization_loss
    tape = distributed_tape(tape, model)  # the one line TFRS's own step lacks
    gradients = tape.gradient(total_loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
    metrics = {metric.name: metric.result() for metric in model.metrics}  # rank-local
    # Average the logged losses so rank 0's log shows the global batch's loss.
    metrics["loss"] = hvd.allreduce(loss, op=hvd.Average)
    metrics["regularization_loss"] = regularization_loss  # identical weights: same everywhere
    metrics["total_loss"] = hvd.allreduce(total_loss, op=hvd.Average)
    return metrics


def distribute(model: tf.keras.Model) -> tf.keras.Model:
    """Make ``model.fit`` data-parallel (call before ``fit``; returns ``model``).

    A ``RankingModel`` exposes its step's tape through ``tape_fn``, so only the tape is
    wrapped; any other TFRS model (``compute_loss(inputs, training)``) gets ``train_step``
    above instead of TFRS's own.
    """
    if hasattr(model, "tape_fn"):
        model.tape_fn = lambda tape: distributed_tape(tape, model)
    else:
        model.train_step = lambda inputs: train_step(model, inputs)  # instance attr wins
    model.train_function = None  # drop a step traced before the change
    return model


def broadcast_variables(model: tf.keras.Model, root_rank: int = 0) -> None:
    """Copy rank 0's replicated weights to every rank; shards stay put (collective).

    Optimizer state needs no broadcast: it starts equal and is then driven by averaged
    gradients, so it stays equal (slots of shards are rank-local like the shards).
    """
    hvd.broadcast_variables([v for v in model.variables if not is_shard(v)], root_rank)


class BroadcastVariables(tf.keras.callbacks.Callback):
    """``broadcast_variables`` at the start of ``fit`` — or, if the model is first built by
    its first step, right after that step (the single-worker run then differs in step 1)."""

    def __init__(self, root_rank: int = 0):
        super().__init__()
        self.root_rank, self.done = root_rank, False

    def on_train_begin(self, logs=None):
        if self.model.built and self.model.variables and not self.done:
            broadcast_variables(self.model, self.root_rank)
            self.done = True

    def on_train_batch_end(self, batch, logs=None):
        if not self.done:
            broadcast_variables(self.model, self.root_rank)
            self.done = True


class AverageBatchLogs(tf.keras.callbacks.Callback):
    """Average every batch's and epoch's numeric logs over ranks, in place, so what rank 0
    prints or writes (progress bar, TensorBoard, History) describes the global batch.

    Exact for losses over equal-size shards; an approximation for per-rank AUC.
    """

    def _average(self, logs):
        if logs:
            names = sorted(k for k, v in logs.items()
                           if isinstance(v, numbers.Real) and not isinstance(v, bool))
            if names:  # one allreduce per step; same names on every rank (same model)
                means = hvd.allreduce(tf.constant([float(logs[k]) for k in names]),
                                      op=hvd.Average, name="lmn_tf_logs")
                logs.update(zip(names, means.numpy().tolist(), strict=True))

    def on_train_batch_end(self, batch, logs=None):
        self._average(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._average(logs)


def callbacks(chief_only: list | tuple = ()) -> list:
    """The callbacks of a distributed ``fit``, first in the list: broadcast the initial
    weights, average the logs over ranks; then ``chief_only`` (loggers, TensorBoard,
    exporters) on rank 0 alone. Checkpoint writers are not chief-only: see
    ``lmn_tf.distributed.shard_checkpoints``."""
    return [BroadcastVariables(), AverageBatchLogs(), *(chief_only if is_chief() else [])]


def fit_verbose(verbose: int | str = "auto") -> int | str:
    """Keras ``verbose`` for this rank: progress bars on rank 0 only, silence elsewhere."""
    return verbose if is_chief() else 0
