"""The gRPC front end: ``PredictionService`` and ``ModelService`` on the official stubs.

Predict, GetModelMetadata and GetModelStatus are served on ``grpc.aio``: the handlers run
on the event loop the REST front end shares and hand the tensor decoding, the model run and
the encoding to the dispatcher's workers, so a burst of calls queues nowhere unbounded and
beyond a model's in-flight limit answers UNAVAILABLE at once. Classify, Regress,
MultiInference and HandleReloadConfigRequest answer UNIMPLEMENTED (the generated base
classes' default). Failures carry TF-Serving's status codes and messages.
"""

from __future__ import annotations

import functools
import logging
import math

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
from lmn_tf.serving.dispatch import Decoded, Dispatcher
from lmn_tf.serving.errors import ServingError, invalid_argument

log = logging.getLogger("lmn_tf.serving")


def _rpc(method):
    """Turns ServingError into the call's status; anything else into INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except ServingError as e:
            await context.abort(e.code, e.message)
        except Exception as e:
            if isinstance(e, grpc.aio.AbortError):  # context.abort's own exception
                raise
            log.exception("gRPC %s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"Internal error: {e}")

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
    """Predict and GetModelMetadata; the work runs on the dispatcher's workers."""

    def __init__(self, dispatcher: Dispatcher, max_tensor_bytes: int = 64 << 20):
        self.dispatcher, self.max_tensor_bytes = dispatcher, max_tensor_bytes

    @_rpc
    async def Predict(self, request, context):  # noqa: N802 - the generated servicer's name
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")

        def decode(_servable) -> Decoded:
            inputs = {k: to_ndarray(v, self.max_tensor_bytes) for k, v in request.inputs.items()}
            return Decoded(request.model_spec.signature_name, inputs, list(request.output_filter))

        def encode(spec, outputs, _context) -> predict_pb2.PredictResponse:
            response = predict_pb2.PredictResponse(model_spec=spec)
            for name, value in outputs.items():
                response.outputs[name].CopyFrom(as_proto_field(value))
            return response

        with self.dispatcher.admission.admit(request.model_spec.name):
            return await self.dispatcher.predict(request.model_spec, decode, encode,
                                                 request.ByteSize())

    @_rpc
    async def GetModelMetadata(self, request, context):  # noqa: N802
        with self.dispatcher.admission.admit(request.model_spec.name):
            core = self.dispatcher.core
            return await self.dispatcher.call(protocol.model_metadata, core, request)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, dispatcher: Dispatcher):
        self.dispatcher = dispatcher

    @_rpc
    async def GetModelStatus(self, request, context):  # noqa: N802
        with self.dispatcher.admission.admit(request.model_spec.name):
            return await self.dispatcher.call(protocol.model_status, self.dispatcher.core, request)


def make_server(
    dispatcher: Dispatcher, address: str, max_message_bytes: int
) -> tuple[grpc.aio.Server, int]:
    """A not yet started ``grpc.aio`` server and the port it bound (``HOST:0`` picks one).

    Call it on the event loop that will serve it. Classify, Regress, MultiInference and
    HandleReloadConfigRequest are the generated base classes' synchronous UNIMPLEMENTED
    defaults; the worker pool runs them (``migration_thread_pool``).
    """
    server = grpc.aio.server(
        migration_thread_pool=dispatcher.executor,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(dispatcher, max_message_bytes), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(dispatcher), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind gRPC to {address}")
    return server, port
