"""TF-Serving warm-up: ``assets.extra/tf_serving_warmup_requests``.

TF-Serving replays these ``PredictionLog`` records when it loads a version, before the
version takes traffic, so the first real request does not pay for graph optimisation and
memory allocation. Requests are single rows (the common online case) plus one full batch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from lmn_tf.data import schema
from lmn_tf.export.signature import SIGNATURE_KEY

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000  # TF-Serving's limit on warm-up records


def predict_request(features: Mapping[str, np.ndarray], model_name: str
                    ) -> predict_pb2.PredictRequest:
    """A ``PredictRequest`` for the ``serving_default`` signature of ``model_name``."""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE_KEY))
    for name, (dtype, _) in schema.FEATURES.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(features[name], dtype)))
    return request


def write_warmup(saved_model_dir: str, features: Mapping[str, np.ndarray], model_name: str,
                 single_rows: int = 8) -> str:
    """Writes ``single_rows`` one-row requests and one batch request; returns the file path.

    Raises:
        ValueError: if ``features`` misses a schema feature or has no rows.
    """
    missing = sorted(set(schema.FEATURES) - set(features))
    if missing:
        raise ValueError(f"warm-up features miss {missing}. Received: {sorted(features)}")
    n = len(features["item_id"])
    if n == 0:
        raise ValueError("warm-up features have no rows. Received: 0 rows")
    batch = min(n, 64)
    rows = [slice(i, i + 1) for i in range(min(n, single_rows, MAX_RECORDS - 1))]
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for rows_ in [*rows, slice(0, batch)]:
            request = predict_request({k: features[k][rows_] for k in schema.FEATURES},
                                      model_name)
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup(path: str) -> list[prediction_log_pb2.PredictionLog]:
    """Parses a warm-up file back into ``PredictionLog`` messages (for checks and tests)."""
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(path)]
