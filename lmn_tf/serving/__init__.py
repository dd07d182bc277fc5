"""A TF-Serving-protocol model server and clients for any SavedModel.

Depends on TensorFlow, gRPC and ``tensorflow-serving-api`` only, never on lmn_tf's model
code, so it serves the LMN export, the DIN baseline's, or anything else in the TF-Serving
layout ``BASE/NAME/VERSION/``. Start it with ``lmn-tf serve``; query it (or a real
``tensorflow_model_server``) with the clients below or ``lmn-tf predict``;
``ServerProcess`` runs ``lmn-tf serve`` as a child process (demo, benchmarks, tests).
"""

from lmn_tf.serving.client import (
    model_metadata_grpc,
    model_metadata_rest,
    model_status_grpc,
    model_status_rest,
    predict_grpc,
    predict_rest,
    predict_rest_body,
    signature_defs,
)
from lmn_tf.serving.errors import ServingError
from lmn_tf.serving.process import ServerProcess

__all__ = [
    "ServerProcess",
    "ServingError",
    "model_metadata_grpc",
    "model_metadata_rest",
    "model_status_grpc",
    "model_status_rest",
    "predict_grpc",
    "predict_rest",
    "predict_rest_body",
    "signature_defs",
]
