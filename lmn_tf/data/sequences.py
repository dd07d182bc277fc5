"""Behaviour sequences from an event log: the last-L window and SIM's hard search.

Both datasets (MovieLens and synthetic) hand this module their events already in global
chronological order; "earlier" means an earlier position in that order, so ties on the
timestamp are resolved by whatever stable order the caller chose. An event's own label never
enters its own sequences, nor does any later event.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

# Elements of one (chunk, window) matrix in the SIM search; bounds peak memory (~100 MB).
_CHUNK_ELEMENTS = 1 << 22


def build_sequences(
    user: np.ndarray,
    item: np.ndarray,
    label: np.ndarray,
    item_genre_mask: np.ndarray,
    seq_len: int,
    long_len: int,
    sim_len: int,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Builds each event's last-`seq_len` positive items and its SIM hard-search items.

    The positive-only special case of `behaviour_sequences` (every positive enters, no side
    field), kept for callers that only need item ids.

    Returns:
        `hist` (N, seq_len) and `sim` (N, sim_len) int32 item indices, as
        `behaviour_sequences`'s with ``enters = label == 1``.
    """
    hist, _, sim, _ = behaviour_sequences(
        user, item, np.zeros(len(item), np.int64), np.asarray(label) == 1, item_genre_mask,
        seq_len, long_len, sim_len, progress)
    return hist, sim


def behaviour_sequences(
    user: np.ndarray,
    item: np.ndarray,
    side: np.ndarray,
    enters: np.ndarray,
    item_genre_mask: np.ndarray,
    seq_len: int,
    long_len: int,
    sim_len: int,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each event's last-`seq_len` earlier behaviours and its SIM hard-search behaviours.

    A behaviour is an (item, side value) pair of one earlier event of the same user whose
    ``enters`` flag is set: e.g. every rated event with its rating (the feedback-aware
    sequence) or only the positives (the paper's setting).

    Args:
        user: (N,) user index of each event, events in global chronological order.
        item: (N,) item index (> 0) of each event.
        side: (N,) side value carried with each behaviour (e.g. the rating, > 0).
        enters: (N,) bool, whether the event enters later events' sequences.
        item_genre_mask: (num_items,) int64 bitmask of each item's genres.
        seq_len: length of the recent window (the paper's 50).
        long_len: how many of the latest earlier behaviours SIM searches (SIM's 1000).
        sim_len: how many matches SIM keeps (the most recent ones).
        progress: show a tqdm bar over the SIM search.

    Returns:
        `hist`, `hist_side` (N, seq_len) and `sim`, `sim_side` (N, sim_len) int32:
        chronological (oldest first), left-aligned, zero-padded on the right. `hist` holds
        the items of the user's entering events strictly before the event; `sim` those among
        the latest `long_len` of them that share at least one genre with the event's item;
        the `_side` arrays hold the side value at the same positions.
    """
    n = len(user)
    by_user = np.argsort(user, kind="stable")  # chronological within each user
    u, it = user[by_user], item[by_user]
    lab = np.asarray(enters)[by_user].astype(np.int64)
    seq_items = it[lab == 1]  # every user's behaviours, grouped by user, chronological
    seq_side = np.asarray(side)[by_user][lab == 1]
    # Exclusive cumsum: index into seq_items of the event's next behaviour, so the user's
    # earlier behaviours are seq_items[first behaviour of the user : end].
    end = np.cumsum(lab) - lab  # (N,)
    first = np.zeros(n, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])  # first event of each user
    first[starts] = end[starts]
    first = np.maximum.accumulate(first)  # carry each user's start forward
    count = end - first  # earlier behaviours of the event's user

    length = np.minimum(count, seq_len)
    hist = _last_window(seq_items, end, length, seq_len)
    hist_side = _last_window(seq_side, end, length, seq_len)

    seq_mask = item_genre_mask[seq_items]
    target_mask = item_genre_mask[it]
    width = np.minimum(count, long_len)  # searched window of each event
    sim = np.zeros((n, sim_len), dtype=np.int32)
    sim_side = np.zeros((n, sim_len), dtype=np.int32)
    order = np.argsort(width, kind="stable")  # similar widths share a chunk
    chunks = _chunks(width[order])
    for lo, hi in tqdm(chunks, desc="SIM hard search", unit="chunk", disable=not progress):
        rows = order[lo:hi]
        w = int(width[rows[-1]])
        if w == 0:
            continue
        idx = end[rows, None] - w + np.arange(w)  # (C, W) candidate positions
        valid = idx >= (end[rows] - width[rows])[:, None]
        idx = np.where(valid, idx, 0)
        match = valid & ((seq_mask[idx] & target_mask[rows, None]) != 0)  # (C, W)
        rank = np.cumsum(match, axis=1)  # matches up to and including each position
        total = rank[:, -1:]
        skip = np.maximum(total - sim_len, 0)  # older matches beyond the sim_len latest
        keep = match & (rank > skip)
        r, c = np.nonzero(keep)
        slot = (rank - skip - 1)[r, c]
        sim[rows[r], slot] = seq_items[idx[r, c]]
        sim_side[rows[r], slot] = seq_side[idx[r, c]]

    outs = []
    for a in (hist, hist_side, sim, sim_side):
        out = np.empty_like(a)
        out[by_user] = a
        outs.append(out)
    return tuple(outs)


def _last_window(values: np.ndarray, end: np.ndarray, length: np.ndarray, size: int) -> np.ndarray:
    """values[end - length : end] per row, left-aligned in a zero-padded (N, size) matrix."""
    k = np.arange(size)
    idx = (end - length)[:, None] + k  # (N, size)
    valid = k < length[:, None]
    out = np.where(valid, values[np.where(valid, idx, 0)] if len(values) else 0, 0)
    return out.astype(np.int32)


def _chunks(sorted_width: np.ndarray) -> list[tuple[int, int]]:
    """Splits rows (sorted by window width) so each chunk's matrix stays near the budget."""
    out, lo, n = [], 0, len(sorted_width)
    while lo < n:
        hi = min(n, lo + max(1, _CHUNK_ELEMENTS // max(1, int(sorted_width[lo]))))
        # Widths ascend, so the last row sets the matrix width: halve until it fits.
        while hi - lo > 1 and (hi - lo) * int(sorted_width[hi - 1]) > _CHUNK_ELEMENTS:
            hi = lo + (hi - lo) // 2
        out.append((lo, hi))
        lo = hi
    return out
