"""The feature contract shared by data, models, export and serving.

Every feature is a dense tensor with a free batch dimension. Every vocabulary reserves
index 0 for padding / out-of-vocabulary, so sequence masks are simply ``ids != 0``.
Sequences are chronological (oldest first), left-aligned and zero-padded on the right.

Behaviour sequences carry feedback: ``hist_ratings[b, j]`` is the rating (1-5; 0 = padding)
the user gave ``hist_item_ids[b, j]``, likewise ``sim_ratings`` for ``sim_item_ids``. With
``history="rated"`` (the default) every earlier rated item enters the sequences; with
``history="positive"`` only the positives do (the paper's setting). Synthetic data has
clicks, not ratings: its rating is ``label + 1`` (1 = shown and not clicked, 2 = clicked).
"""

from __future__ import annotations

import dataclasses

SEQ_LEN = 50  # the paper's behaviour-sequence length
LONG_SEQ_LEN = 1000  # the long history SIM searches over
MAX_GENRES = 6  # MovieLens movies have at most 6 genres

# name -> (dtype, shape without batch)
FEATURES: dict[str, tuple[str, tuple[int, ...]]] = {
    "user_id": ("int32", ()),
    "user_gender": ("int32", ()),
    "user_age": ("int32", ()),
    "user_occupation": ("int32", ()),
    "user_zip": ("int32", ()),  # first 3 digits of the zip code
    "item_id": ("int32", ()),
    "item_genres": ("int32", (MAX_GENRES,)),
    "item_year": ("int32", ()),  # release year bucket
    "hist_item_ids": ("int32", (SEQ_LEN,)),  # last SEQ_LEN rated (or positive) items
    "hist_ratings": ("int32", (SEQ_LEN,)),  # their ratings, 1..NUM_RATINGS - 1
    "sim_item_ids": ("int32", (SEQ_LEN,)),  # SIM hard search: same-genre items of the long history
    "sim_ratings": ("int32", (SEQ_LEN,)),  # their ratings
}
# Leakage-free running statistics (`lmn_tf.data.features.statistics` defines each), float32
# scalars, name -> (offset, scale): a model reads (value - offset) / scale, about unit range.
# Counts are log1p(count); rates are smoothed toward the running global positive rate.
STATISTICS: dict[str, tuple[float, float]] = {
    "user_count": (3.0, 2.0),  # log1p(the user's earlier events)
    "user_pos_rate": (0.5, 0.25),  # their positive rate
    "user_mean_rating": (3.5, 0.75),  # their mean rating
    "item_count": (4.0, 2.0),  # log1p(the item's earlier events)
    "item_pos_rate": (0.5, 0.25),
    "item_mean_rating": (3.5, 0.75),
    "user_genre_count": (3.0, 2.0),  # log1p(the user's earlier events in the target's genres)
    "user_genre_pos_rate": (0.5, 0.25),  # their positive rate
    "item_age_pos_rate": (0.5, 0.25),  # the item's positive rate among same-age users
    "item_gender_pos_rate": (0.5, 0.25),
    "item_occupation_pos_rate": (0.5, 0.25),
    "user_last5_pos_rate": (0.5, 0.25),  # over the user's last 5 earlier events
    "user_last5_mean_rating": (3.5, 0.75),
    "user_last20_pos_rate": (0.5, 0.25),
    "user_last20_mean_rating": (3.5, 0.75),
}
FEATURES.update({name: ("float32", ()) for name in STATISTICS})
NUM_RATINGS = 6  # rating vocabulary: 0 = padding, 1-5 (synthetic data uses 1-2)
RATINGS_OF = {"hist_item_ids": "hist_ratings", "sim_item_ids": "sim_ratings"}  # sequence -> side
HISTORIES = ("rated", "positive")  # which earlier events enter the behaviour sequences
LABEL = "label"  # float32 (), 1.0 when rating >= 4


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Vocabulary sizes, each counting the reserved index 0."""

    num_users: int
    num_items: int
    num_genders: int
    num_ages: int
    num_occupations: int
    num_zips: int
    num_genres: int
    num_years: int
