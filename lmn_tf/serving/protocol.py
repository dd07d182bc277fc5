"""TF-Serving's calls on a ServerCore, shared by the gRPC and REST front ends.

GetModelMetadata and GetModelStatus build the official response protos, which REST then
prints as JSON the way TF-Serving's ``http_rest_api_util.cc`` does. Predict itself is
``Dispatcher.predict`` (dispatch.py), each front end decoding its own wire format.
"""

from __future__ import annotations

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    status_pb2,
)

from lmn_tf.serving.errors import ServingError, invalid_argument
from lmn_tf.serving.manager import ServerCore
from lmn_tf.serving.servable import DEFAULT_SIGNATURE

SIGNATURE_DEF = "signature_def"
_STATE = get_model_status_pb2.ModelVersionStatus.State
_CODE = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type


def refuse_classify_regress(core: ServerCore, spec: model_pb2.ModelSpec, api: str) -> None:
    """Classify / Regress are not served: the error TF-Serving gives for them.

    On a signature of another method (the usual predict export) that is TF-Serving's own
    INVALID_ARGUMENT (classifier.cc / regressor.cc); on a real classify or regress signature
    this server has to answer UNIMPLEMENTED.
    """
    method = f"tensorflow/serving/{api}"
    with core.servable(spec.name, *spec_version(spec)) as servable:
        name = spec.signature_name or DEFAULT_SIGNATURE
        sig = servable.signature_defs.get(name)
        if sig is None:
            raise invalid_argument(f'No signature was found with name "{name}"')
        if sig.method_name != method:
            what = "classification" if api == "classify" else "regression"
            raise invalid_argument(
                f"Expected {what} signature method_name to be {method}. Was: {sig.method_name}"
            )
    raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{api} is not served here; use predict")


def model_metadata(
    core: ServerCore, request: get_model_metadata_pb2.GetModelMetadataRequest
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    if not request.metadata_field:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF:
            raise invalid_argument(f"Metadata field {field} is not supported")
    version, label = spec_version(request.model_spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    with core.servable(request.model_spec.name, version, label) as servable:
        sigs = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in servable.signature_defs.items():
            sigs.signature_def[key].CopyFrom(sig)
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
    response.metadata[SIGNATURE_DEF].Pack(sigs)
    return response


def model_status(
    core: ServerCore, request: get_model_status_pb2.GetModelStatusRequest
) -> get_model_status_pb2.GetModelStatusResponse:
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    version, label = spec_version(request.model_spec)
    if version is not None and label:
        raise invalid_argument(
            f"Both model version ({version}) and model version label ({label}) cannot be supplied."
        )
    model = core.model(request.model_spec.name, for_status=True)
    response = get_model_status_pb2.GetModelStatusResponse()
    for number, state in model.status(version, label):
        entry = response.model_version_status.add(version=number, state=_STATE.Value(state.state))
        entry.status.error_code = _CODE.values_by_name[state.error_code].number
        entry.status.error_message = state.error_message
    return response


def spec_version(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    """The spec's ``(version, label)``; None where it names none."""
    version = spec.version.value if spec.HasField("version") else None
    return version, spec.version_label or None


def to_json(message) -> dict:
    """JSON like TF-Serving's MessageToJsonString(always_print_primitive_fields)."""
    return json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )


def metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> dict:
    """http_rest_api_util.cc ToJsonString: the Any is unpacked, field names preserved."""
    sigs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF].Unpack(sigs)
    return {"model_spec": to_json(response.model_spec), "metadata": {SIGNATURE_DEF: to_json(sigs)}}
