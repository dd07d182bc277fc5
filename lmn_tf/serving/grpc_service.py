"""The gRPC front end: ``PredictionService`` and ``ModelService`` on the official stubs.

Predict, GetModelMetadata and GetModelStatus are served; Classify, Regress,
MultiInference and HandleReloadConfigRequest answer UNIMPLEMENTED (the generated base
classes' default). Failures carry TF-Serving's status codes and messages.
"""

from __future__ import annotations

import functools
import logging
import math
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from lmn_tf.serving import protocol
from lmn_tf.serving.errors import ServingError, invalid_argument
from lmn_tf.serving.manager import ServerCore

log = logging.getLogger("lmn_tf.serving")


def _rpc(method):
    """Turns ServingError into the call's status; anything else into INTERNAL."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as e:
            context.abort(e.code, e.message)
        except Exception as e:
            log.exception("gRPC %s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"Internal error: {e}")

    return wrapper


# Tensor::AsProtoField: which repeated field holds each dtype's values.
_FIELD = {
    tf.float32: "float_val",
    tf.float64: "double_val",
    tf.int32: "int_val",
    tf.int16: "int_val",
    tf.int8: "int_val",
    tf.uint8: "int_val",
    tf.uint16: "int_val",
    tf.int64: "int64_val",
    tf.bool: "bool_val",
    tf.uint32: "uint32_val",
    tf.uint64: "uint64_val",
}


def as_proto_field(value: np.ndarray) -> tensor_pb2.TensorProto:
    """A TensorProto with typed ``*_val`` fields, as TF-Serving answers Predict.

    ``tf.make_tensor_proto`` packs numbers into ``tensor_content``; ``tf.make_ndarray`` reads
    both, but clients that read ``outputs["x"].float_val`` directly need the typed field.
    """
    proto = tf.make_tensor_proto(value)
    dtype = tf.dtypes.as_dtype(proto.dtype)
    if proto.tensor_content and dtype in _FIELD:
        proto.tensor_content = b""
        getattr(proto, _FIELD[dtype]).extend(np.asarray(value).ravel().tolist())
    elif proto.tensor_content and dtype == tf.float16:
        proto.tensor_content = b""
        proto.half_val.extend(np.asarray(value, np.float16).ravel().view(np.uint16).tolist())
    return proto


def to_ndarray(proto: tensor_pb2.TensorProto, max_bytes: int) -> np.ndarray:
    """``tf.make_ndarray`` for an untrusted request tensor (Tensor::FromProto's checks).

    A TensorProto repeats its last value up to the shape's size, so a few bytes can ask for
    terabytes: tensors whose decoded size exceeds ``max_bytes`` (the message cap) are refused
    with RESOURCE_EXHAUSTED before anything is allocated. Unknown, reference, resource and
    variant dtypes, unknown ranks and negative dimensions are INVALID_ARGUMENT.
    """
    try:
        dtype = tf.dtypes.as_dtype(proto.dtype)
    except TypeError:
        raise invalid_argument(f"Cannot parse input tensor: unknown dtype {proto.dtype}") from None
    if dtype._is_ref_dtype or dtype in (tf.resource, tf.variant):
        raise invalid_argument(f"Cannot parse input tensor: dtype {dtype.name} is not a value")
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument("Cannot parse input tensor: shape has unknown rank")
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise invalid_argument(f"Cannot parse input tensor: negative dimension in {dims}")
    size = math.prod(dims) * max(dtype.size, 8 if dtype == tf.string else 1)
    if size > max_bytes:
        raise ServingError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"Input tensor of shape {dims} ({size} bytes) exceeds the limit of {max_bytes} bytes",
        )
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError, KeyError) as e:
        raise invalid_argument(f"Cannot parse input tensor: {e}") from None


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServerCore, max_tensor_bytes: int = 64 << 20):
        self.core, self.max_tensor_bytes = core, max_tensor_bytes

    @_rpc
    def Predict(self, request, context):  # noqa: N802 - the generated servicer's name
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        inputs = {k: to_ndarray(v, self.max_tensor_bytes) for k, v in request.inputs.items()}
        spec, outputs = protocol.predict(
            self.core, request.model_spec, inputs, list(request.output_filter)
        )
        response = predict_pb2.PredictResponse(model_spec=spec)
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(as_proto_field(value))
        return response

    @_rpc
    def GetModelMetadata(self, request, context):  # noqa: N802
        return protocol.model_metadata(self.core, request)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServerCore):
        self.core = core

    @_rpc
    def GetModelStatus(self, request, context):  # noqa: N802
        return protocol.model_status(self.core, request)


def make_server(
    core: ServerCore, address: str, max_message_bytes: int, max_workers: int = 16
) -> tuple[grpc.Server, int]:
    """A started-ready (not started) gRPC server and the port it bound (``HOST:0`` picks one)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(core, max_message_bytes), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind gRPC to {address}")
    return server, port
