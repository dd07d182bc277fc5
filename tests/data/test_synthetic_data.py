"""The synthetic generator: determinism, schema, and its known answer."""

import itertools

import numpy as np
import pytest

from lmn_tf.data import synthetic
from lmn_tf.data.__main__ import baselines
from lmn_tf.data.schema import FEATURES, LABEL

SMALL = {"num_users": 300, "events_per_user": 120, "warmup_events": 150}


@pytest.fixture(scope="module")
def data():
    return synthetic.load(**SMALL, seed=0)


def test_deterministic_by_seed(data):
    again = synthetic.load(**SMALL, seed=0)
    other = synthetic.load(**SMALL, seed=1)
    for k in data[0]:
        np.testing.assert_array_equal(data[0][k], again[0][k])
        np.testing.assert_array_equal(data[1][k], again[1][k])
    assert not np.array_equal(data[0]["item_id"], other[0]["item_id"])


def test_schema_split_and_probabilities(data):
    train, eval_, vocab = data
    assert len(train[LABEL]) == 96 * 300 and len(eval_[LABEL]) == 24 * 300
    for name, (dtype, shape) in FEATURES.items():
        assert train[name].dtype == np.dtype(dtype) and train[name].shape[1:] == shape
        assert train[name].min() >= 0
    assert train["item_id"].max() < vocab.num_items and train["user_id"].max() < vocab.num_users
    assert train["item_genres"].max() < vocab.num_genres
    p = train[synthetic.TRUE_PROB]
    assert ((p > 0) & (p < 1)).all()
    assert train[LABEL].mean() == pytest.approx(p.mean(), abs=0.01)
    # Histories run far past the 50-item window (warm-up included).
    assert ((train["hist_item_ids"] > 0).sum(1) == 50).mean() > 0.9


def test_ratings_are_label_plus_one(data):
    train, _, _ = data
    # Every shown item enters with rating label + 1; the item's last earlier event of the same
    # user is the history's last element, so its rating is that event's label + 1.
    for side in ("hist_ratings", "sim_ratings"):
        assert {1, 2} <= set(np.unique(train[side])) <= {0, 1, 2}
        np.testing.assert_array_equal(train[side] > 0, train[side.replace("ratings",
                                                                          "item_ids")] > 0)
    positive = synthetic.load(**SMALL, seed=0, history="positive")[0]
    assert set(np.unique(positive["hist_ratings"])) <= {0, 2}
    n = SMALL["num_users"]
    prev_label = train[LABEL][:-n]  # tick t-1 of the same user (global order is tick, user)
    last = (train["hist_item_ids"][n:] > 0).sum(1) - 1
    rows = np.arange(len(last))
    np.testing.assert_array_equal(train["hist_item_ids"][n:][rows, last], train["item_id"][:-n])
    np.testing.assert_array_equal(train["hist_ratings"][n:][rows, last], prev_label + 1)


def test_bayes_auc_beats_model_free_baselines(data):
    train, eval_, _ = data
    p = eval_[synthetic.TRUE_PROB]
    bayes = synthetic.expected_auc(p, p)
    drawn = synthetic.expected_auc(p, eval_[LABEL])
    assert 0.7 < bayes < 0.8 and abs(drawn - bayes) < 0.02
    for name, value in baselines(train, eval_).items():
        assert bayes > value + 0.1, name


def test_expected_auc_matches_pair_counting():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    w = rng.random(40)
    num = den = 0.0
    for i, j in itertools.permutations(range(40), 2):
        pair = w[i] * (1 - w[j])
        den += pair
        num += pair * ((scores[i] > scores[j]) + 0.5 * (scores[i] == scores[j]))
    assert synthetic.expected_auc(scores, w) == pytest.approx(num / den)
    labels = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    # positives 0.35, 0.8, 0.4 vs negatives 0.1, 0.4, 0.4: wins 1 + 3 + (1 + 2 * 0.5) = 6 of 9
    assert synthetic.expected_auc(s, labels) == pytest.approx(6 / 9)
