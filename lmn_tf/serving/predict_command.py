"""Query a TF-Serving endpoint (lmn-tf serve or tensorflow_model_server) and print the outputs.

What is sent, one of:
- ``--user U --item M [M ...]``: a raw-feature request per candidate movie, computed from the
  dataset's raw event log (``--dataset``) by `lmn_tf.data.requests.request_features`, the
  function that reproduces training's features; the request sees the whole log, as a
  request made after its last event would. For exports of the raw ``serving_default``.
- ``--input FILE``: a TF-Serving request body ({"instances": [...]} or {"inputs": {...}}) or
  a plain {"feature": values} object;
- neither: one example of zeros (empty strings for string inputs) shaped from the
  signature (a smoke test).
Examples:

    lmn-tf predict --rest http://127.0.0.1:8501 --model-name lmn --dataset ml-1m \
        --user 1m_1 --item "Toy Story (1995)" "Heat (1995)"
    lmn-tf predict --rest http://127.0.0.1:8501 --model-name lmn --input request.json
    lmn-tf predict --grpc 127.0.0.1:8500 --model-name lmn
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import tensorflow as tf

from lmn_tf.serving import client
from lmn_tf.serving.errors import ServingError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--rest", metavar="URL", help="REST root, e.g. http://127.0.0.1:8501")
    target.add_argument("--grpc", metavar="HOST:PORT", help="gRPC address, e.g. 127.0.0.1:8500")
    parser.add_argument("--model-name", default="default")
    parser.add_argument("--signature-name", default=client.DEFAULT_SIGNATURE)
    version = parser.add_mutually_exclusive_group()
    version.add_argument("--model-version", type=int)
    version.add_argument("--version-label")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--input", metavar="JSON", help="request file (default: one zero example)")
    what.add_argument("--user", help="raw user id (e.g. 1m_1): score --item for this user")
    parser.add_argument("--item", nargs="+", metavar="MOVIE",
                        help="with --user: raw movie ids (e.g. 'Toy Story (1995)'), one row each")
    parser.add_argument("--dataset", choices=("ml-1m", "ml-100k"), default="ml-1m",
                        help="with --user: the raw log the features are computed from")
    parser.add_argument("--data-dir", help="with --user: the dataset's files instead of the "
                        "package (<dataset>.inter/.item/.user)")
    parser.add_argument("--history", choices=("rated", "positive"), default="rated",
                        help="with --user: the sequences' events, as the model was trained")
    parser.add_argument("--timeout", type=float, default=30.0)


def _signature(args: argparse.Namespace) -> dict:
    """The signature's inputs as {name: (dtype, shape)}, from the endpoint's metadata."""
    where = dict(version=args.model_version, label=args.version_label, timeout=args.timeout)
    if args.rest:
        meta = client.model_metadata_rest(args.rest, args.model_name, **where)
        sigs = meta["metadata"]["signature_def"]["signature_def"]
        sig = sigs.get(args.signature_name)
        inputs = (
            {}
            if sig is None
            else {
                k: (
                    client._DTYPES.get(v["dtype"], "float32"),
                    [int(d["size"]) for d in v["tensor_shape"].get("dim", [])],
                )
                for k, v in sig["inputs"].items()
            }
        )
    else:
        sig = client.signature_defs(
            client.model_metadata_grpc(args.grpc, args.model_name, **where)
        ).get(args.signature_name)
        inputs = (
            {}
            if sig is None
            else {
                k: (tf.dtypes.as_dtype(v.dtype).name, [d.size for d in v.tensor_shape.dim])
                for k, v in sig.inputs.items()
            }
        )
    if sig is None:
        raise ServingError.from_http(
            400, f'Serving signature key "{args.signature_name}" not found.'
        )
    return inputs


def _raw_request(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """One row per --item for --user, from the raw log (imported here: only this needs it)."""
    from lmn_tf.data.raw import read_log
    from lmn_tf.data.requests import request_features, stack

    log = read_log(args.dataset, args.data_dir)
    unknown = [m for m in args.item if m not in log.items]
    if args.user not in log.users or unknown:  # the profile and genres come from the log
        what = f"user {args.user!r}" if args.user not in log.users else f"movies {unknown}"
        raise ServingError.from_http(400, f"{what} not in the {args.dataset} data files")
    return stack([request_features(log.events, args.user, m, users=log.users,
                                   items=log.items, history=args.history) for m in args.item])


def _features(args: argparse.Namespace, inputs: dict) -> dict[str, np.ndarray]:
    if args.user is not None:
        return _raw_request(args)
    if args.input is None:
        # Zeros, and empty strings for string inputs (a raw id of "" is padding / unknown).
        return {
            k: np.full([1 if d < 0 else d for d in shape] or [1], "" if dtype == "string" else 0,
                       dtype=_np(dtype))
            for k, (dtype, shape) in inputs.items()
        }
    with open(args.input) as f:
        doc = json.load(f)
    if "instances" in doc:
        rows = doc["instances"]
        if rows and isinstance(rows[0], dict):
            doc = {k: [r[k] for r in rows] for k in rows[0]}
        else:
            doc = {next(iter(inputs)): rows}
    elif "inputs" in doc:
        doc = (
            doc["inputs"]
            if isinstance(doc["inputs"], dict)
            else {next(iter(inputs)): doc["inputs"]}
        )
    return {
        k: np.asarray(v, dtype=_np(inputs[k][0]) if k in inputs else None) for k, v in doc.items()
    }


def _np(dtype: str):
    return object if dtype == "string" else np.dtype(dtype)


def run(args: argparse.Namespace) -> int:
    if (args.user is None) != (args.item is None):
        print("error: --user and --item go together", file=sys.stderr)
        return 2
    try:
        features = _features(args, _signature(args))
        where = dict(
            signature_name=args.signature_name,
            version=args.model_version,
            label=args.version_label,
            timeout=args.timeout,
        )
        if args.rest:
            outputs = client.predict_rest(args.rest, args.model_name, features, **where)
        else:
            outputs = client.predict_grpc(args.grpc, args.model_name, features, **where)
    except ServingError as e:
        print(f"error ({e.code.name}): {e.message}", file=sys.stderr)
        return 1
    shown = {
        k: [x.decode(errors="replace") if isinstance(x, bytes) else x for x in v.ravel().tolist()]
        if v.dtype == object
        else v.tolist()
        for k, v in sorted(outputs.items())
    }
    print(json.dumps(shown, indent=1))
    return 0
