"""In-process pieces of the server: config files, the REST JSON codec, the batcher."""

import base64
import os
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

from lmn_tf.serving import rest_json
from lmn_tf.serving.batching import Batcher
from lmn_tf.serving.config import (
    BatchingConfig,
    ModelConfig,
    load_batching_parameters,
    load_model_config_file,
)
from lmn_tf.serving.errors import ServingError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Info:  # the one TensorInfo field the codec reads
    def __init__(self, dtype):
        self.dtype = dtype.as_datatype_enum


def test_production_configs_parse():
    models = load_model_config_file(os.path.join(REPO, "serving", "models.config"))
    assert [(m.name, m.base_path, m.policy, m.num_versions) for m in models] == [
        ("lmn", "/models/lmn", "latest", 1),
        ("din", "/models/din", "latest", 1),
    ]
    batching = load_batching_parameters(os.path.join(REPO, "serving", "batching.config"))
    assert batching == BatchingConfig(256, 1000, 100, 2)


def test_version_policies():
    assert ModelConfig("m", "/b").select([1, 3, 2]) == {3}
    assert ModelConfig("m", "/b", num_versions=2).select([1, 3, 2]) == {2, 3}
    assert ModelConfig("m", "/b", policy="all").select([1, 3]) == {1, 3}
    assert ModelConfig("m", "/b", policy="specific", versions=(1, 7)).select([1, 3]) == {1}
    with pytest.raises(ValueError, match="policy"):
        ModelConfig("m", "/b", policy="newest")


def test_rest_row_and_columnar_requests():
    infos = {"user_id": _Info(tf.int32), "dense": _Info(tf.float32)}
    rows = {"instances": [{"user_id": 1, "dense": [1, 2.5]}, {"user_id": 2, "dense": [0, 1]}]}
    fmt, arrays = rest_json.request_arrays(rows, infos)
    assert fmt == rest_json.ROW
    assert arrays["user_id"].dtype == np.int32 and arrays["user_id"].tolist() == [1, 2]
    assert arrays["dense"].dtype == np.float32 and arrays["dense"].shape == (2, 2)
    fmt, arrays = rest_json.request_arrays({"inputs": {"user_id": [1], "dense": [[1, 2]]}}, infos)
    assert fmt == rest_json.COLUMNAR and arrays["dense"].shape == (1, 2)
    # a single input may be sent bare, in both formats
    fmt, arrays = rest_json.request_arrays({"instances": [[1, 2], [3, 4]]}, {"x": _Info(tf.int64)})
    assert arrays["x"].dtype == np.int64 and arrays["x"].shape == (2, 2)
    b64 = {"b64": base64.b64encode(b"\x00\xff").decode()}
    _, arrays = rest_json.request_arrays({"inputs": [b64, "a"]}, {"s": _Info(tf.string)})
    assert arrays["s"].tolist() == [b"\x00\xff", b"a"]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"instances": [{"user_id": 1.5, "dense": [1.0]}]}, "is not of expected type: int32"),
        ({"instances": [{"user_id": True, "dense": [1.0]}]}, "is not of expected type: int32"),
        ({"instances": [{"user_id": 1, "dense": ["a"]}]}, "is not of expected type: float"),
        ({"instances": [{"user_id": 1}]}, "keys must be equal to: dense,user_id"),
        ({"instances": [1, 2]}, "instances is a plain list"),
        ({"instances": []}, "No values in 'instances' array"),
        ({"instances": {"user_id": 1}}, "to be an list/array"),
        ({"inputs": {"user_id": [1]}}, "Missing named input: dense"),
        ({"inputs": {"user_id": [1, 2], "dense": [[1], [1, 2]]}}, "unequal sizes"),
        ({"inputs": {"user_id": [2**40], "dense": [[1]]}}, "is not of expected type: int32"),
        ({"inputs": {}, "instances": []}, "expecting only one of"),
        ({"signature_name": "x"}, "Missing 'inputs' or 'instances' key"),
    ],
)
def test_rest_request_errors(body, message):
    infos = {"user_id": _Info(tf.int32), "dense": _Info(tf.float32)}
    with pytest.raises(ServingError, match=message) as e:
        rest_json.request_arrays(body, infos)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.http_status == 400


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "The document is empty"),
        (b"{", "JSON Parse error"),
        (b"[1]", "Is not object"),
        (b'{"signature_name": 3}', "'signature_name' key must be a string value"),
    ],
)
def test_rest_parse_errors(body, message):
    with pytest.raises(ServingError, match=message):
        rest_json.parse_body(body)


def test_rest_responses():
    p = np.array([0.1, 0.25], np.float32)
    one = rest_json.response_json({"p": p}, rest_json.ROW)
    assert one == {"predictions": [0.1, 0.25]}  # shortest float32 text, a bare list
    two = rest_json.response_json({"p": p, "id_bytes": np.array([b"\x01", b"b"], object)}, "row")
    assert two["predictions"][0] == {"p": 0.1, "id_bytes": {"b64": "AQ=="}}
    assert rest_json.response_json({"p": p}, rest_json.COLUMNAR) == {"outputs": [0.1, 0.25]}
    both = rest_json.response_json({"p": p, "q": np.array([1, 2])}, rest_json.COLUMNAR)
    assert both == {"outputs": {"p": [0.1, 0.25], "q": [1, 2]}}
    with pytest.raises(ServingError, match="inconsistent batch size"):
        rest_json.response_json({"p": p, "q": np.array([1])}, rest_json.ROW)
    assert rest_json.dumps({"x": [float("nan")]}) == b'{"x":[NaN]}'


def test_batcher_merges_concurrent_requests_and_splits_results():
    calls = []

    def run(signature, inputs, output_filter):
        calls.append(inputs["x"].shape[0])
        return {"y": inputs["x"] * 2.0}

    batcher = Batcher(
        run,
        BatchingConfig(
            max_batch_size=8,
            batch_timeout_micros=200_000,
            num_batch_threads=1,
            allowed_batch_sizes=(4, 8),
        ),
    )
    results = {}

    def client(i):
        results[i] = batcher.submit("s", {"x": np.full((1 + i % 2, 3), i, np.float32)}, ())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.stop()
    for i in range(4):
        np.testing.assert_array_equal(results[i]["y"], np.full((1 + i % 2, 3), 2.0 * i))
    assert sum(calls) >= 6 and len(calls) < 4  # merged (and padded to an allowed size)
    assert all(c in (4, 8) for c in calls)
    small = Batcher(run, BatchingConfig(max_batch_size=2))
    with pytest.raises(ServingError, match="larger than maximum batch size"):
        small.submit("s", {"x": np.ones((3, 1))}, ())
    small.stop()


class _FakeServable:
    def __init__(self, name, version, path):
        if os.path.exists(os.path.join(path, "broken")):
            raise ValueError("cannot load")
        self.name, self.version, self.unloaded = name, version, False

    def acquire(self):
        pass

    def release(self):
        pass

    def unload(self):
        self.unloaded = True


def test_version_manager_policy_failures_and_ignored_dirs(tmp_path):
    from lmn_tf.serving.manager import ModelVersions

    versions = ModelVersions(ModelConfig("m", str(tmp_path / "m")), _FakeServable, 1)
    versions.poll()  # base path missing: nothing served, nothing raised
    with pytest.raises(ServingError, match=r"Latest\(m\)"):
        versions.acquire()
    for name in ("1", "junk", ".tmp-2-abc", "3.tmp"):
        (tmp_path / "m" / name).mkdir(parents=True)
    versions.poll()
    assert versions.acquire().version == 1
    (tmp_path / "m" / "2" / "broken").mkdir(parents=True)
    versions.poll()  # 2 fails: 1 keeps serving
    states = dict(versions.status())
    assert states[2].state == "END" and "cannot load" in states[2].error_message
    assert states[1].state == "AVAILABLE" and versions.acquire().version == 1
    versions.poll()  # the retry fails too; then 2 is given up and 1 is aspired again
    versions.poll()
    assert versions.acquire().version == 1 and sorted(dict(versions.status())) == [1, 2]
    (tmp_path / "m" / "2" / "broken").rmdir()  # fixed in place: not retried (retries spent)
    versions.poll()
    assert versions.acquire().version == 1
    (tmp_path / "m" / "3").mkdir()
    versions.poll()
    assert versions.acquire().version == 3
    assert [(v, s.state) for v, s in versions.status()] == [
        (3, "AVAILABLE"),
        (2, "END"),
        (1, "END"),
    ]
    with pytest.raises(ServingError, match=r"Specific\(m, 1\)"):
        versions.acquire(version=1)


def test_serving_imports_no_model_code():
    # serving/ depends on the SavedModel contract only (HOUSE.md): check in a fresh process
    code = (
        "import sys, lmn_tf.serving, lmn_tf.serving.command, lmn_tf.serving.predict_command\n"
        "banned = ('lmn_tf.models', 'lmn_tf.memory', 'lmn_tf.data', 'lmn_tf.export',"
        " 'lmn_tf.distributed', 'horovod', 'tensorflow_recommenders')\n"
        "bad = [m for m in sys.modules if m.startswith(banned)]\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_batch_queue_holds_max_enqueued_batches_then_refuses_at_once():
    release = threading.Event()

    def run(signature, inputs, output_filter):
        release.wait(30)  # the one batch thread is busy: the next tasks stay queued
        return {"y": inputs["x"]}

    batcher = Batcher(
        run,
        BatchingConfig(
            max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=2, num_batch_threads=1
        ),
    )
    try:
        row = {"x": np.ones((1, 3), np.float32)}
        running = batcher.submit_future("s", row, ())
        deadline = time.monotonic() + 10
        while batcher._queued_rows and time.monotonic() < deadline:  # taken by the thread
            time.sleep(0.01)
        # a running batch does not count; two batches of two rows fit, a fifth row does not
        queued = [batcher.submit_future("s", row, ()) for _ in range(4)]
        started = time.monotonic()
        with pytest.raises(ServingError, match="task was submitted is full") as e:
            batcher.submit_future("s", row, ())
        assert e.value.code == grpc.StatusCode.UNAVAILABLE and time.monotonic() - started < 1
        # another signature is another queue, but the bound is over all of them
        with pytest.raises(ServingError, match="is full"):
            batcher.submit_future("t", row, ())
    finally:
        release.set()
    assert [f.result(10)["y"].shape for f in [running, *queued]] == [(1, 3)] * 5
    batcher.submit("s", row, ())  # drained: room again
    batcher.stop()


def test_admission_bounds_each_model_and_forgets_idle_names():
    from lmn_tf.serving.admission import Admission

    admission = Admission(2)
    with admission.admit("a"), admission.admit("a"), admission.admit("b"):
        with (
            pytest.raises(ServingError, match="Too many requests in flight for model a") as e,
            admission.admit("a"),
        ):
            pass
        assert e.value.code == grpc.StatusCode.UNAVAILABLE and e.value.http_status == 503
        assert (admission.inflight("a"), admission.inflight("b")) == (2, 1)
    assert admission._inflight == {}  # client-chosen names leave nothing behind
    with Admission(0).admit("a"), Admission(0).admit("a"):
        pass  # no limit
