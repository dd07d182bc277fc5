"""`request_features` on the raw log reproduces the training arrays exactly (ML-100K).

The serving-side computation (one request, raw ids) against the training pipeline (every
event at once, indices): every feature of a few hundred events, train and eval, mapped
through the dataset's vocabulary, must be identical — statistics to the last bit.
"""

import numpy as np
import pytest

from lmn_tf.data import load
from lmn_tf.data.raw import RAW_FEATURES, read_log
from lmn_tf.data.requests import request_features, stack
from lmn_tf.data.schema import FEATURES, Vocab
from lmn_tf.data.vocabulary import Vocabulary


@pytest.fixture(scope="module")
def log():
    return read_log("ml-100k")


def all_events(history: str = "rated") -> tuple[dict, int, Vocab]:
    train, eval_, vocab = load("ml-100k", progress=False, history=history)
    arrays = {k: np.concatenate([train[k], eval_[k]]) for k in FEATURES}
    return arrays, len(train["user_id"]), vocab


def requests_at(log, positions, history="rated") -> dict[str, np.ndarray]:
    return stack([request_features(log.before(p), log.events["user_id"][p],
                                   log.events["item_id"][p], users=log.users,
                                   items=log.items, history=history) for p in positions])


@pytest.mark.parametrize("history", ["rated", "positive"])
def test_request_features_equal_training_arrays(log, history):
    arrays, cut, vocab = all_events(history)
    vocabulary = Vocabulary.from_log(log)
    vocabulary.check(vocab)
    rng = np.random.default_rng(0)
    n = 120 if history == "rated" else 40
    positions = np.r_[0, 1, cut - 1, cut, rng.integers(0, cut, n // 2),
                      rng.integers(cut, len(arrays["user_id"]), n // 2)]  # train and eval
    raw = requests_at(log, positions, history)
    assert {k: (str(v.dtype), v.shape[1:]) for k, v in raw.items()} == {
        k: ("object" if d == "string" else d, s) for k, (d, s) in RAW_FEATURES.items()}
    got = vocabulary.to_indices(raw)
    for name in FEATURES:
        np.testing.assert_array_equal(got[name], arrays[name][positions], err_msg=name)
    assert raw["user_id"][0].startswith("100k_") and raw["hist_item_ids"].dtype == object


def test_log_order_is_the_training_order(log):
    arrays, _, _ = all_events()
    vocabulary = Vocabulary.from_log(log)
    users = {u: k for k, u in enumerate(vocabulary.users)}
    items = {m: k for k, m in enumerate(vocabulary.items)}
    np.testing.assert_array_equal([users[u] for u in log.events["user_id"]], arrays["user_id"])
    np.testing.assert_array_equal([items[m] for m in log.events["item_id"]], arrays["item_id"])


def test_new_user_and_movie_get_the_global_rates(log):
    events = log.before(5000)
    users = {**log.users, "new": {"gender": "F", "age": 30, "occupation": "other",
                                  "zip": "12345"}}
    items = {**log.items, "Brand New (2031)": {"genres": ("Drama",), "year": 2031}}
    f = request_features(events, "new", "Brand New (2031)", users=users, items=items)
    global_rate = (np.sum(events["rating"] >= 4) + 1) / (5000 + 2)
    assert f["user_count"][0] == f["item_count"][0] == 0
    assert f["user_pos_rate"][0] == f["item_pos_rate"][0] == np.float32(global_rate)
    assert (f["hist_item_ids"] == "").all() and (f["hist_ratings"] == 0).all()
    assert Vocabulary.from_log(log).to_indices(f)["item_id"][0] == 0  # the unknown row


def test_unlisted_ids_and_bad_columns_are_clear_errors(log):
    events = log.before(10)
    with pytest.raises(ValueError, match="not in `users`"):
        request_features(events, "nobody", "Toy Story (1995)", users=log.users,
                         items=log.items)
    with pytest.raises(ValueError, match="not in `items`"):
        request_features(events, "100k_1", "No Such Movie", users=log.users, items=log.items)
    with pytest.raises(ValueError, match="one length"):
        request_features({**events, "rating": events["rating"][:3]}, "100k_1",
                         "Toy Story (1995)", users=log.users, items=log.items)
    with pytest.raises(ValueError, match="history"):
        request_features(events, "100k_1", "Toy Story (1995)", users=log.users,
                         items=log.items, history="all")
