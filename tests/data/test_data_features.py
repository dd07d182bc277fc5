"""The running statistics: a naive recomputation, and no event sees itself or the future."""

import math

import numpy as np
import pytest
from movielens_reference import profiles, reference

from lmn_tf.data import movielens
from lmn_tf.data.features import PRIOR_WEIGHT, WINDOWS, log_features
from lmn_tf.data.schema import FEATURES, LABEL, STATISTICS


@pytest.fixture(scope="module")
def ml100k():
    train, eval_, _ = movielens.load("ml-100k", progress=False)
    return {k: np.concatenate([train[k], eval_[k]]) for k in train}


def naive_statistics(dataset):
    """Every statistic by a plain loop over the events, one dict of running counts per group."""
    events, genres, _, _ = reference(dataset)
    profile = profiles(dataset)
    m = PRIOR_WEIGHT
    groups = {}  # group key -> [count, positives, rating sum]
    past = {}  # user -> list of (label, rating), chronological
    positives = ratings = 0
    out = {name: [] for name in STATISTICS}

    def rates(prefix, key, g, gr, count=True, rating=True):
        n, p, s = groups.get(key, (0, 0, 0))
        if count:
            out[prefix + "_count"].append(math.log1p(n))
        out[prefix + "_pos_rate"].append((p + m * g) / (n + m))
        if rating:
            out[prefix + "_mean_rating"].append((s + m * gr) / (n + m))

    for i, (_, _, user, item, rating) in enumerate(events):
        label, rating = int(rating >= 4), int(rating)
        g, gr = (positives + 1) / (i + 2), (ratings + 3) / (i + 1)
        age, gender, occupation = profile[user]
        rates("user", ("u", user), g, gr)
        rates("item", ("i", item), g, gr)
        rates("item_age", ("ia", item, age), g, gr, count=False, rating=False)
        rates("item_gender", ("ig", item, gender), g, gr, count=False, rating=False)
        rates("item_occupation", ("io", item, occupation), g, gr, count=False, rating=False)
        n = p = 0
        for genre in genres[item]:
            c = groups.get(("ug", user, genre), (0, 0, 0))
            n, p = n + c[0], p + c[1]
        out["user_genre_count"].append(math.log1p(n))
        out["user_genre_pos_rate"].append((p + m * g) / (n + m))
        for k in WINDOWS:
            window = past.get(user, [])[-k:]
            n, p, s = len(window), sum(w[0] for w in window), sum(w[1] for w in window)
            out[f"user_last{k}_pos_rate"].append((p + m * g) / (n + m))
            out[f"user_last{k}_mean_rating"].append((s + m * gr) / (n + m))
        # Only now does the event itself count, for the events after it.
        keys = [("u", user), ("i", item), ("ia", item, age), ("ig", item, gender),
                ("io", item, occupation), *[("ug", user, genre) for genre in genres[item]]]
        for key in keys:
            n, p, s = groups.get(key, (0, 0, 0))
            groups[key] = (n + 1, p + label, s + rating)
        past.setdefault(user, []).append((label, rating))
        positives, ratings = positives + label, ratings + rating
    return {k: np.array(v, np.float32) for k, v in out.items()}


def test_every_statistic_equals_a_naive_loop(ml100k):
    expected = naive_statistics("ml-100k")
    for name in STATISTICS:
        np.testing.assert_array_equal(ml100k[name], expected[name], err_msg=name)
    # Not all trivially equal: the statistics vary and new users start at the global rates.
    assert ml100k["user_pos_rate"].std() > 0.05 and ml100k["item_count"].max() > 5
    first = np.unique(ml100k["user_id"], return_index=True)[1]
    assert (ml100k["user_count"][first] == 0).all()


def _event_log(full, n):
    """The first n events of the loaded arrays as `log_features` inputs."""
    events, _, _, _ = reference("ml-100k")
    num_users, num_items = full["user_id"].max() + 1, full["item_id"].max() + 1
    profile = {k: np.zeros(num_users, np.int64) for k in
               ("user_gender", "user_age", "user_occupation", "user_zip")}
    for k in profile:
        profile[k][full["user_id"]] = full[k]
    genres = np.zeros((num_items, full["item_genres"].shape[1]), np.int64)
    genres[full["item_id"]] = full["item_genres"]
    year = np.zeros(num_items, np.int64)
    year[full["item_id"]] = full["item_year"]
    rating = np.array([int(e[4]) for e in events[:n]])
    tables = {"profile": profile, "item_genres": genres, "item_year": year}
    return full["user_id"][:n].astype(np.int64), full["item_id"][:n].astype(np.int64), rating, \
        tables


def test_own_rating_and_later_events_change_no_feature(ml100k):
    n = 4000
    user, item, rating, tables = _event_log(ml100k, n)
    base = log_features(user, item, rating, (rating >= 4).astype(int), **tables, progress=False)
    for name in FEATURES:  # a prefix of the log gives the loader's features
        np.testing.assert_array_equal(base[name], ml100k[name][:n], err_msg=name)
    np.testing.assert_array_equal((rating >= 4).astype(np.float32), ml100k[LABEL][:n])
    rng = np.random.default_rng(0)
    for i in rng.choice(n - 1, 5, replace=False):
        r2 = rating.copy()
        r2[i] = 1 if rating[i] >= 4 else 5  # flips the event's own label too
        r2[i + 1:] = rng.integers(1, 6, n - i - 1)
        u2, it2 = user.copy(), item.copy()  # later events by other users, on other items
        u2[i + 1:] = rng.permutation(u2[i + 1:])
        it2[i + 1:] = rng.permutation(it2[i + 1:])
        new = log_features(u2, it2, r2, (r2 >= 4).astype(int), **tables, progress=False)
        changed = []
        for name in FEATURES:
            np.testing.assert_array_equal(new[name][: i + 1], base[name][: i + 1],
                                          err_msg=f"{name} of events up to {i}")
            changed.append(not np.array_equal(new[name][i + 1:], base[name][i + 1:]))
        assert sum(changed) > len(FEATURES) // 2  # the perturbation did reach later events
