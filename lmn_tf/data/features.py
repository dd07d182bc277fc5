"""Every sample feature that comes from the event log, computed in one place.

Both generators (MovieLens and synthetic) hand `log_features` their events in global
chronological order plus the user and item tables; it returns every `schema.FEATURES` array.
"Earlier" means an earlier position in that order: an event's own rating or label, and every
later event, never enter its features (`lmn_tf.data.sequences` builds the sequences under the
same rule).
"""

from __future__ import annotations

import numpy as np

from lmn_tf.data.schema import FEATURES, HISTORIES, LONG_SEQ_LEN, NUM_RATINGS, SEQ_LEN
from lmn_tf.data.sequences import behaviour_sequences

PROFILE_FIELDS = ("user_gender", "user_age", "user_occupation", "user_zip")


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
        user, item, rating, enters, genre_masks(item_genres), SEQ_LEN, LONG_SEQ_LEN, SEQ_LEN,
        progress)
    out = {name: np.asarray(profile[name])[user] for name in PROFILE_FIELDS}
    out.update(user_id=user, item_id=item, item_genres=item_genres[item],
               item_year=np.asarray(item_year)[item], hist_item_ids=hist, hist_ratings=hist_r,
               sim_item_ids=sim, sim_ratings=sim_r)
    return {k: out[k].astype(dtype) for k, (dtype, _) in FEATURES.items()}
