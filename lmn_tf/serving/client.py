"""Clients for any TF-Serving endpoint (this server or ``tensorflow_model_server``).

``predict_rest`` and ``predict_grpc`` take a batch of named features and return the named
outputs as numpy arrays, e.g. ``{"probability": (B,), "logit": (B,)}``. REST uses the
columnar format; since a single-output signature answers with a bare value and JSON has no
dtypes, the signature's metadata is fetched once per (url, model, version, signature) to
name and type the outputs.
"""

from __future__ import annotations

import base64
import functools
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from lmn_tf.serving.errors import ServingError

DEFAULT_SIGNATURE = "serving_default"


# -- REST ---------------------------------------------------------------------------------


def _model_url(url: str, model_name: str, version: int | None, label: str | None) -> str:
    path = f"{url.rstrip('/')}/v1/models/{urllib.parse.quote(model_name, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label:
        path += f"/labels/{urllib.parse.quote(label, safe='')}"
    return path


def _http(url: str, body: Any = None, timeout: float = 30.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            message = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            message = text or e.reason
        raise ServingError.from_http(e.code, str(message)) from None


def model_status_rest(
    url: str,
    model_name: str,
    version: int | None = None,
    label: str | None = None,
    timeout: float = 30.0,
) -> dict:
    """``GET /v1/models/NAME[/versions/N|/labels/L]`` as parsed JSON."""
    return _http(_model_url(url, model_name, version, label), timeout=timeout)


def model_metadata_rest(
    url: str,
    model_name: str,
    version: int | None = None,
    label: str | None = None,
    timeout: float = 30.0,
) -> dict:
    """``GET /v1/models/NAME[...]/metadata`` as parsed JSON."""
    return _http(_model_url(url, model_name, version, label) + "/metadata", timeout=timeout)


@functools.lru_cache(maxsize=64)
def _rest_signature(
    url: str,
    model_name: str,
    version: int | None,
    label: str | None,
    signature_name: str,
    timeout: float,
) -> dict:
    meta = model_metadata_rest(url, model_name, version, label, timeout)
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    if signature_name not in sigs:
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f'Serving signature key "{signature_name}" not found.',
        )
    return sigs[signature_name]


def _json_tensor(name: str, value: np.ndarray) -> Any:
    if value.dtype.kind in "OSU":

        def convert(v):
            if isinstance(v, list):
                return [convert(x) for x in v]
            if name.endswith("_bytes") or (isinstance(v, bytes) and not v.isascii()):
                raw = v if isinstance(v, bytes) else str(v).encode()
                return {"b64": base64.b64encode(raw).decode()}
            return v.decode() if isinstance(v, bytes) else str(v)

        return convert(value.tolist())
    return value.tolist()


def predict_rest_body(
    features: Mapping[str, np.ndarray], signature_name: str = DEFAULT_SIGNATURE
) -> dict:
    """The JSON body ``predict_rest`` sends: TF-Serving's columnar ``inputs``, strings as
    text (base64 for non-ASCII bytes and ``*_bytes`` inputs). For callers that send one
    request many times (``json.dumps(body).encode()`` once)."""
    return {
        "signature_name": signature_name,
        "inputs": {k: _json_tensor(k, np.asarray(v)) for k, v in features.items()},
    }


def predict_rest(
    url: str,
    model_name: str,
    features: Mapping[str, np.ndarray],
    signature_name: str = DEFAULT_SIGNATURE,
    version: int | None = None,
    label: str | None = None,
    timeout: float = 30.0,
) -> dict[str, np.ndarray]:
    """Predict over REST (columnar format).

    Args:
        url: the REST root, e.g. ``http://127.0.0.1:8501``.
        model_name: the served model's name.
        features: input name -> array with the batch dimension first.
        signature_name: the SignatureDef key.
        version / label: a specific version or version label (default: the newest).
        timeout: seconds.

    Returns:
        Output name -> array, typed with the signature's dtypes.

    Raises:
        ServingError: with the status code mapped back from the HTTP status.

    Example:
        >>> predict_rest("http://127.0.0.1:8501", "lmn",
        ...              {"user_id": np.array([1], np.int32)})  # doctest: +SKIP
        {'logit': array([...], dtype=float32), 'probability': array([...], dtype=float32)}
    """
    body = predict_rest_body(features, signature_name)
    answer = _http(_model_url(url, model_name, version, label) + ":predict", body, timeout)
    outputs = answer["outputs"]
    sig = _rest_signature(url, model_name, version, label, signature_name, timeout)
    names = sorted(sig["outputs"])
    if len(names) == 1:
        outputs = {names[0]: outputs}
    result = {}
    for name, value in outputs.items():
        dtype = tf.dtypes.as_dtype(_DTYPES.get(sig["outputs"][name]["dtype"], "float32"))
        if dtype == tf.string:
            result[name] = np.array(_from_b64(value), dtype=object)
        else:
            result[name] = np.asarray(value, dtype=dtype.as_numpy_dtype)
    return result


def _from_b64(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_b64(v) for v in value]
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    return value.encode() if isinstance(value, str) else value


_DTYPES = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_INT16": "int16",
    "DT_INT8": "int8",
    "DT_UINT8": "uint8",
    "DT_BOOL": "bool",
    "DT_STRING": "string",
}


# -- gRPC ---------------------------------------------------------------------------------


def _call(target: str | grpc.Channel, fn):
    """Runs ``fn(channel)`` on a channel (or a fresh one for a ``HOST:PORT`` string)."""
    try:
        if isinstance(target, grpc.Channel):
            return fn(target)
        with grpc.insecure_channel(target) as channel:
            return fn(channel)
    except grpc.RpcError as e:
        raise ServingError(e.code(), e.details()) from None


def _spec(spec, model_name: str, version: int | None, label: str | None) -> None:
    spec.name = model_name
    if version is not None:
        spec.version.value = int(version)
    elif label:
        spec.version_label = label


def predict_grpc(
    target: str | grpc.Channel,
    model_name: str,
    features: Mapping[str, np.ndarray],
    signature_name: str = DEFAULT_SIGNATURE,
    version: int | None = None,
    label: str | None = None,
    timeout: float = 30.0,
) -> dict[str, np.ndarray]:
    """Predict over gRPC with ``PredictionService.Predict``.

    Args:
        target: ``HOST:PORT`` or an open ``grpc.Channel`` (reuse one for many calls).
        model_name / features / signature_name / version / label / timeout: as for
            ``predict_rest``; features keep their numpy dtypes, which must match the
            signature's.

    Returns:
        Output name -> array.

    Raises:
        ServingError: with the call's gRPC status code.
    """
    request = predict_pb2.PredictRequest()
    _spec(request.model_spec, model_name, version, label)
    request.model_spec.signature_name = signature_name
    for name, value in features.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))

    def call(channel):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=timeout)

    response = _call(target, call)
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def model_metadata_grpc(
    target: str | grpc.Channel,
    model_name: str,
    version: int | None = None,
    label: str | None = None,
    timeout: float = 30.0,
):
    """``GetModelMetadataResponse`` (signature_def)."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    _spec(request.model_spec, model_name, version, label)

    def call(channel):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.GetModelMetadata(request, timeout=timeout)

    return _call(target, call)


def signature_defs(metadata) -> dict:
    """SignatureDef by key, unpacked from a ``GetModelMetadataResponse``."""
    sigs = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(sigs)
    return dict(sigs.signature_def)


def model_status_grpc(
    target: str | grpc.Channel,
    model_name: str,
    version: int | None = None,
    label: str | None = None,
    timeout: float = 30.0,
):
    """``GetModelStatusResponse``."""
    request = get_model_status_pb2.GetModelStatusRequest()
    _spec(request.model_spec, model_name, version, label)

    def call(channel):
        return model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            request, timeout=timeout
        )

    return _call(target, call)
