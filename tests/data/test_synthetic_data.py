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


SPATIAL = {"num_groups": 6, "num_items": 40, "exposures": 3, "users_per_group": 4,
           "cold_users_per_group": 2, "taste_size": 5, "eval_samples": 500}


@pytest.fixture(scope="module")
def spatial():
    return synthetic.spatial(**SPATIAL, history_noise=0.0, seed=0)


def test_spatial_is_deterministic_and_follows_the_schema(spatial):
    train, eval_, vocab = spatial
    again = synthetic.spatial(**SPATIAL, history_noise=0.0, seed=0)[0]
    for k in train:
        np.testing.assert_array_equal(train[k], again[k])
    assert len(train[LABEL]) == 6 * 40 * 3 and len(eval_[LABEL]) == 500
    for name, (dtype, shape) in FEATURES.items():
        assert train[name].dtype == np.dtype(dtype) and train[name].shape[1:] == shape
    assert vocab.num_users == 6 * 6 + 1 and train["user_id"].max() < vocab.num_users


def test_spatial_pairs_cold_users_and_known_answer(spatial):
    train, eval_, _ = spatial
    pair = train[synthetic.GROUP] * 40 + train["item_id"] - 1
    assert (np.bincount(pair, minlength=240) == 3).all()  # every pair `exposures` times
    # users 1 + g·6 + (0..3) are warm, + (4, 5) cold: no training sample
    slot = (train["user_id"] - 1) % 6
    assert slot.max() == 3 and ((eval_["user_id"] - 1) % 6 >= 4).any()
    assert ((train["user_id"] - 1) // 6 == train[synthetic.GROUP]).all()
    # the preference is per (group, item): one probability per pair, in both splits
    p = {}
    for split in (train, eval_):
        for g, i, q in zip(split[synthetic.GROUP], split["item_id"], split[synthetic.TRUE_PROB],
                           strict=True):
            assert p.setdefault((g, i), q) == q
    bayes = synthetic.expected_auc(eval_[synthetic.TRUE_PROB], eval_[synthetic.TRUE_PROB])
    assert 0.75 < bayes < 0.95


def test_spatial_history_shows_the_group_and_the_profile_does_not(spatial):
    train, _, _ = spatial
    tops = []
    for g in range(6):  # half the window is browsing the group's 5 taste items (no noise)
        hist = train["hist_item_ids"][train[synthetic.GROUP] == g]
        counts = np.bincount(hist[hist > 0], minlength=41)
        top = np.argsort(counts)[-5:]
        assert counts[top].sum() / counts.sum() >= 0.5  # uniform items would give 5/40
        tops.append(frozenset(top.tolist()))
    assert len(set(tops)) == 6  # each group its own taste
    # random profiles: one group spans several (gender, age, occupation, zip)
    profile = np.stack([train[k] for k in ("user_gender", "user_age", "user_occupation",
                                           "user_zip")], 1)[train[synthetic.GROUP] == 0]
    assert len(np.unique(profile, axis=0)) > 1
    oracle = synthetic.spatial(**SPATIAL, group_in_profile=True, seed=0)[0]
    profile = np.stack([oracle[k] for k in ("user_gender", "user_age", "user_occupation",
                                            "user_zip")], 1)
    assert len(np.unique(profile, axis=0)) == 6


def test_spatial_refuses_bad_arguments():
    with pytest.raises(ValueError, match="taste_size"):
        synthetic.spatial(num_items=5, taste_size=6)
    with pytest.raises(ValueError, match="history_noise"):
        synthetic.spatial(history_noise=1.5)
    with pytest.raises(ValueError, match="cold_users_per_group"):
        synthetic.spatial(cold_users_per_group=-1)


def test_docstring_examples_run():
    import doctest

    from lmn_tf.data.synthetic import known_answer, long_term, pairs

    for module in (known_answer, long_term, pairs):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_long_term_items_recur_and_are_clicked_more():
    kw = {**SMALL, "long_term": "items", "long_items": 10, "revisit_share": 0.3}
    train, eval_, _ = synthetic.load(**kw, seed=0)
    again = synthetic.load(**kw, seed=0)[0]
    assert all(np.array_equal(train[k], again[k]) for k in train)
    # A user's long-term items are the ones the feed shows again: the 10 items a user was
    # shown most in training hold about revisit_share of their samples (uniform: ~0.6%).
    users, items = train["user_id"], train["item_id"]
    top_share, top_click, rest_click = [], [], []
    for u in np.unique(users)[:100]:
        mine = users == u
        ids, counts = np.unique(items[mine], return_counts=True)
        top = np.isin(items[mine], ids[np.argsort(-counts)[:10]])
        top_share.append(top.mean())
        top_click.append(train[LABEL][mine][top].mean())
        rest_click.append(train[LABEL][mine][~top].mean())
    assert 0.2 < np.mean(top_share) < 0.45
    assert np.mean(top_click) > np.mean(rest_click) + 0.15  # the long_weight boost
    p = eval_[synthetic.TRUE_PROB]
    assert 0.6 < synthetic.expected_auc(p, p) < 0.9


@pytest.mark.parametrize("kw", [{"long_term": "users"},
                                {"long_term": "items", "long_items": 0},
                                {"long_term": "items", "revisit_share": 1.5}])
def test_long_term_arguments_are_checked(kw):
    with pytest.raises(ValueError, match=r"long_term|long_items"):
        synthetic.load(**SMALL, **kw)
