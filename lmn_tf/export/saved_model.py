"""``export_saved_model``: a trained model -> ``BASE/NAME/VERSION`` for TF-Serving.

What is saved is a bare ``tf.Module`` holding exactly the variables the serving function
reads, never the Keras model: so no optimizer, no optimizer slots, no metric accumulators,
and no trained float32 value table when a low-precision copy replaces it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from lmn_tf.data import schema
from lmn_tf.data.vocabulary import Vocabulary
from lmn_tf.export.raw_inputs import RawInputs
from lmn_tf.export.serving_values import serving_stores
from lmn_tf.export.signature import (
    INDICES_KEY,
    SIGNATURE_KEY,
    example_features,
    raw_serving_function,
    serving_function,
)
from lmn_tf.export.versions import atomic_version_dir, next_version
from lmn_tf.export.warmup import write_warmup
from lmn_tf.memory.ops import stock_selection

VALUES_DTYPES = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}


def _read_variables(fn: tf.types.experimental.ConcreteFunction,
                    candidates: list[tf.Variable]) -> dict[str, tf.Variable]:
    """The candidates ``fn`` captures, keyed by variable name; fails on unknown captures.

    Keys only name checkpoint entries (the graph keeps each variable's own name), so a name
    two layers share just gets a ``_<i>`` suffix.
    """
    by_handle = {id(v.handle): v for v in candidates}
    read, unknown = {}, []
    for t in fn.captured_inputs:
        if t.dtype != tf.resource:
            continue
        v = by_handle.get(id(t))
        if v is None:
            unknown.append(t)
            continue
        key, i = v.name.split(":")[0], 0
        while key in read:
            i += 1
            key = f"{v.name.split(':')[0]}_{i}"
        read[key] = v
    if unknown:
        raise ValueError(f"the serving function reads {len(unknown)} resource(s) that are not "
                         "variables of the model; they would be missing from the export")
    return read


def export_saved_model(model: tf.keras.Model, base_path: str, model_name: str,
                       version: int | None = None, values_dtype: str = "float32",
                       warmup: Mapping[str, np.ndarray] | None = None,
                       write: bool = True, custom_ops: bool = False,
                       vocabulary: Vocabulary | None = None) -> str | None:
    """Exports ``model`` as a TF-Serving SavedModel and returns the version directory.

    Args:
        model: a built ranking model, ``model(features_dict) -> (B, 1)`` logits.
        base_path: TF-Serving's base directory; the export goes to ``base/model_name/version``.
        model_name: the model name clients use (also written into the warm-up requests).
        version: integer version; default the next free one (1 for a new model).
        values_dtype: storage dtype of the memory value table: ``"float32"``, ``"float16"``
            or ``"bfloat16"`` (lookups still return float32).
        warmup: representative ``schema.FEATURES`` arrays for the warm-up requests (a few
            rows of evaluation data); default ``signature.example_features()``. The raw
            signature's warm-up requests are ``vocabulary.to_raw(warmup)``.
        write: ``False`` only consolidates the value table and writes nothing. Under
            Horovod with sharded values every rank must call this (``full_table`` is a
            collective) with ``write=is_chief()``.
        custom_ops: ``False`` (default) traces the memory's selection with stock TensorFlow
            ops only, which stock ``tensorflow_model_server`` can load. ``True`` keeps the
            C++ selection kernel (``LmnTwoStageTopK``) in the graph: faster, but only for a
            TF-Serving built with that op (export/README.md).
        vocabulary: the raw value of every index, which ``serving_default`` maps raw
            features with (its tables are saved as assets); normally
            ``Vocabulary.from_log(log).restricted(train_arrays)``, so ids first seen after
            training get the unknown row 0. Default ``Vocabulary.identity(model.vocab)``
            (the raw id of index k is ``"k"``), for data without raw ids.

    Returns:
        The path of the new version directory (``None`` when ``write`` is ``False``).

    Raises:
        ValueError: bad ``values_dtype``/``model_name``/``version``, an unbuilt model, a
            vocabulary whose sizes differ from the model's, or warm-up features the model
            cannot run (e.g. ids beyond its vocabularies).
        FileExistsError: if the version already exists.

    Example:
    >>> from lmn_tf.models.base import Base
    >>> from lmn_tf.data.random_batches import random_features
    >>> from lmn_tf.data.schema import Vocab
    >>> import tempfile
    >>> v = Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    >>> model = Base(v, embedding_dim=4); _ = model(random_features(v, 2))
    >>> export_saved_model(model, tempfile.mkdtemp(), "base").rsplit("/", 2)[1:]
    ['base', '1']
    """
    if values_dtype not in VALUES_DTYPES:
        raise ValueError(f"values_dtype must be one of {sorted(VALUES_DTYPES)}. "
                         f"Received: values_dtype={values_dtype!r}")
    if not model_name or os.sep in model_name or model_name.startswith("."):
        raise ValueError(f"model_name must be a plain directory name. Received: {model_name!r}")
    if not model.built or not model.variables:
        raise ValueError("the model has no variables yet: build it (call it on a batch) and "
                         "restore its checkpoint before exporting")
    vocab = getattr(model, "vocab", None)
    if vocabulary is None:
        if vocab is None:
            raise ValueError("a model without a `vocab` attribute needs `vocabulary=`")
        vocabulary = Vocabulary.identity(vocab)
    if vocab is not None:
        vocabulary.check(vocab)
    model_dir = os.path.join(base_path, model_name)
    if version is not None and os.path.exists(os.path.join(model_dir, str(version))):
        raise FileExistsError(f"version {version} already exists in {model_dir}")
    with serving_stores(model, VALUES_DTYPES[values_dtype]) as stores:
        if not write:
            return None
        if custom_ops:
            fn = serving_function(model)
        else:
            with stock_selection():
                fn = serving_function(model)
    variables = _read_variables(fn, [*model.variables, *(s.table for s in stores)])
    warmup = example_features() if warmup is None else warmup
    with tempfile.TemporaryDirectory() as tables:  # the lookup files, until saved as assets
        raw_inputs = RawInputs(vocabulary, tables)
        raw_fn = raw_serving_function(raw_inputs, fn)
        try:  # TF-Serving refuses to load a version whose warm-up requests fail
            raw_warmup = vocabulary.to_raw(warmup)
            fn({k: tf.constant(warmup[k], dtype) for k, (dtype, _) in schema.FEATURES.items()})
            raw_fn({k: tf.constant(v) for k, v in raw_warmup.items()})
        except (KeyError, ValueError, tf.errors.InvalidArgumentError) as e:
            raise ValueError(f"the warm-up features do not run on this model: {e}") from None
        root = tf.Module()
        root.serving_variables = variables  # the only objects saved besides the signatures
        root.raw_inputs = raw_inputs  # its lookup tables and their asset files
        version = next_version(model_dir) if version is None else version
        with atomic_version_dir(model_dir, version) as tmp:
            tf.saved_model.save(root, tmp, signatures={SIGNATURE_KEY: raw_fn, INDICES_KEY: fn})
            write_warmup(tmp, raw_warmup, warmup, model_name)
    return os.path.join(model_dir, str(version))
