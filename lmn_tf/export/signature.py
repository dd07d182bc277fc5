"""The export's two signatures: dense named inputs in, named (B,) outputs out.

``serving_default`` takes the raw features (`lmn_tf.data.raw.RAW_FEATURES`: the dataset's
own ids as strings, raw ages and years, the statistics) and maps them to indices in the
graph (`lmn_tf.export.raw_inputs`); ``serving_indices`` takes the index features
(``schema.FEATURES``), the contract before raw features, kept for callers that already map
ids themselves. Both have a free batch dimension and no ragged or sparse tensors, so a REST
client sends plain nested lists; both return the same outputs, a dict, so clients address
them by name rather than by position.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lmn_tf.data import schema
from lmn_tf.data.raw import RAW_FEATURES

SIGNATURE_KEY = "serving_default"  # raw features
INDICES_KEY = "serving_indices"  # index features
_WRITE_OPS = ("Assign", "ResourceScatter", "ResourceApply", "ResourceSparseApply")


def input_specs() -> dict[str, tf.TensorSpec]:
    """One ``tf.TensorSpec`` per schema feature; the spec name becomes the input name."""
    return {name: tf.TensorSpec((None, *shape), tf.as_dtype(dtype), name=name)
            for name, (dtype, shape) in schema.FEATURES.items()}


def raw_input_specs() -> dict[str, tf.TensorSpec]:
    """One ``tf.TensorSpec`` per raw feature (``RAW_FEATURES``), named like the feature."""
    return {name: tf.TensorSpec((None, *shape), tf.as_dtype(dtype), name=name)
            for name, (dtype, shape) in RAW_FEATURES.items()}


def raw_serving_function(raw_inputs, index_fn: tf.types.experimental.ConcreteFunction
                         ) -> tf.types.experimental.ConcreteFunction:
    """``serving_default``: raw features -> ``raw_inputs`` (indices) -> ``index_fn``.

    Args:
        raw_inputs: a `lmn_tf.export.raw_inputs.RawInputs` (its tables are saved with it).
        index_fn: the pruned index-feature function (`serving_function`).
    """

    @tf.function(input_signature=[raw_input_specs()])
    def serve(features):
        return index_fn(raw_inputs(features))

    return serve.get_concrete_function()


def serving_function(model: tf.keras.Model) -> tf.types.experimental.ConcreteFunction:
    """Traces ``model`` in inference mode and keeps only the ops the outputs need.

    Layers may still compute ``add_loss``/``add_metric`` terms (the memory loss and its
    metric, L2 penalties) when called with ``training=False``; those ops hang off the graph
    unused. Pruning to the outputs removes them, so the exported graph is lookup-only
    whatever the layers do.

    Raises:
        ValueError: if the outputs themselves depend on a variable write.
    """

    @tf.function(input_signature=[input_specs()])
    def traced(features):
        logit = tf.reshape(tf.cast(model(features, training=False), tf.float32), (-1,))  # (B,)
        return {"logit": logit, "probability": tf.sigmoid(logit)}

    return _pruned(traced.get_concrete_function())


def _pruned(fn: tf.types.experimental.ConcreteFunction) -> tf.types.experimental.ConcreteFunction:
    # Re-import the sub-graph the outputs depend on into a fresh function. Captures (variable
    # handles, constants) are re-captured from the same eager tensors, so the SavedModel
    # still maps each captured handle to its variable.
    outputs = fn.structured_outputs
    graph_def = fn.graph.as_graph_def()
    for node in graph_def.node:
        # Control edges only order side effects (metric updates next to add_loss terms);
        # following them would keep exactly the training-only ops this prunes away.
        node.input[:] = [i for i in node.input if not i.startswith("^")]
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(
        graph_def, [t.op.name for t in outputs.values()])
    writes = sorted(n.name for n in graph_def.node if n.op.startswith(_WRITE_OPS))
    if writes:
        raise ValueError(f"the serving outputs depend on variable writes: {writes}")
    kept = {node.name for node in graph_def.node}
    placeholders = dict(zip(sorted(input_specs()), fn.graph.inputs, strict=False))
    captures = list(fn.graph.captures)  # (external eager tensor, internal placeholder)

    @tf.function(input_signature=[input_specs()])
    def serve(features):
        # Only what the kept ops read: an unused capture would drag its variable along.
        input_map = {p.name: features[k] for k, p in placeholders.items() if p.op.name in kept}
        input_map.update({p.name: tf.identity(e) for e, p in captures if p.op.name in kept})
        results = tf.graph_util.import_graph_def(
            graph_def, input_map=input_map, return_elements=[t.name for t in outputs.values()],
            name="serve")
        return dict(zip(outputs, results, strict=True))

    return serve.get_concrete_function()


def example_features(n: int = 4) -> dict[str, np.ndarray]:
    """A small valid batch without data: id 1 everywhere, sequences 1..n long then padding.

    Used for warm-up when no real examples are given; id 1 exists in every vocabulary
    because index 0 is reserved for padding.
    """
    out = {}
    for name, (dtype, shape) in schema.FEATURES.items():
        x = np.ones((n, *shape), dtype)
        if shape:
            x[np.arange(shape[0])[None, :] > np.arange(n)[:, None]] = 0  # row i keeps i+1 ids
        out[name] = x
    return out
