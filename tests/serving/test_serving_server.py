"""The server as a real process on 127.0.0.1: real HTTP, real gRPC with the official stubs.

One server (two models, polling every 0.3 s) answers most tests; a second one, with
server-side batching, is shut down with SIGTERM while requests are in flight.
"""

import functools
import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from lmn_tf.serving import (
    ServerProcess,
    ServingError,
    model_status_grpc,
    predict_grpc,
    predict_rest,
    signature_defs,
)

L = 50  # history length, as in the exporter's signature
pytestmark = pytest.mark.timeout(180)


class Ranker(tf.Module):
    """A stand-in export: named int32/float inputs with a free batch dim, two outputs."""

    def __init__(self, scale: float):
        super().__init__()
        rng = np.random.default_rng(0)
        self.user = tf.Variable(rng.normal(size=(100, 8)).astype(np.float32))
        self.item = tf.Variable(rng.normal(size=(200, 8)).astype(np.float32))
        self.w = tf.Variable(rng.normal(size=(4,)).astype(np.float32))
        self.scale = scale

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int32, "user_id"),
            tf.TensorSpec([None, L], tf.int32, "hist_item_ids"),
            tf.TensorSpec([None, 4], tf.float32, "dense"),
        ]
    )
    def serve(self, user_id, hist_item_ids, dense):
        user = tf.gather(self.user, user_id)  # (B, 8)
        hist = tf.reduce_mean(tf.gather(self.item, hist_item_ids), axis=1)  # (B, 8)
        logit = self.scale * (tf.reduce_sum(user * hist, -1) + tf.linalg.matvec(dense, self.w))
        return {"probability": tf.sigmoid(logit), "logit": logit}

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, "dense")])
    def score(self, dense):
        return {"score": tf.linalg.matvec(dense, self.w)}


@functools.cache
def ranker(scale: float) -> Ranker:
    """One in-process model per scale (tf.function traces once per instance)."""
    return Ranker(scale)


def features(batch: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "user_id": rng.integers(0, 100, batch).astype(np.int32),
        "hist_item_ids": rng.integers(0, 200, (batch, L)).astype(np.int32),
        "dense": rng.normal(size=(batch, 4)).astype(np.float32),
    }


def expected(model: Ranker, f: dict) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.serve(**f).items()}


def export(model: Ranker, path: str) -> None:
    """SavedModel plus a one-record warm-up file, written beside and renamed into place."""
    tmp = f"{path}.tmp-{os.getpid()}"  # not an integer: the server must ignore it
    tf.saved_model.save(
        model, tmp, signatures={"serving_default": model.serve, "score": model.score}
    )
    request = predict_pb2.PredictRequest()
    for k, v in features(2, seed=9).items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    os.makedirs(os.path.join(tmp, "assets.extra"))
    record = prediction_log_pb2.PredictionLog(predict_log={"request": request})
    with tf.io.TFRecordWriter(os.path.join(tmp, "assets.extra", "tf_serving_warmup_requests")) as w:
        w.write(record.SerializeToString())
    os.rename(tmp, path)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    export(Ranker(1.0), str(root / "lmn" / "1"))
    shutil.copytree(root / "lmn" / "1", root / "rollover" / "1")
    (root / "rollover" / "junk").mkdir()  # not a version
    (root / "models.config").write_text(
        "model_config_list {\n"
        '  config { name: "lmn" base_path: "lmn" model_platform: "tensorflow"\n'
        '           version_labels { key: "stable" value: 1 } }\n'
        '  config { name: "rollover" base_path: "rollover" model_platform: "tensorflow" }\n'
        "}\n"
    )
    return root


@pytest.fixture(scope="module")
def server(base):
    s = ServerProcess(
        [
            "--model-config-file",
            str(base / "models.config"),
            "--poll-seconds",
            "0.3",
            "--max-request-bytes",
            str(1 << 20),
        ],
        str(base / "server.log"),
    )
    yield s
    assert s.stop() == 0, s.log()


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post(url: str, doc) -> tuple[int, dict]:
    return http("POST", url, json.dumps(doc).encode())


def test_predict_grpc_matches_in_process(server):
    f = features(7)
    want = expected(ranker(1.0), f)
    got = predict_grpc(server.grpc, "lmn", f)
    assert set(got) == {"probability", "logit"}
    for k in want:
        assert got[k].dtype == np.float32 and got[k].shape == (7,)
        np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=0)
    # the raw response names the version and signature that answered
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "lmn"
    request.output_filter.append("logit")
    for k, v in f.items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    with grpc.insecure_channel(server.grpc) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 30)
    assert (response.model_spec.name, response.model_spec.version.value) == ("lmn", 1)
    assert response.model_spec.signature_name == "serving_default"
    assert list(response.outputs) == ["logit"]
    # typed fields, as TF-Serving fills them: clients reading float_val directly work too
    np.testing.assert_allclose(response.outputs["logit"].float_val, want["logit"], atol=1e-5)


def test_predict_rest_both_formats_match_in_process(server):
    f = features(5, seed=2)
    want = expected(ranker(1.0), f)
    rows = [{k: v[i].tolist() for k, v in f.items()} for i in range(5)]
    status, body = post(f"{server.rest}/v1/models/lmn:predict", {"instances": rows})
    assert status == 200 and len(body["predictions"]) == 5
    for k in want:  # one object of named outputs per instance
        np.testing.assert_allclose([p[k] for p in body["predictions"]], want[k], atol=1e-5)
    columns = {k: v.tolist() for k, v in f.items()}
    status, body = post(f"{server.rest}/v1/models/lmn:predict", {"inputs": columns})
    assert status == 200 and set(body["outputs"]) == {"probability", "logit"}
    for k in want:
        np.testing.assert_allclose(body["outputs"][k], want[k], atol=1e-5)
    got = predict_rest(server.rest, "lmn", f)
    for k in want:
        assert got[k].dtype == np.float32
        np.testing.assert_allclose(got[k], want[k], atol=1e-5)


def test_single_output_signature_returns_bare_values(server):
    dense = features(3)["dense"]
    want = ranker(1.0).score(dense)["score"].numpy()
    url = f"{server.rest}/v1/models/lmn:predict"
    status, body = post(url, {"signature_name": "score", "instances": dense.tolist()})
    assert status == 200 and isinstance(body["predictions"][0], float)
    np.testing.assert_allclose(body["predictions"], want, atol=1e-5)
    status, body = post(url, {"signature_name": "score", "inputs": dense.tolist()})
    np.testing.assert_allclose(body["outputs"], want, atol=1e-5)
    got = predict_rest(server.rest, "lmn", {"dense": dense}, signature_name="score")
    np.testing.assert_allclose(got["score"], want, atol=1e-5)


def test_version_and_label_forms(server):
    f = features(2)
    want = expected(ranker(1.0), f)["logit"]
    columns = {"inputs": {k: v.tolist() for k, v in f.items()}}
    for path in ("versions/1", "labels/stable"):
        status, body = post(f"{server.rest}/v1/models/lmn/{path}:predict", columns)
        assert status == 200, body
        np.testing.assert_allclose(body["outputs"]["logit"], want, atol=1e-5)
    got = predict_grpc(server.grpc, "lmn", f, label="stable")
    np.testing.assert_allclose(got["logit"], want, atol=1e-5)
    assert http("GET", f"{server.rest}/v1/models/lmn/labels/stable")[0] == 200


def test_status_and_metadata_have_tf_serving_shapes(server):
    status, body = http("GET", f"{server.rest}/v1/models/lmn")
    assert status == 200
    assert body == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert http("GET", f"{server.rest}/v1/models/lmn/versions/1") == (200, body)
    grpc_status = model_status_grpc(server.grpc, "lmn")
    assert [(s.version, s.state) for s in grpc_status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]

    status, meta = http("GET", f"{server.rest}/v1/models/lmn/metadata")
    assert status == 200
    assert meta["model_spec"] == {"name": "lmn", "signature_name": "", "version": "1"}
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "score"} <= set(sigs)
    default = sigs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["user_id"] == {
        "dtype": "DT_INT32",
        "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
        "name": "serving_default_user_id:0",
    }
    assert default["inputs"]["hist_item_ids"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": str(L), "name": ""},
    ]
    assert default["inputs"]["dense"]["dtype"] == "DT_FLOAT"
    assert set(default["outputs"]) == {"probability", "logit"}

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "lmn"
    with grpc.insecure_channel(server.grpc) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
            request, 30
        )
    assert response.model_spec.version.value == 1
    grpc_sig = signature_defs(response)["serving_default"]
    assert grpc_sig.inputs["user_id"].name == "serving_default_user_id:0"


def test_warmup_file_was_replayed(server):
    assert "Number of warmup records read: 1." in server.log()


BAD_REST = [
    ("POST", "lmn:predict", b"{not json", 400, "JSON Parse error"),
    ("POST", "lmn:predict", b"", 400, "The document is empty"),
    ("POST", "lmn:predict", b'{"instances": [{"user_id": 1.5}]}', 400, "keys must be equal"),
    (
        "POST",
        "lmn:predict",
        json.dumps(
            {"inputs": {"user_id": [1.5], "hist_item_ids": [[0] * L], "dense": [[0, 0, 0, 0]]}}
        ).encode(),
        400,
        "is not of expected type: int32",
    ),
    (
        "POST",
        "lmn:predict",
        json.dumps(
            {"inputs": {"user_id": [1], "hist_item_ids": [[0] * 3], "dense": [[0, 0, 0, 0]]}}
        ).encode(),
        400,
        "Cannot feed value of shape",
    ),
    ("POST", "lmn:predict", b'{"inputs": {"user_id": [1]}}', 400, "Missing named input"),
    ("POST", "lmn:predict", b'{"signature_name": "nope", "inputs": [1]}', 400, '"nope" not found'),
    (
        "POST",
        "nope:predict",
        b'{"inputs": [1]}',
        404,
        "Servable not found for request: Latest(nope)",
    ),
    ("POST", "lmn/versions/9:predict", b'{"inputs": [1]}', 404, "Specific(lmn, 9)"),
    (
        "POST",
        "lmn/labels/canary:predict",
        b'{"inputs": [1]}',
        400,
        "Unrecognized servable version label",
    ),
    ("GET", "nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "lmn/versions/9", None, 404, "Could not find version 9 of model lmn"),
    ("GET", "nope/metadata", None, 404, "Servable not found"),
    ("PUT", "lmn", b"{}", 400, "Malformed request"),
    (
        "POST",
        "lmn:predict",
        b'{"signature_name": "__saved_model_init_op", "inputs": [1]}',
        400,
        "Failed to get input map",
    ),
    ("POST", "lmn:classify", b'{"examples": []}', 400, "Expected classification signature"),
    ("GET", "lmn/versions/99999999999999999999", None, 400, "Failed to convert version"),
]


@pytest.mark.parametrize("method, path, body, code, message", BAD_REST)
def test_bad_rest_requests_get_tf_serving_errors(server, method, path, body, code, message):
    status, answer = http(method, f"{server.rest}/v1/models/{path}", body)
    assert status == code and set(answer) == {"error"}
    assert message in answer["error"]
    assert http("GET", f"{server.rest}/v1/models/lmn")[0] == 200  # still up


def test_oversized_body_is_refused(server):
    status, answer = http("POST", f"{server.rest}/v1/models/lmn:predict", b" " * (2 << 20))
    assert status == 413 and "exceeds the limit" in answer["error"]
    assert http("GET", f"{server.rest}/v1/models/lmn")[0] == 200
    big = features(1 << 12)  # ~0.9 MB of ids + 64 KB of floats: above the 1 MiB cap
    big["hist_item_ids"] = np.zeros((1 << 12, L * 2), np.int32)
    with pytest.raises(ServingError) as e:
        predict_grpc(server.grpc, "lmn", big)
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_bad_grpc_requests_get_status_codes(server):
    f = features(2)
    cases = [
        (
            dict(features=dict(f, user_id=f["user_id"].astype(np.int64))),
            "INVALID_ARGUMENT",
            "int64",
        ),
        (dict(features={"dense": f["dense"]}), "INVALID_ARGUMENT", "Missing but required"),
        (dict(features=dict(f, dense=f["dense"][:, :3])), "INVALID_ARGUMENT", "shape"),
        (dict(features=f, model_name="nope"), "NOT_FOUND", "Latest(nope)"),
        (dict(features=f, version=9), "NOT_FOUND", "Specific(lmn, 9)"),
        (dict(features=f, signature_name="nope"), "FAILED_PRECONDITION", '"nope" not found'),
        (dict(features=f, label="canary"), "INVALID_ARGUMENT", "Unrecognized"),
        (
            dict(features={}, signature_name="__saved_model_init_op"),
            "INVALID_ARGUMENT",
            "method_name",
        ),
    ]
    with grpc.insecure_channel(server.grpc) as channel:
        for kwargs, code, message in cases:
            kwargs = {"model_name": "lmn", **kwargs}
            with pytest.raises(ServingError) as e:
                predict_grpc(channel, kwargs.pop("model_name"), kwargs.pop("features"), **kwargs)
            assert (e.value.code.name, message in e.value.message) == (code, True), e.value
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "nope"
        with pytest.raises(grpc.RpcError) as e:
            model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, 30)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert predict_grpc(channel, "lmn", f)["logit"].shape == (2,)  # still up


def _versions(server, name: str) -> dict[int, tuple[str, str]]:
    status = model_status_grpc(server.grpc, name)
    return {
        s.version: (
            get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
            s.status.error_message,
        )
        for s in status.model_version_status
    }


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_new_version_is_picked_up_under_load_without_failures(server, base):
    f = features(4, seed=3)
    by_version = {1: expected(ranker(1.0), f)["logit"], 2: expected(ranker(2.0), f)["logit"]}
    failures, seen, stop = [], [], threading.Event()

    def hammer(kind: str):
        channel = grpc.insecure_channel(server.grpc)
        while not stop.is_set():
            try:
                if kind == "grpc":
                    logit = predict_grpc(channel, "rollover", f)["logit"]
                else:
                    logit = predict_rest(server.rest, "rollover", f)["logit"]
                match = [v for v, want in by_version.items() if np.allclose(logit, want, atol=1e-5)]
                assert len(match) == 1, logit
                seen.append(match[0])
            except Exception as e:  # any failure counts
                failures.append(repr(e))
        channel.close()

    threads = [threading.Thread(target=hammer, args=(k,)) for k in ("grpc", "rest", "grpc")]
    for t in threads:
        t.start()
    try:
        _wait(lambda: len(seen) > 10)
        export(Ranker(2.0), str(base / "rollover" / "2"))  # temp dir, then an atomic rename
        _wait(lambda: _versions(server, "rollover").get(1, ("",))[0] == "END")
        n = len(seen)
        _wait(lambda: len(seen) > n + 10)
        # a broken version is refused; version 2 keeps serving
        broken = base / "rollover" / "3.tmp-x"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        os.rename(broken, base / "rollover" / "3")
        _wait(lambda: "failed" in _versions(server, "rollover").get(3, ("", ""))[1])
        n = len(seen)
        _wait(lambda: len(seen) > n + 10)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert seen[0] == 1 and seen[-1] == 2
    assert seen.index(2) > 0 and 1 not in seen[seen.index(2) + 50 :]  # switched, and stayed
    states = _versions(server, "rollover")
    assert states[2] == ("AVAILABLE", "") and states[1][0] == "END" and states[3][0] == "END"
    assert set(states) == {1, 2, 3}  # junk/ and *.tmp-* are not versions
    assert predict_grpc(server.grpc, "rollover", f, version=2)["logit"].shape == (4,)


def test_batching_server_finishes_in_flight_requests_on_sigterm(base, tmp_path):
    s = ServerProcess(
        [
            "--model-base-path",
            str(base / "lmn"),
            "--model-name",
            "lmn",
            "--enable-batching",
            "--max-batch-size",
            "8",
            "--batch-timeout-micros",
            "3000000",
            "--poll-seconds",
            "0",
        ],
        str(tmp_path / "batching.log"),
    )
    try:
        f = features(3, seed=4)
        want = expected(ranker(1.0), f)["logit"]
        results, errors = {}, []

        def one(i: int):
            try:
                row = {k: v[i : i + 1] for k, v in f.items()}
                call = predict_grpc if i % 2 else predict_rest
                results[i] = call(s.grpc if i % 2 else s.rest, "lmn", row)["logit"][0]
            except Exception as e:
                errors.append(repr(e))

        # warm the REST client's metadata cache, so the three calls below are predicts only
        predict_rest(s.rest, "lmn", {k: v[:1] for k, v in f.items()})
        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(1.5)  # the three sit in the batch queue (3 s timeout) ...
        s.proc.send_signal(signal.SIGTERM)  # ... when the server is told to stop
        for t in threads:
            t.join()
        assert errors == []
        assert time.monotonic() - started > 2.0  # they really waited for the batch
        np.testing.assert_allclose([results[i] for i in range(3)], want, atol=1e-5)
        assert s.stop() == 0, s.log()
        assert "server stopped" in s.log()
    finally:
        s.stop()


@pytest.mark.parametrize("flag", ["--rest", "--grpc"])
def test_predict_command(server, tmp_path, capsys, flag):
    from lmn_tf.cli import main

    f = features(2, seed=5)
    request = tmp_path / "request.json"
    request.write_text(
        json.dumps({"instances": [{k: v[i].tolist() for k, v in f.items()} for i in range(2)]})
    )
    target = server.rest if flag == "--rest" else server.grpc
    assert main(["predict", flag, target, "--model-name", "lmn", "--input", str(request)]) == 0
    printed = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(printed["logit"], expected(ranker(1.0), f)["logit"], atol=1e-5)
    assert main(["predict", flag, target, "--model-name", "nope"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_server_process_reports_a_failed_start(tmp_path):
    with pytest.raises(RuntimeError, match=r"exit code 2\).*\n[\s\S]*--no-such-flag"):
        ServerProcess(["--no-such-flag"], tmp_path / "failed.log")
