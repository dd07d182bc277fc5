"""Every sample feature that comes from the event log, computed in one place.

Both generators (MovieLens and synthetic) hand `log_features` their events in global
chronological order plus the user and item tables; it returns every `schema.FEATURES` array.
"Earlier" means an earlier position in that order: an event's own rating or label, and every
later event, never enter its features (`lmn_tf.data.sequences` builds the sequences under the
same rule).

Statistics (`statistics`, names in `schema.STATISTICS`). With g = (P + 1) / (i + 2) the
running global positive rate before event i (P earlier positives, Laplace prior) and
r̄ = (R + 3) / (i + 1) the running global mean rating (R = sum of earlier ratings), a group's
earlier events (n of them, p positive, ratings summing to s) give

    count = log1p(n),  pos_rate = (p + M·g) / (n + M),  mean_rating = (s + M·r̄) / (n + M)

with M = `PRIOR_WEIGHT` pseudo-events, so a group with no history (a new user or item) gets
the global rates, and a rate earns its distance from them with evidence. Groups: the user;
the item; the user's events on items sharing a genre with the target (counts and positives
summed over the target's genres, an item counted once per shared genre); the item's events by
users of the same age bucket, gender, occupation; the user's last 5 and last 20 events.
"""

from __future__ import annotations

import numpy as np

from lmn_tf.data.schema import (
    FEATURES,
    HISTORIES,
    LONG_SEQ_LEN,
    NUM_RATINGS,
    SEQ_LEN,
    STATISTICS,
)
from lmn_tf.data.sequences import behaviour_sequences

PROFILE_FIELDS = ("user_gender", "user_age", "user_occupation", "user_zip")
PRIOR_WEIGHT = 5.0  # M: pseudo-events at the global rate in every smoothed statistic
WINDOWS = (5, 20)  # the user's recent-window statistics


def _running(key: np.ndarray, *values: np.ndarray) -> list[np.ndarray]:
    """Per event, the sums of ``values`` over the strictly earlier events with the same key.

    ``key`` (N,) int64 group of each event, events in global order; each value (N,) int64.
    Integer sums, so every statistic below is computed from exact counts.
    """
    order = np.argsort(key, kind="stable")  # chronological within each group
    k = key[order]
    starts = np.r_[True, k[1:] != k[:-1]]
    out = []
    for v in values:
        c = np.cumsum(v[order]) - v[order]  # exclusive cumsum over the whole sorted array
        base = np.maximum.accumulate(np.where(starts, c, 0))  # value at the group's start
        res = np.empty(len(key), np.int64)
        res[order] = c - base
        out.append(res)
    return out


def _smoothed(total: np.ndarray, n: np.ndarray, prior: np.ndarray) -> np.ndarray:
    return (total + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT)


def statistics(
    user: np.ndarray,
    item: np.ndarray,
    rating: np.ndarray,
    label: np.ndarray,
    *,
    profile: dict[str, np.ndarray],
    item_genres: np.ndarray,
) -> dict[str, np.ndarray]:
    """The `schema.STATISTICS` of every event, from strictly earlier events only.

    Args: as `log_features` (ratings and labels as integers).

    Returns:
        `schema.STATISTICS` name -> (N,) float32.
    """
    n_events = len(user)
    user, item = np.asarray(user, np.int64), np.asarray(item, np.int64)
    r, y = np.asarray(rating, np.int64), np.asarray(label, np.int64)
    i = np.arange(n_events)
    global_rate = (np.cumsum(y) - y + 1) / (i + 2)
    global_rating = (np.cumsum(r) - r + 3) / (i + 1)
    ones = np.ones(n_events, np.int64)
    out = {}

    def group(prefix: str, key: np.ndarray, with_rating: bool = True, count: bool = True):
        n, p, s = _running(key, ones, y, r)
        if count:
            out[f"{prefix}_count"] = np.log1p(n)
        out[f"{prefix}_pos_rate"] = _smoothed(p, n, global_rate)
        if with_rating:
            out[f"{prefix}_mean_rating"] = _smoothed(s, n, global_rating)

    group("user", user)
    group("item", item)
    num_items = int(max(item.max(initial=0), len(item_genres) - 1)) + 1
    for field, name in (("user_age", "age"), ("user_gender", "gender"),
                        ("user_occupation", "occupation")):
        demo = np.asarray(profile[field], np.int64)[user]
        group(f"item_{name}", demo * num_items + item, with_rating=False, count=False)

    genres = np.asarray(item_genres, np.int64)
    target = genres[item]  # (N, G)
    n_g, p_g = np.zeros(n_events, np.int64), np.zeros(n_events, np.int64)
    for g in np.unique(genres[genres > 0]):
        has = (target == g).any(1).astype(np.int64)  # the event's item has genre g
        n, p = _running(user, has, has * y)
        n_g += n * has  # counted only for targets of genre g
        p_g += p * has
    out["user_genre_count"] = np.log1p(n_g)
    out["user_genre_pos_rate"] = _smoothed(p_g, n_g, global_rate)

    n_u, p_u, s_u = _running(user, ones, y, r)  # the user's earlier events: counts and sums
    for k in WINDOWS:
        # The last k earlier events = all earlier ones minus those before the user's k-th last:
        # the running sums at the event k positions back in the user's own sequence.
        order = np.argsort(user, kind="stable")
        back = np.full(n_events, -1, np.int64)
        pos = n_u[order]  # index of each event within its user
        ok = pos >= k
        back[order[ok]] = order[np.flatnonzero(ok) - k]
        has_back = back >= 0
        n = np.where(has_back, k, n_u)
        p = p_u - np.where(has_back, p_u[back], 0)
        s = s_u - np.where(has_back, s_u[back], 0)
        out[f"user_last{k}_pos_rate"] = _smoothed(p, n, global_rate)
        out[f"user_last{k}_mean_rating"] = _smoothed(s, n, global_rating)
    return {name: out[name].astype(np.float32) for name in STATISTICS}


def genre_masks(item_genres: np.ndarray) -> np.ndarray:
    """(num_items,) int64 bitmask of each item's genres (genre g > 0 sets bit g - 1).

    Raises:
        ValueError: a genre index beyond 62 (it would not fit the mask).
    """
    genres = np.asarray(item_genres, dtype=np.int64)
    if genres.size and genres.max() > 62:
        raise ValueError(f"genre indices must be <= 62 to fit a bitmask. Received max "
                         f"{genres.max()}")
    bits = np.where(genres > 0, np.left_shift(1, np.maximum(genres - 1, 0)), 0)
    return np.bitwise_or.reduce(bits, axis=1) if genres.size else np.zeros(len(genres), np.int64)


def log_features(
    user: np.ndarray,
    item: np.ndarray,
    rating: np.ndarray,
    label: np.ndarray,
    *,
    profile: dict[str, np.ndarray],
    item_genres: np.ndarray,
    item_year: np.ndarray,
    history: str = "rated",
    sim_window: int = LONG_SEQ_LEN,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Every `schema.FEATURES` array of an event log.

    Args:
        user: (N,) user index (> 0) of each event, events in global chronological order.
        item: (N,) item index (> 0) of each event.
        rating: (N,) integer rating, 1 <= rating < `schema.NUM_RATINGS` (synthetic data:
            label + 1).
        label: (N,) 0/1 click label of each event.
        profile: `PROFILE_FIELDS` -> (num_users,) index tables (row 0 = padding).
        item_genres: (num_items, MAX_GENRES) genre indices, 0-padded (row 0 = padding).
        item_year: (num_items,) release-year index.
        history: "rated": every earlier rated event enters the sequences; "positive": only
            the positives (label 1), the paper's setting.
        sim_window: how many of the latest earlier events SIM's hard search looks through
            (SIM's 1000).
        progress: show a progress bar over the SIM search.

    Returns:
        `schema.FEATURES` name -> array with the schema's dtype, one row per event.

    Raises:
        ValueError: an unknown ``history``, or ratings outside 1..NUM_RATINGS - 1.

    Example:
        >>> g = np.array([[0, 0], [1, 0], [2, 0]])
        >>> f = log_features(np.array([1, 1, 1]), np.array([1, 2, 1]), np.array([5, 2, 4]),
        ...                  np.array([1, 0, 1]), profile={k: np.zeros(2, int) for k in
        ...                  PROFILE_FIELDS}, item_genres=g, item_year=np.zeros(3, int),
        ...                  progress=False)
        >>> f["hist_item_ids"][2, :3], f["hist_ratings"][2, :3]
        (array([1, 2, 0], dtype=int32), array([5, 2, 0], dtype=int32))
    """
    if history not in HISTORIES:
        raise ValueError(f"history must be one of {HISTORIES}. Received: {history=}")
    raw = np.asarray(rating)
    rating = raw.astype(np.int64)
    if len(rating) and (rating.min() < 1 or rating.max() >= NUM_RATINGS
                        or not np.array_equal(rating, raw)):
        raise ValueError(f"ratings must be integers in 1..{NUM_RATINGS - 1}. Received: range "
                         f"{rating.min()}..{rating.max()}")
    label = np.asarray(label)
    enters = np.ones(len(user), bool) if history == "rated" else label == 1
    item_genres = np.asarray(item_genres)
    hist, hist_r, sim, sim_r = behaviour_sequences(
        user, item, rating, enters, genre_masks(item_genres), SEQ_LEN, sim_window, SEQ_LEN,
        progress)
    out = statistics(user, item, rating, label.astype(np.int64), profile=profile,
                     item_genres=item_genres)
    out.update({name: np.asarray(profile[name])[user] for name in PROFILE_FIELDS})
    out.update(user_id=user, item_id=item, item_genres=item_genres[item],
               item_year=np.asarray(item_year)[item], hist_item_ids=hist, hist_ratings=hist_r,
               sim_item_ids=sim, sim_ratings=sim_r)
    return {k: out[k].astype(dtype) for k, (dtype, _) in FEATURES.items()}
