"""The memory's optimizer recipe: three rates for three kinds of variables.

The memory values are written sparsely (a step touches the rows it read), so they take an
optimizer of their own at a rate of their own; the memory's addressing (query MLPs, keys)
decides which rows a pair reads, so it moves slower than the values are written; everything
else is an ordinary dense model on Adam. The Adam rates decay to 0 over the run while the
values' rate stays, so the values' last writes land at addresses that no longer move.
``benchmarks/capacity_probe.py`` measures each choice (README, "What each technique did for
the layer's memory").
"""

from __future__ import annotations

import math

import tensorflow as tf

from lmn_tf.models.base import RankingModel
from lmn_tf.training.run_dir import DEFAULTS

VALUES_OPTIMIZERS = ("sparse_adam", "adagrad")
LEARNING_RATE_DECAYS = ("cosine", "none")


def make_optimizer(model, learning_rate: float,
                   values_learning_rate: float = DEFAULTS["values_learning_rate"], *,
                   values_optimizer: str = DEFAULTS["values_optimizer"],
                   addressing_learning_rate: float | None = DEFAULTS["addressing_learning_rate"],
                   values_initial_accumulator: float = DEFAULTS["values_initial_accumulator"],
                   decay_steps: int | None = None):
    """The optimizer of a ranking model: one per kind of variable.

    ``model.sparse_variables()`` (memory values, Cross's rows) take ``values_optimizer``:
    ``"sparse_adam"`` (`lmn_tf.memory.SparseAdam`, a step of about ``values_learning_rate``
    per read row) or ``"adagrad"`` (from ``values_initial_accumulator``; its step shrinks with
    every read). ``model.addressing_variables()`` (the memory's query MLPs and keys) take
    Adam at ``addressing_learning_rate`` (None: the dense rate), so the slots a pair reads
    move slower than its values are written. Everything else takes Adam at
    ``learning_rate``. With ``decay_steps``, both Adam rates follow a cosine from their value
    to 0 over that many steps and the values' rate stays: the inputs a memory is queried with
    (the model's embeddings) stop drifting, so the last writes are read back. The split is
    resolved lazily at the first step, after the model built its variables. A model without
    sparse variables gets plain Adam (with the same decay).

    Raises:
        ValueError: an unknown ``values_optimizer`` or a non-positive ``decay_steps``.
    """
    if values_optimizer not in VALUES_OPTIMIZERS:
        raise ValueError(f"values_optimizer must be one of {VALUES_OPTIMIZERS}. "
                         f"Received: values_optimizer={values_optimizer!r}")
    if decay_steps is not None and decay_steps <= 0:
        raise ValueError(f"decay_steps must be positive or None. Received: {decay_steps=}")

    def rate(value: float):
        if decay_steps is None:
            return value
        return tf.keras.optimizers.schedules.CosineDecay(value, decay_steps)

    adam = tf.keras.optimizers.legacy.Adam(rate(learning_rate))
    if type(model).sparse_variables is RankingModel.sparse_variables:
        return adam
    import tensorflow_recommenders as tfrs

    from lmn_tf.memory import SparseAdam

    slow = addressing_learning_rate is not None

    def dense():
        other = {v.ref() for v in model.sparse_variables()}
        if slow:
            other |= {v.ref() for v in model.addressing_variables()}
        return [v for v in model.trainable_variables if v.ref() not in other]

    values = (SparseAdam(values_learning_rate) if values_optimizer == "sparse_adam" else
              tf.keras.optimizers.legacy.Adagrad(
                  values_learning_rate, initial_accumulator_value=values_initial_accumulator))
    parts = [(values, model.sparse_variables)]
    if slow:
        parts.append((tf.keras.optimizers.legacy.Adam(rate(addressing_learning_rate)),
                      model.addressing_variables))
    return tfrs.experimental.optimizers.CompositeOptimizer([*parts, (adam, dense)])


def config_optimizer(model, config: dict):
    """``make_optimizer`` with a run config's rates (`run_dir.stored_config` fills legacy
    keys); ``learning_rate_decay="cosine"`` decays over the config's whole run, ``epochs``
    passes over ``num_train`` examples (a resume that changes ``epochs`` rescales the rest
    of the curve)."""
    decay = config["learning_rate_decay"]
    if decay not in LEARNING_RATE_DECAYS:
        raise ValueError(f"learning_rate_decay must be one of {LEARNING_RATE_DECAYS}. "
                         f"Received: learning_rate_decay={decay!r}")
    steps = config["epochs"] * math.ceil(config["num_train"] / config["batch_size"])
    return make_optimizer(model, config["learning_rate"], config["values_learning_rate"],
                          values_optimizer=config["values_optimizer"],
                          addressing_learning_rate=config["addressing_learning_rate"],
                          values_initial_accumulator=config["values_initial_accumulator"],
                          decay_steps=steps if decay == "cosine" else None)


def stepping_optimizers(optimizer) -> list:
    """The optimizers that step with every batch: a CompositeOptimizer's parts that own
    variables (LMN with fixed addressing has no addressing variables, so its slow Adam never
    steps), or the optimizer itself. Call once the model is built."""
    parts = getattr(optimizer, "_optimizers_and_vars", None)
    if parts is None:
        return [optimizer]
    return [part for part, variables in parts if variables()]


def check_iterations(optimizer, step: int, where: str) -> None:
    """Every stepping optimizer restored from ``where`` is at ``step`` (its iteration count
    is created, and so restored, on first read).

    Raises:
        lmn_tf.checkpointing.CheckpointError: an optimizer is at another iteration: its state
            is missing or stale.
    """
    from lmn_tf.checkpointing import CheckpointError

    for part in stepping_optimizers(optimizer):
        iterations = int(part.iterations.numpy())
        if iterations != step:
            raise CheckpointError(
                f"{where}: optimizer {type(part).__name__} restored at iteration {iterations}, "
                f"but the checkpoint is at step {step}: its optimizer state is missing or stale")
