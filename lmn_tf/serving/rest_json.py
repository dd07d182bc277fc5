"""The REST predict body: TF-Serving's JSON tensor encoding (``util/json_tensor.cc``).

Requests come in two formats. Row: ``{"instances": [...]}``, one element per example, each
an object of named inputs (or a bare value when the signature has a single input); the
answer is ``{"predictions": [...]}``, one element per example, an object of named outputs
or, for a single-output signature, the bare value. Columnar: ``{"inputs": {...}}`` (or a
bare value for a single input), answered by ``{"outputs": {...}}`` (or a bare value).
Values are converted to the signature's dtypes with TF-Serving's rules: a JSON float never
becomes an integer, bools are not numbers, ``{"b64": ...}`` carries bytes, and string
outputs whose alias ends in ``_bytes`` are written as ``{"b64": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from lmn_tf.serving.errors import invalid_argument
from lmn_tf.serving.json_limits import (
    MAX_DEPTH,
    depth_over,
    has_lone_surrogate,
    max_depth_bound,
    may_hold_surrogate,
)

ROW, COLUMNAR = "row", "columnar"
_MAX_ECHO = 200  # characters of a JSON value quoted in an error message


def parse_body(body: bytes) -> dict:
    """The request object, with TF-Serving's parse errors.

    Raises:
        ServingError: INVALID_ARGUMENT for invalid JSON (including lone UTF-16 surrogate
            escapes, which rapidjson refuses too), nesting deeper than ``MAX_DEPTH``, or a
            top level that is not an object.
    """
    if not body.strip():
        raise invalid_argument("JSON Parse error: The document is empty")
    too_deep = invalid_argument(f"JSON Parse error: nesting deeper than {MAX_DEPTH} levels")
    if max_depth_bound(body) > MAX_DEPTH and depth_over(body):
        raise too_deep
    try:
        doc = json.loads(body)
    except UnicodeDecodeError as e:
        raise invalid_argument(
            f"JSON Parse error: Invalid encoding in string. at offset: {e.start}"
        ) from None
    except json.JSONDecodeError as e:
        raise invalid_argument(f"JSON Parse error: {e.msg} at offset: {e.pos}") from None
    except RecursionError:  # unreachable after the depth check; kept as the last guard
        raise too_deep from None
    if may_hold_surrogate(body) and has_lone_surrogate(doc):
        # json accepts "\ud800" alone; it cannot become UTF-8 (a proto string, a tensor)
        raise invalid_argument("JSON Parse error: The surrogate pair in string is invalid.")
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {_echo(doc)} Is not object")
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument(
            f"JSON Value: {_echo(doc)} not formatted correctly. 'signature_name' key must be a "
            "string value."
        )
    return doc


def request_arrays(doc: dict, tensor_infos: Mapping[str, Any]) -> tuple[str, dict[str, np.ndarray]]:
    """(format, inputs) from a parsed body and the signature's input TensorInfos."""
    dtypes = _dtypes(tuple((k, v.dtype) for k, v in tensor_infos.items()))
    if not dtypes:
        raise invalid_argument("Failed to get input map for signature")
    has_rows, has_columns = "instances" in doc, "inputs" in doc
    if has_rows and has_columns:
        raise invalid_argument(
            f"JSON Value: {_echo(doc)} Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist "
        )
    if has_rows:
        return ROW, _rows(doc, dtypes)
    if has_columns:
        return COLUMNAR, _columns(doc["inputs"], dtypes)
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _rows(doc: dict, dtypes: dict[str, tf.DType]) -> dict[str, np.ndarray]:
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise invalid_argument(
            f"JSON Value: {_echo(doc)} Excepting 'instances' to be an list/array"
        )
    if not instances:
        raise invalid_argument(f"JSON Value: {_echo(doc)} No values in 'instances' array")
    named = _is_object(instances[0])
    if not named and len(dtypes) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    if not named:
        for i, item in enumerate(instances):
            if _is_object(item):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {i} of input list"
                )
        (name,) = dtypes
        return {name: _to_array(instances, dtypes[name], f"'instances' of input {name}")}
    columns: dict[str, list] = {k: [] for k in dtypes}
    for i, item in enumerate(instances):
        if not _is_object(item):
            raise invalid_argument(f"Expecting object but got list at item {i} of input list")
        if set(item) != set(dtypes):
            raise invalid_argument(
                f"Failed to process element: {i} of 'instances' list. JSON object: {_echo(item)} "
                f"keys must be equal to: {','.join(sorted(dtypes))}"
            )
        for k in dtypes:
            columns[k].append(item[k])
    return {k: _to_array(v, dtypes[k], f"'instances' key: {k}") for k, v in columns.items()}


def _columns(value: Any, dtypes: dict[str, tf.DType]) -> dict[str, np.ndarray]:
    if not _is_object(value):
        if len(dtypes) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        (name,) = dtypes
        return {name: _to_array(value, dtypes[name], f"input {name}")}
    arrays = {}
    for name, dtype in dtypes.items():
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = _to_array(value[name], dtype, f"input {name}")
    return arrays


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _type_error(value: Any, dtype: tf.DType):
    return invalid_argument(
        f"JSON Value: {_echo(value)} Type: {_json_type(value)} is not of expected type: "
        f"{dtype.name}"
    )


def _accepts(value: Any, dtype: tf.DType) -> bool:
    if dtype == tf.bool:
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if dtype.is_floating:
        return True
    if not isinstance(value, int):  # a JSON decimal never becomes an integer
        return False
    return dtype.min <= value <= dtype.max if dtype.is_integer else False


@functools.lru_cache(maxsize=64)
def _dtypes(enums: tuple[tuple[str, int], ...]) -> dict[str, tf.DType]:
    # Once per signature, not per request: tf.DType's properties are Python code.
    return {k: tf.dtypes.as_dtype(e) for k, e in enums}


@functools.lru_cache(maxsize=64)
def _kind(dtype: tf.DType) -> tuple[str, Any, Any, np.dtype]:
    """(accepted numpy kinds, min, max, numpy dtype) of a non-string signature dtype."""
    if dtype == tf.bool:
        return "b", None, None, dtype.as_numpy_dtype
    if dtype.is_floating:
        return "iuf", None, None, dtype.as_numpy_dtype
    if dtype.is_integer:
        return "iu", dtype.min, dtype.max, dtype.as_numpy_dtype
    return "", None, None, dtype.as_numpy_dtype


def _to_array(value: Any, dtype: tf.DType, where: str) -> np.ndarray:
    if dtype == tf.string:
        return _to_string_array(value, where)
    try:
        array = np.array(value)
    except (ValueError, OverflowError):  # ragged lists
        raise invalid_argument(
            f"Failed to process {where}: lists of unequal sizes; expected a dense tensor"
        ) from None
    kinds, low, high, np_dtype = _kind(dtype)
    ok = array.size == 0 or array.dtype.kind in kinds
    if ok and low is not None and array.size:
        ok = low <= array.min() and array.max() <= high
    if not ok:
        bad = next((v for v in _leaves(value) if not _accepts(v, dtype)), value)
        if isinstance(bad, int | float) and not isinstance(bad, bool) and dtype.is_floating:
            raise invalid_argument(
                f"Cannot convert JSON value: {_echo(bad)} to {dtype.name} without loss of "
                "precision."
            )
        raise _type_error(bad, dtype)
    return array.astype(np_dtype)


def _to_string_array(value: Any, where: str) -> np.ndarray:
    def convert(v: Any) -> Any:
        if isinstance(v, list):
            return [convert(x) for x in v]
        if isinstance(v, str):
            return v.encode()
        if _is_b64(v):
            try:
                return base64.b64decode(v["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise invalid_argument("Unable to base64 decode") from None
        raise _type_error(v, tf.string)

    converted = convert(value)
    shape = []
    probe = converted
    while isinstance(probe, list):  # GetDenseTensorShape: follow the first elements
        shape.append(len(probe))
        probe = probe[0] if probe else None
    array = np.empty(shape, dtype=object)
    try:
        array[...] = converted
    except ValueError:
        raise invalid_argument(
            f"Failed to process {where}: lists of unequal sizes; expected a dense tensor"
        ) from None
    return array


def response_json(outputs: Mapping[str, np.ndarray], fmt: str) -> dict:
    """``{"predictions": ...}`` (row) or ``{"outputs": ...}`` (columnar)."""
    names = sorted(outputs)
    if not names:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    if fmt == COLUMNAR:
        values = {k: _json_value(outputs[k], k) for k in names}
        return {"outputs": values if len(names) > 1 else values[names[0]]}
    batch = None
    for k in names:
        if outputs[k].ndim == 0:
            raise invalid_argument(f"Tensor name: {k} has no shape information ")
        if batch is not None and outputs[k].shape[0] != batch:
            raise invalid_argument(
                f"Tensor name: {k} has inconsistent batch size: {outputs[k].shape[0]} "
                f"expecting: {batch}"
            )
        batch = outputs[k].shape[0]
    columns = {k: _json_value(outputs[k], k) for k in names}
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    return {"predictions": [{k: columns[k][i] for k in names} for i in range(batch)]}


def _json_value(array: np.ndarray, name: str) -> Any:
    kind = array.dtype.kind
    if kind == "f" and array.dtype.itemsize < 8:
        # WriteDecimal: the shortest text that round-trips the float32 (0.1, not 0.100000001).
        shortest = [float(str(x)) for x in array.ravel()]
        return np.array(shortest, dtype=np.float64).reshape(array.shape).tolist()
    if kind in "OSU":
        as_bytes = name.endswith("_bytes")

        def convert(v: Any) -> Any:
            if isinstance(v, list):
                return [convert(x) for x in v]
            v = v.encode() if isinstance(v, str) else bytes(v)
            return {"b64": base64.b64encode(v).decode()} if as_bytes else v.decode(errors="replace")

        return convert(array.tolist())
    return array.tolist()


def dumps(obj: Any) -> bytes:
    # NaN / Infinity / -Infinity are written as TF-Serving writes them.
    return json.dumps(obj, allow_nan=True, separators=(",", ":")).encode()


def _echo(value: Any) -> str:
    text = json.dumps(value, allow_nan=True)
    return text if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + "..."
