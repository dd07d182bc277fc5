"""TF-Serving warm-up: ``assets.extra/tf_serving_warmup_requests``.

TF-Serving replays these ``PredictionLog`` records when it loads a version, before the
version takes traffic, so the first real request does not pay for graph optimisation and
memory allocation. Requests are single rows (the common online case) plus one full batch for
``serving_default`` (raw features), and one batch for ``serving_indices`` (index features).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from lmn_tf.data import schema
from lmn_tf.data.raw import RAW_FEATURES
from lmn_tf.export.signature import INDICES_KEY, SIGNATURE_KEY

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000  # TF-Serving's limit on warm-up records
SPECS = {SIGNATURE_KEY: RAW_FEATURES, INDICES_KEY: schema.FEATURES}  # signature -> inputs


def predict_request(features: Mapping[str, np.ndarray], model_name: str,
                    signature_name: str = SIGNATURE_KEY) -> predict_pb2.PredictRequest:
    """A ``PredictRequest`` for ``signature_name`` (raw or index features) of ``model_name``.

    Raises:
        KeyError: ``signature_name`` is not one of the export's (`SPECS`).
    """
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
    for name, (dtype, _) in SPECS[signature_name].items():
        value = np.asarray(features[name], object if dtype == "string" else dtype)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def write_warmup(saved_model_dir: str, raw: Mapping[str, np.ndarray],
                 indices: Mapping[str, np.ndarray], model_name: str,
                 single_rows: int = 8) -> str:
    """Writes the warm-up file; returns its path.

    Args:
        saved_model_dir: the SavedModel directory.
        raw: ``RAW_FEATURES`` arrays: ``single_rows`` one-row requests and one batch (up to
            64 rows) for ``serving_default``.
        indices: ``schema.FEATURES`` arrays: one batch for ``serving_indices``.
        model_name: written into every request's model spec.
        single_rows: how many one-row requests.

    Raises:
        ValueError: if either misses a feature or has no rows.
    """
    for name, features, spec in (("raw", raw, RAW_FEATURES), ("indices", indices,
                                                              schema.FEATURES)):
        missing = sorted(set(spec) - set(features))
        if missing:
            raise ValueError(f"{name} warm-up features miss {missing}. Received: "
                             f"{sorted(features)}")
        if len(features["item_id"]) == 0:
            raise ValueError(f"{name} warm-up features have no rows. Received: 0 rows")
    n = len(raw["item_id"])
    rows = [slice(i, i + 1) for i in range(min(n, single_rows, MAX_RECORDS - 2))]
    requests = [predict_request({k: raw[k][r] for k in RAW_FEATURES}, model_name)
                for r in [*rows, slice(0, 64)]]
    requests.append(predict_request({k: indices[k][:64] for k in schema.FEATURES}, model_name,
                                    INDICES_KEY))
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup(path: str) -> list[prediction_log_pb2.PredictionLog]:
    """Parses a warm-up file back into ``PredictionLog`` messages (for checks and tests)."""
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(path)]
