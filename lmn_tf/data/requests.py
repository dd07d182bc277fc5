"""One request's raw features from the raw event log: what training computed, per request.

`request_features(events, user_id, item_id, users=..., items=...)` returns the
`lmn_tf.data.raw.RAW_FEATURES` of one (user, movie) request, given every event strictly
before it. It follows `lmn_tf.data.features` rule for rule (the statistics' formulas are in
its docstring; the sequences are `lmn_tf.data.sequences`'), so for any event of the
training log it reproduces the training arrays' features exactly, mapped to raw ids
(`tests/data/test_data_requests.py` checks every feature of hundreds of events). Training
computes all events at once with vectorised group sums; this computes one event in O(N)
over the log, which is what a serving-side system needs.

Why the whole log and not only the user's: the item's statistics, the item x demographic
rates and the global rates the smoothing pulls toward read every user's events.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lmn_tf.data.features import PRIOR_WEIGHT, WINDOWS
from lmn_tf.data.raw import PADDING, POSITIVE_RATING, RAW_FEATURES, age_index
from lmn_tf.data.schema import HISTORIES, LONG_SEQ_LEN, MAX_GENRES, SEQ_LEN, STATISTICS


def _smoothed(total, n, prior) -> np.float64:
    # The same float64 operations in the same order as `features._smoothed`: bit-identical.
    return (np.int64(total) + PRIOR_WEIGHT * prior) / (np.int64(n) + PRIOR_WEIGHT)


def _padded(values, ratings, length: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full(length, PADDING, dtype=object)
    side = np.zeros(length, np.int32)
    ids[: len(values)] = values
    side[: len(values)] = ratings
    return ids, side


def request_features(
    events: Mapping[str, np.ndarray],
    user_id: str,
    item_id: str,
    *,
    users: Mapping[str, Mapping],
    items: Mapping[str, Mapping],
    history: str = "rated",
    sim_window: int = LONG_SEQ_LEN,
) -> dict[str, np.ndarray]:
    """The raw features of one request, from the events strictly before it.

    Args:
        events: the event log before the request, every user's, oldest first (ties in a
            fixed order, e.g. `lmn_tf.data.raw.RawLog.before`): ``user_id``, ``item_id``
            (raw ids) and ``rating`` (whole 1-5) arrays of equal length.
        user_id: the requesting user's raw id; their profile is ``users[user_id]``.
        item_id: the candidate movie's raw id; its genres and year are ``items[item_id]``
            (a movie new to the catalogue is added to ``items`` first).
        users: raw user id -> ``{"gender", "age", "occupation", "zip"}`` (`RawLog.users`),
            holding every user of ``events`` too (the demographic rates read them).
        items: raw movie id -> ``{"genres": tuple of names, "year": int}`` (`RawLog.items`),
            holding every movie of ``events``.
        history: "rated" (every earlier rated movie enters the sequences) or "positive"
            (only ratings >= 4): the run's ``history``.
        sim_window: how many of the user's latest earlier behaviours SIM's search reads.

    Returns:
        `RAW_FEATURES` name -> array with a batch dimension of 1, ready to send.

    Raises:
        ValueError: an unknown ``history``, columns of different lengths, or a user or movie
            missing from ``users`` / ``items``.

    Example:
        >>> users = {"u1": {"gender": "F", "age": 25, "occupation": "7", "zip": "10001"}}
        >>> items = {"A (1995)": {"genres": ("Comedy",), "year": 1995},
        ...          "B (1999)": {"genres": ("Drama", "Comedy"), "year": 1999}}
        >>> log = {"user_id": np.array(["u1"]), "item_id": np.array(["A (1995)"]),
        ...        "rating": np.array([5])}
        >>> f = request_features(log, "u1", "B (1999)", users=users, items=items)
        >>> f["hist_item_ids"][0, :2].tolist(), f["hist_ratings"][0, :2].tolist()
        (['A (1995)', ''], [5, 0])
        >>> round(float(f["user_pos_rate"][0]), 4)  # (1 + 5 * 2/3) / (1 + 5), 2/3 global
        0.7222
    """
    if history not in HISTORIES:
        raise ValueError(f"history must be one of {HISTORIES}. Received: {history=}")
    ev_user = np.asarray(events["user_id"], dtype=object)
    ev_item = np.asarray(events["item_id"], dtype=object)
    rating = np.asarray(events["rating"]).astype(np.int64)
    if not len(ev_user) == len(ev_item) == len(rating):
        raise ValueError(f"events' columns must have one length. Received: user_id "
                         f"{len(ev_user)}, item_id {len(ev_item)}, rating {len(rating)}")
    if user_id not in users:
        raise ValueError(f"user {user_id!r} is not in `users`: add their profile first. "
                         f"Received: user_id={user_id!r}")
    if item_id not in items:
        raise ValueError(f"movie {item_id!r} is not in `items`: add its genres and year "
                         f"first. Received: item_id={item_id!r}")
    label = (rating >= POSITIVE_RATING).astype(np.int64)
    profile, target = users[user_id], items[item_id]
    i = len(rating)
    global_rate = np.int64(label.sum() + 1) / np.int64(i + 2)
    global_rating = np.int64(rating.sum() + 3) / np.int64(i + 1)
    stats: dict[str, float] = {}

    def group(prefix: str, mask: np.ndarray, with_rating: bool = True, count: bool = True):
        n, p, s = int(mask.sum()), int(label[mask].sum()), int(rating[mask].sum())
        if count:
            stats[f"{prefix}_count"] = np.log1p(np.int64(n))
        stats[f"{prefix}_pos_rate"] = _smoothed(p, n, global_rate)
        if with_rating:
            stats[f"{prefix}_mean_rating"] = _smoothed(s, n, global_rating)

    mine = ev_user == user_id
    on_item = ev_item == item_id
    group("user", mine)
    group("item", on_item)
    # The item's events by users of the same age group / gender / occupation.
    raters = ev_user[on_item]
    for field, name in (("age", "age"), ("gender", "gender"), ("occupation", "occupation")):
        same = np.zeros(len(rating), bool)
        if field == "age":
            own = age_index(profile["age"])
            same[on_item] = [age_index(users[u]["age"]) == own for u in raters]
        else:
            same[on_item] = [users[u][field] == profile[field] for u in raters]
        group(f"item_{name}", same, with_rating=False, count=False)

    u_items, u_rating, u_label = ev_item[mine], rating[mine], label[mine]
    genres = set(target["genres"])
    item_genres = [set(items[it]["genres"]) for it in u_items]
    n_g = sum(sum(g in gs for gs in item_genres) for g in genres)  # per target genre
    p_g = sum(sum(g in gs for gs, y in zip(item_genres, u_label, strict=True) if y)
              for g in genres)
    stats["user_genre_count"] = np.log1p(np.int64(n_g))
    stats["user_genre_pos_rate"] = _smoothed(p_g, n_g, global_rate)
    for k in WINDOWS:
        last_y, last_r = u_label[-k:], u_rating[-k:]
        stats[f"user_last{k}_pos_rate"] = _smoothed(last_y.sum(), len(last_y), global_rate)
        stats[f"user_last{k}_mean_rating"] = _smoothed(last_r.sum(), len(last_r),
                                                       global_rating)

    enters = np.ones(len(u_items), bool) if history == "rated" else u_label == 1
    b_items, b_rating = u_items[enters], u_rating[enters]
    hist, hist_r = _padded(b_items[-SEQ_LEN:], b_rating[-SEQ_LEN:], SEQ_LEN)
    window = slice(max(len(b_items) - sim_window, 0), None)
    w_items, w_rating = b_items[window], b_rating[window]
    match = np.array([bool(genres & set(items[it]["genres"])) for it in w_items], bool)
    sim, sim_r = _padded(w_items[match][-SEQ_LEN:], w_rating[match][-SEQ_LEN:], SEQ_LEN)

    target_genres = np.full(MAX_GENRES, PADDING, dtype=object)
    target_genres[: len(target["genres"])] = target["genres"]
    out = {
        "user_id": np.array([user_id], dtype=object),
        "user_gender": np.array([profile["gender"]], dtype=object),
        "user_age": np.array([profile["age"]], np.int32),
        "user_occupation": np.array([profile["occupation"]], dtype=object),
        "user_zip": np.array([profile["zip"]], dtype=object),
        "item_id": np.array([item_id], dtype=object),
        "item_genres": target_genres[None],
        "item_year": np.array([target["year"]], np.int32),
        "hist_item_ids": hist[None], "hist_ratings": hist_r[None],
        "sim_item_ids": sim[None], "sim_ratings": sim_r[None],
    }
    out.update({name: np.array([stats[name]], np.float32) for name in STATISTICS})
    return {name: out[name] for name in RAW_FEATURES}


def stack(requests: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Several `request_features` results as one batch (concatenated along the batch axis).

    Raises:
        ValueError: an empty list.
    """
    if not requests:
        raise ValueError("stack needs at least one request. Received: []")
    return {name: np.concatenate([r[name] for r in requests]) for name in RAW_FEATURES}
