"""The feature contract shared by data, models, export and serving.

Every feature is a dense tensor with a free batch dimension. Every vocabulary reserves
index 0 for padding / out-of-vocabulary, so sequence masks are simply ``ids != 0``.
Sequences are chronological (oldest first), left-aligned and zero-padded on the right.
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
    "hist_item_ids": ("int32", (SEQ_LEN,)),  # last SEQ_LEN positively rated items
    "sim_item_ids": ("int32", (SEQ_LEN,)),  # SIM hard search: same-genre items of the long history
}
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
