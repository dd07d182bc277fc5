"""The raw request contract, and MovieLens as a production system holds it.

`RAW_FEATURES` is what the exported ``serving_default`` signature takes: the dataset's own
ids and values, not vocabulary indices (`lmn_tf.data.schema.FEATURES`, which the models
read). Names are the same as in `schema.FEATURES`; the values are raw:

- ids and categories are strings as the data files spell them: ``user_id`` ``"1m_1"``,
  ``item_id`` ``"Toy Story (1995)"``, ``user_gender`` ``"F"``, ``user_occupation`` ``"10"``
  (ML-1M's code; ML-100K's ``"technician"``), ``user_zip`` the whole zip code (the model
  reads its first 3 characters), ``item_genres`` genre names (``"Children's"``).
- ``user_age`` is the age in years or ML-1M's age code (the lower bound of its group), both
  bucketed into `AGE_GROUPS`; ``item_year`` the release year. 0 = unknown for both.
- ``hist_item_ids`` / ``sim_item_ids`` are raw movie ids, oldest first, padded on the right
  with ``""`` (`PADDING`); ``hist_ratings`` / ``sim_ratings`` the ratings 1-5 given to them,
  0 where the id is padding. ``item_genres`` is padded with ``""`` the same way.
- the running statistics (`schema.STATISTICS`) are float32, as in the index contract.

`read_log` reads a MovieLens dataset as such records: its event log in the training order
(`lmn_tf.data.movielens`), its users' profiles and its movies' genres and years.
`lmn_tf.data.requests.request_features` turns such a log into one request's features.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from lmn_tf.data.movielens import (
    AGE_GROUPS,
    _first_rows,
    _read_table,
    _to_float,
    _year,
    data_files,
)
from lmn_tf.data.schema import FEATURES, MAX_GENRES, SEQ_LEN, STATISTICS

PADDING = ""  # the padding / absent value of every string input
POSITIVE_RATING = 4  # label = rating >= 4, as in `lmn_tf.data.movielens`

# name -> (dtype, shape without batch); same names as `schema.FEATURES`, raw values.
RAW_FEATURES: dict[str, tuple[str, tuple[int, ...]]] = {
    "user_id": ("string", ()),
    "user_gender": ("string", ()),
    "user_age": ("int32", ()),
    "user_occupation": ("string", ()),
    "user_zip": ("string", ()),
    "item_id": ("string", ()),
    "item_genres": ("string", (MAX_GENRES,)),
    "item_year": ("int32", ()),
    "hist_item_ids": ("string", (SEQ_LEN,)),
    "hist_ratings": ("int32", (SEQ_LEN,)),
    "sim_item_ids": ("string", (SEQ_LEN,)),
    "sim_ratings": ("int32", (SEQ_LEN,)),
}
RAW_FEATURES.update({name: ("float32", ()) for name in STATISTICS})
assert list(RAW_FEATURES) == list(FEATURES)  # one name per feature, same order


@dataclasses.dataclass(frozen=True)
class RawLog:
    """A dataset as raw records.

    Attributes:
        events: ``user_id``, ``item_id`` (object arrays of str), ``rating`` and
            ``timestamp`` (int64), one entry per rating event, in the order training
            uses (stable by timestamp, ties in file order).
        users: raw user id -> ``{"gender": str, "age": int, "occupation": str, "zip": str}``.
        items: raw movie id -> ``{"genres": tuple[str, ...], "year": int}`` (year 0 when
            unknown).
    """

    events: dict[str, np.ndarray]
    users: dict[str, dict]
    items: dict[str, dict]

    def before(self, position: int) -> dict[str, np.ndarray]:
        """The events strictly before ``position`` (what a request at that point sees)."""
        return {k: v[:position] for k, v in self.events.items()}


def read_log(dataset: str = "ml-1m", data_dir: str | pathlib.Path | None = None) -> RawLog:
    """Reads a MovieLens dataset as raw records (a few seconds for ML-1M; no cache).

    Args:
        dataset: "ml-1m" or "ml-100k".
        data_dir: directory holding ``<dataset>.{inter,item,user}`` instead of the package.

    Returns:
        The `RawLog`: events in `lmn_tf.data.movielens.load`'s order, so event k here is
        sample k of ``load``'s train + eval arrays.

    Raises:
        FileNotFoundError: missing package or file.
        lmn_tf.data.DataFileError: a malformed line.

    Example:
        >>> log = read_log("ml-100k")
        >>> log.events["user_id"][0], log.items["Toy Story (1995)"]["year"]
        ('100k_259', 1995)
    """
    files = data_files(dataset, data_dir)
    users = _read_table(files["user"], ("user_id", "age", "gender", "occupation", "zip_code"))
    items = _read_table(files["item"], ("item_id", "release_year", ("genre", "class")))
    inter = _read_table(files["inter"], ("user_id", "item_id", "rating", "timestamp"))
    u_rows = list(_first_rows(users[0]).values())
    i_rows = list(_first_rows(items[0]).values())
    ages = _to_float([users[1][r] for r in u_rows], files["user"], "age",
                     [r + 2 for r in u_rows])
    user_table = {users[0][r]: {"gender": users[2][r], "age": int(age),
                                "occupation": users[3][r], "zip": users[4][r]}
                  for r, age in zip(u_rows, ages, strict=True)}
    item_table = {items[0][r]: {"genres": tuple(items[2][r].split()),
                                "year": _year(items[1][r], items[0][r])} for r in i_rows}
    rows = range(2, len(inter[0]) + 2)
    stamp = _to_float(inter[3], files["inter"], "timestamp", rows)
    rating = _to_float(inter[2], files["inter"], "rating", rows)
    order = np.argsort(stamp, kind="stable")  # as `movielens.load`: ties keep file order
    events = {
        "user_id": np.asarray(inter[0], dtype=object)[order],
        "item_id": np.asarray(inter[1], dtype=object)[order],
        "rating": rating[order].astype(np.int64),
        "timestamp": stamp[order].astype(np.int64),
    }
    return RawLog(events, user_table, item_table)


def age_index(age: np.ndarray) -> np.ndarray:
    """Index of each raw age's `AGE_GROUPS` bucket (1..7); 0 for an unknown age (<= 0)."""
    age = np.asarray(age)
    return np.where(age > 0, 1 + np.searchsorted(AGE_GROUPS[1:], age, side="right"), 0)
