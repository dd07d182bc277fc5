"""The raw token of every vocabulary index: raw features <-> the models' index features.

A `Vocabulary` lists, for each index feature, the raw value of every index (index 0, the
padding / out-of-vocabulary row, has the blank value ``""``, or 0 for decades). The export
puts it into the SavedModel as lookup tables (`lmn_tf.export.raw_inputs`), so a serving
caller sends `lmn_tf.data.raw.RAW_FEATURES` and the graph computes the indices the model was
trained on. `to_indices` is the same mapping in NumPy (the graph's reference), `to_raw` its
inverse for data the pipeline already holds as indices.

A blank entry at an index > 0 means "not in the vocabulary": `restricted` blanks every index
that never occurs in the training arrays, so an id first seen after training maps to the
unknown row 0, like any id the dataset never listed.

Mapping rules (raw -> index): ids, gender, occupation and genres by exact string; zip by its
first 3 characters after stripping whitespace; age by `lmn_tf.data.raw.age_index`; release
year by its decade (year // 10; a year <= 0 is unknown). In a sequence, an id outside the
vocabulary becomes 0 (padding, masked by every model) and its rating 0 with it; a rating
outside 1..5 is 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from lmn_tf.data.movielens import AGE_GROUPS
from lmn_tf.data.raw import PADDING, RAW_FEATURES, RawLog, age_index
from lmn_tf.data.schema import NUM_RATINGS, RATINGS_OF, Vocab

# index feature -> the table its values index
TABLE_OF = {"user_id": "users", "user_gender": "genders", "user_occupation": "occupations",
            "user_zip": "zips", "item_id": "items", "item_genres": "genres",
            "item_year": "decades", "hist_item_ids": "items", "sim_item_ids": "items"}
ZIP_PREFIX = 3  # characters of the zip code the model reads
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # identity zips
_SIZES = {"users": "num_users", "items": "num_items", "genders": "num_genders",
          "occupations": "num_occupations", "zips": "num_zips", "genres": "num_genres",
          "decades": "num_years"}


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Raw value of every index of each table; ``""`` (decades: 0) = not in the vocabulary.

    Attributes:
        users, items, genders, occupations, zips, genres: raw strings (``zips``: 3-character
            prefixes), entry k for index k, entry 0 blank.
        decades: release decade of each year index (199 = the 1990s), entry 0 = 0.
    """

    users: tuple[str, ...]
    items: tuple[str, ...]
    genders: tuple[str, ...]
    occupations: tuple[str, ...]
    zips: tuple[str, ...]
    genres: tuple[str, ...]
    decades: tuple[int, ...]

    def tables(self) -> dict[str, tuple]:
        """Table name -> its raw values (index k -> entry k)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def check(self, vocab: Vocab | Mapping[str, int]) -> None:
        """Raises ``ValueError`` unless every table has the model's vocabulary size.

        Also refuses duplicate non-blank values (one raw value must have one index) and
        values a lookup file cannot hold (tabs, newlines).
        """
        vocab = _as_vocab(vocab)
        for table, values in self.tables().items():
            size = getattr(vocab, _SIZES[table])
            if len(values) != size:
                raise ValueError(f"the vocabulary's {table} table has {len(values)} entries, "
                                 f"the model's vocabulary {size}. Received: {table} of length "
                                 f"{len(values)}, {_SIZES[table]}={size}")
            kept = [v for v in values[1:] if v not in (PADDING, 0)]
            if len(set(kept)) != len(kept):
                raise ValueError(f"the vocabulary's {table} table lists a value twice")
            if table != "decades" and any(("\t" in v) or ("\n" in v) for v in kept):
                raise ValueError(f"the vocabulary's {table} table holds a tab or a newline")

    @classmethod
    def identity(cls, vocab: Vocab | Mapping[str, int]) -> Vocabulary:
        """Raw values that spell the indices: id k is ``str(k)``, zip k its 3 base-62 digits
        (``"001"``, ... ``"00z"``, ``"010"``; the model reads 3 characters of a zip), year
        index k the decade k (year 10·k). For data without raw ids (synthetic, tests).

        Raises:
            ValueError: more than 62³ zip indices, or an age vocabulary other than
                `AGE_GROUPS`'.

        Example:
            >>> Vocabulary.identity(Vocab(3, 4, 3, 8, 22, 100, 19, 10)).items
            ('', '1', '2', '3')
        """
        vocab = _as_vocab(vocab)
        if vocab.num_zips > len(_DIGITS) ** ZIP_PREFIX:
            raise ValueError(f"an identity vocabulary holds at most "
                             f"{len(_DIGITS) ** ZIP_PREFIX} zip prefixes. "
                             f"Received: num_zips={vocab.num_zips}")
        if vocab.num_ages != len(AGE_GROUPS) + 1:
            raise ValueError(f"ages are bucketed into {len(AGE_GROUPS)} groups. Received: "
                             f"num_ages={vocab.num_ages}")

        def spelled(n: int, spell=str) -> tuple[str, ...]:
            return (PADDING, *(spell(k) for k in range(1, n)))

        def base62(k: int) -> str:
            return "".join(_DIGITS[k // len(_DIGITS) ** p % len(_DIGITS)]
                           for p in reversed(range(ZIP_PREFIX)))

        return cls(users=spelled(vocab.num_users), items=spelled(vocab.num_items),
                   genders=spelled(vocab.num_genders),
                   occupations=spelled(vocab.num_occupations),
                   zips=spelled(vocab.num_zips, base62), genres=spelled(vocab.num_genres),
                   decades=tuple(range(vocab.num_years)))

    @classmethod
    def from_log(cls, log: RawLog) -> Vocabulary:
        """The index vocabularies `lmn_tf.data.movielens.load` builds from the same files.

        Users and movies in file order (first occurrence); genders, occupations, zip
        prefixes and genres as sorted strings; decades sorted. Every listed entity, as in
        ``load``: `restricted` narrows it to the training period.

        Example:
            >>> from lmn_tf.data.raw import read_log
            >>> Vocabulary.from_log(read_log("ml-100k")).genders
            ('', 'F', 'M')
        """
        users, items = log.users.values(), log.items.values()

        def sorted_(values) -> tuple[str, ...]:
            return (PADDING, *sorted(set(values)))

        years = [it["year"] for it in items]
        return cls(users=(PADDING, *log.users), items=(PADDING, *log.items),
                   genders=sorted_(u["gender"] for u in users),
                   occupations=sorted_(u["occupation"] for u in users),
                   zips=sorted_(u["zip"].strip()[:ZIP_PREFIX] for u in users),
                   genres=sorted_(g for it in items for g in it["genres"]),
                   decades=(0, *sorted({y // 10 for y in years if y > 0})))

    def restricted(self, arrays: Mapping[str, np.ndarray]) -> Vocabulary:
        """This vocabulary with every index that never occurs in ``arrays`` blanked.

        Args:
            arrays: index features (`schema.FEATURES`) of the training period.

        Returns:
            A `Vocabulary` that maps ids first seen after that period to index 0.
        """
        seen: dict[str, set[int]] = {t: set() for t in self.tables()}
        for name, table in TABLE_OF.items():
            seen[table].update(np.unique(np.asarray(arrays[name])).tolist())
        out = {}
        for table, values in self.tables().items():
            blank = 0 if table == "decades" else PADDING
            out[table] = tuple(v if k in seen[table] and k > 0 else blank
                               for k, v in enumerate(values))
        return Vocabulary(**out)

    def to_raw(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Index features -> `RAW_FEATURES` (blank values where an index is not listed).

        Ages become their group's lower bound and year indices the decade's first year, so
        `to_indices` maps them back to the same indices.

        Raises:
            KeyError: a missing feature.
            ValueError: an index beyond its table.

        Example:
            >>> from lmn_tf.data.random_batches import random_arrays
            >>> v = Vocab(10, 20, 3, 8, 22, 100, 19, 10)
            >>> x = random_arrays(v, 2)
            >>> voc = Vocabulary.identity(v)
            >>> back = voc.to_indices(voc.to_raw(x))
            >>> all(np.array_equal(back[k], x[k]) for k in back)
            True
        """
        out = {}
        for name, (dtype, _) in RAW_FEATURES.items():
            x = np.asarray(arrays[name])
            if name in TABLE_OF:
                table = TABLE_OF[name]
                values = np.asarray(getattr(self, table), dtype=object)
                if x.size and (x.min() < 0 or x.max() >= len(values)):
                    raise ValueError(f"{name} indices must be in [0, {len(values)}). "
                                     f"Received: range {x.min()}..{x.max()}")
                raw = values[x]
                if table == "decades":
                    raw = np.where(x > 0, 10 * raw.astype(np.int64), 0)
                out[name] = raw.astype(object if dtype == "string" else dtype)
            elif name == "user_age":
                groups = np.asarray((0, *AGE_GROUPS))
                out[name] = groups[x].astype(dtype)
            else:
                out[name] = x.astype(dtype)
        return out

    def to_indices(self, raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`RAW_FEATURES` -> index features (`schema.FEATURES`), by the module's rules.

        What the export's lookup tables compute in the graph; an unknown value maps to 0.

        Raises:
            KeyError: a missing input.
        """
        out: dict[str, np.ndarray] = {}
        for name, (dtype, _) in RAW_FEATURES.items():
            x = np.asarray(raw[name])
            if name in TABLE_OF:
                table = TABLE_OF[name]
                values = getattr(self, table)
                if table == "decades":
                    index = {d: k for k, d in enumerate(values) if k > 0 and d != 0}
                    keys = np.where(x > 0, x // 10, 0)
                else:
                    index = {v: k for k, v in enumerate(values) if k > 0 and v != PADDING}
                    keys = np.vectorize(_text, otypes=[object])(x) if x.size else x
                    if table == "zips":
                        keys = np.vectorize(lambda z: z.strip()[:ZIP_PREFIX],
                                            otypes=[object])(keys) if x.size else x
                flat = [index.get(k, 0) for k in np.ravel(keys).tolist()]
                out[name] = np.asarray(flat, np.int32).reshape(x.shape)
            elif name == "user_age":
                out[name] = age_index(x).astype(np.int32)
            else:
                out[name] = x.astype(dtype)
        for seq, side in RATINGS_OF.items():
            r = out[side]
            out[side] = np.where((out[seq] != 0) & (r >= 1) & (r < NUM_RATINGS), r, 0).astype(
                np.int32)
        return out


def _as_vocab(vocab: Vocab | Mapping[str, int]) -> Vocab:
    # Keras layers keep a model's vocabulary as a plain dict of sizes.
    return vocab if isinstance(vocab, Vocab) else Vocab(**{k: int(v) for k, v in vocab.items()})


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
