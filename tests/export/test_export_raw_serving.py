"""The raw-feature contract end to end: dataset-style string ids in, probabilities out.

A tiny LMN exported with a MovieLens-like vocabulary restricted to a "training period",
served by a real ``lmn-tf serve`` process; requests over REST (JSON) and gRPC (the official
``tensorflow-serving-api`` stubs) hold ids never seen in training and must be scored like
the in-process model scores the unknown row: 200, never a 4xx.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from lmn_tf.data import schema
from lmn_tf.data.random_batches import random_arrays
from lmn_tf.data.raw import RAW_FEATURES
from lmn_tf.data.vocabulary import Vocabulary
from lmn_tf.demo import wait_until_available
from lmn_tf.export import export_saved_model
from lmn_tf.export.raw_inputs import RawInputs
from lmn_tf.models import build_model
from lmn_tf.serving import ServerProcess, predict_grpc, predict_rest

pytestmark = pytest.mark.timeout(300)
VOCAB = schema.Vocab(30, 40, 3, 8, 22, 100, 19, 10)
TINY = dict(embedding_dim=4, hidden_units=(8,), attention_units=(8,), num_keys=8, top_k=4,
            value_dim=8)
FULL = Vocabulary(
    users=("", *(f"1m_{k}" for k in range(1, 30))),
    items=("", *(f"Movie {k} ({1950 + k})" for k in range(1, 40))),
    genders=("", "F", "M"),
    occupations=("", *(str(k) for k in range(21))),
    zips=("", *(f"{k:03d}" for k in range(1, 100))),
    genres=("", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
            "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
            "Romance", "Sci-Fi", "Thriller", "War", "Western"),
    decades=(0, *range(192, 201)))
# The training period: users 1-19, movies 1-29, decades up to the 1970s (index <= 6).
TRAIN = random_arrays(schema.Vocab(20, 30, 3, 8, 22, 100, 19, 7), 400, seed=4)
VOCABULARY = FULL.restricted(TRAIN)
UNSEEN = ["1m_25", "a user no file lists"], ["Movie 35 (1985)", "Brand New Movie (2031)"]


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    m = build_model("lmn", VOCAB, **TINY)
    m(random_arrays(VOCAB, 2))
    return m


@pytest.fixture(scope="module")
def raw_requests():
    """Eight rows: known ids, then unseen users, movies and history items mixed in."""
    x = random_arrays(VOCAB, 8, seed=5)
    raw = FULL.to_raw(x)  # every index spelled: those beyond TRAIN are unseen
    raw["user_id"][1], raw["user_id"][2] = UNSEEN[0]
    raw["item_id"][3], raw["item_id"][4] = UNSEEN[1]
    raw["hist_item_ids"][5, 0] = UNSEEN[1][1]
    raw["item_genres"][6, 0] = "Afrofuturism"  # a genre training never saw
    raw["user_zip"][7] = " 99999-1234 "  # unseen prefix, whitespace around it
    raw["item_year"][7] = 2031  # an unseen decade
    return raw


@pytest.fixture(scope="module")
def served(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    export_saved_model(model, str(root), "lmn", vocabulary=VOCABULARY,
                       warmup={k: v for k, v in TRAIN.items() if k in schema.FEATURES})
    server = ServerProcess(["--model-base-path", str(root / "lmn"), "--model-name", "lmn"],
                           str(root / "server.log"))
    wait_until_available(server.rest, "lmn")
    yield server
    assert server.stop() == 0, server.log()


def in_process(model, raw) -> np.ndarray:
    return tf.sigmoid(model.predict(VOCABULARY.to_indices(raw), verbose=0)[:, 0]).numpy()


def test_graph_mapping_equals_numpy_reference(raw_requests, tmp_path):
    got = RawInputs(VOCABULARY, str(tmp_path))({k: tf.constant(v) for k, v in
                                                 raw_requests.items()})
    want = VOCABULARY.to_indices(raw_requests)
    for name in schema.FEATURES:
        np.testing.assert_array_equal(got[name].numpy(), want[name], err_msg=name)
        assert got[name].dtype == tf.as_dtype(schema.FEATURES[name][0]), name
    assert want["user_id"][1] == want["user_id"][2] == 0  # unseen: the unknown row
    assert want["item_id"][3] == want["item_id"][4] == 0
    assert want["hist_item_ids"][5, 0] == want["hist_ratings"][5, 0] == 0  # a masked hole
    assert want["item_genres"][6, 0] == want["user_zip"][7] == want["item_year"][7] == 0
    assert (want["user_id"][[0, *range(3, 8)]] > 0).sum() >= 1  # known ids are kept


def test_restricted_vocabulary_blanks_what_training_never_saw():
    assert VOCABULARY.users[19] == "1m_19" and VOCABULARY.users[20] == ""
    assert VOCABULARY.items[29] == "Movie 29 (1979)" and VOCABULARY.items[30] == ""
    assert VOCABULARY.decades[6] == 197 and VOCABULARY.decades[7] == 0
    x = random_arrays(VOCAB, 50, seed=8)
    back = VOCABULARY.to_indices(VOCABULARY.to_raw(x))
    np.testing.assert_array_equal(back["user_id"], np.where(x["user_id"] < 20, x["user_id"], 0))
    np.testing.assert_array_equal(back["hist_ratings"],
                                  np.where(back["hist_item_ids"] != 0, x["hist_ratings"], 0))


def test_unseen_ids_are_scored_over_rest_and_grpc(model, served, raw_requests):
    want = in_process(model, raw_requests)
    rest = predict_rest(served.rest, "lmn", raw_requests)["probability"]
    grpc_ = predict_grpc(served.grpc, "lmn", raw_requests)["probability"]
    np.testing.assert_allclose(rest, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(grpc_, want, atol=1e-5, rtol=0)
    assert rest.shape == (8,) and np.all((rest > 0) & (rest < 1))


def test_rest_instances_with_plain_json_strings(model, served, raw_requests):
    rows = [{k: np.asarray(v[i]).tolist() for k, v in raw_requests.items()} for i in range(3)]
    assert rows[1]["user_id"] == "1m_25" and isinstance(rows[0]["hist_item_ids"][0], str)
    status, body = post(served, {"instances": rows})
    assert status == 200, body
    got = [p["probability"] for p in body["predictions"]]
    np.testing.assert_allclose(got, in_process(model, {k: v[:3] for k, v in
                                                        raw_requests.items()}), atol=1e-5)


def test_index_signature_still_served(model, served):
    x = {k: v for k, v in random_arrays(VOCAB, 4, seed=2).items() if k in schema.FEATURES}
    got = predict_grpc(served.grpc, "lmn", x, signature_name="serving_indices")
    want = tf.sigmoid(model.predict(x, verbose=0)[:, 0]).numpy()
    np.testing.assert_allclose(got["probability"], want, atol=1e-5)


def post(served, doc) -> tuple[int, dict]:
    request = urllib.request.Request(f"{served.rest}/v1/models/lmn:predict",
                                     data=json.dumps(doc).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _columns(raw) -> dict:
    return {k: v.tolist() for k, v in raw.items()}


@pytest.mark.parametrize("break_it", ["int_id", "short_history", "missing", "float_age"])
def test_bad_requests_are_clear_400s(served, raw_requests, break_it):
    doc = _columns({k: v[:2] for k, v in raw_requests.items()})
    if break_it == "int_id":
        doc["user_id"] = [1, 2]
    elif break_it == "short_history":
        doc["hist_item_ids"] = [row[:49] for row in doc["hist_item_ids"]]
    elif break_it == "missing":
        del doc["item_genres"]
    else:
        doc["user_age"] = ["old", "young"]
    status, body = post(served, {"inputs": doc})
    assert status == 400, body
    assert isinstance(body.get("error"), str) and body["error"], body


def test_grpc_wrong_dtype_is_invalid_argument(served, raw_requests):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "lmn"
    for name, (dtype, _) in RAW_FEATURES.items():
        value = np.asarray(raw_requests[name][:1], object if dtype == "string" else dtype)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    request.inputs["item_id"].CopyFrom(tf.make_tensor_proto(np.array([3], np.int32)))
    with grpc.insecure_channel(served.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(request, timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("flag", ["--rest", "--grpc"])
def test_predict_command_scores_a_user_from_the_raw_log(model, served, capsys, flag):
    from lmn_tf.cli import main
    from lmn_tf.data.raw import read_log
    from lmn_tf.data.requests import request_features, stack

    log = read_log("ml-100k")
    user, movies = log.events["user_id"][-1], list(log.events["item_id"][:2])
    target = served.rest if flag == "--rest" else served.grpc
    assert main(["predict", flag, target, "--model-name", "lmn", "--dataset", "ml-100k",
                 "--user", user, "--item", *movies]) == 0
    printed = json.loads(capsys.readouterr().out)
    want = stack([request_features(log.events, user, m, users=log.users, items=log.items)
                  for m in movies])
    np.testing.assert_allclose(printed["probability"], in_process(model, want), atol=1e-5)
    assert main(["predict", flag, target, "--model-name", "lmn", "--dataset", "ml-100k",
                 "--user", "no such user", "--item", movies[0]]) == 1
    assert "'no such user' not in the ml-100k data files" in capsys.readouterr().err
    assert main(["predict", flag, target, "--model-name", "lmn", "--user", user]) == 2
