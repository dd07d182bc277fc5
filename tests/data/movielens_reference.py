"""An independent, plain-Python reading of the MovieLens files for the data tests.

Deliberately shares no code with `lmn_tf.data.movielens` beyond locating the files.
"""

import functools

from lmn_tf.data.movielens import data_files


def _rows(path):
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f]
    header = [h.split(":")[0] for h in lines[0].split("\t")]
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:] if line]


@functools.cache
def reference(dataset):
    """Events in (timestamp, file line) order, with 1-based user/item indices in file order."""
    files = data_files(dataset)
    users, items = {}, {}
    for row in _rows(files["user"]):
        users.setdefault(row["user_id"], len(users) + 1)
    return _events(files, users, items)


@functools.cache
def profiles(dataset):
    """user index -> (age group, gender, occupation) as raw tokens (ages grouped like ML-1M)."""
    files = data_files(dataset)
    seen = {}
    for row in _rows(files["user"]):
        age = float(row["age"])
        group = sum(age >= b for b in (18, 25, 35, 45, 50, 56))
        seen.setdefault(row["user_id"], (group, row["gender"], row["occupation"]))
    return dict(enumerate(seen.values(), start=1))


def _events(files, users, items):
    genres = {}
    for row in _rows(files["item"]):
        if row["item_id"] not in items:
            items[row["item_id"]] = len(items) + 1
            genres[items[row["item_id"]]] = set((row.get("genre") or row["class"]).split())
    events = [
        (float(r["timestamp"]), line, users[r["user_id"]], items[r["item_id"]], float(r["rating"]))
        for line, r in enumerate(_rows(files["inter"]))
    ]
    events.sort(key=lambda e: (e[0], e[1]))
    return events, genres, len(users), len(items)


def expected_sequences(dataset, positions, seq_len=50, long_len=1000, history="rated"):
    """(hist, hist ratings, sim, sim ratings) lists (unpadded) of the events at the given
    global positions; history "rated" keeps every earlier rating, "positive" those >= 4."""
    events, genres, _, _ = reference(dataset)
    wanted = set(positions)
    by_user, out = {}, {}
    for pos, (_, _, user, item, rating) in enumerate(events):
        earlier = by_user.setdefault(user, [])  # (item, rating) pairs
        if pos in wanted:
            hist = earlier[-seq_len:]
            sim = [x for x in earlier[-long_len:] if genres[x[0]] & genres[item]][-seq_len:]
            out[pos] = ([x[0] for x in hist], [x[1] for x in hist],
                        [x[0] for x in sim], [x[1] for x in sim])
        if history == "rated" or rating >= 4:
            earlier.append((item, int(rating)))  # only after the event's own features are taken
    return out
