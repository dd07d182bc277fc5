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

    Args:
        user: (N,) user index of each event, events in global chronological order.
        item: (N,) item index (> 0) of each event.
        label: (N,) 1 for a positive event, 0 otherwise.
        item_genre_mask: (num_items,) int64 bitmask of each item's genres.
        seq_len: length of the recent window (the paper's 50).
        long_len: how many of the latest earlier positives SIM searches (SIM's 1000).
        sim_len: how many matches SIM keeps (the most recent ones).
        progress: show a tqdm bar over the SIM search.

    Returns:
        `hist` (N, seq_len) and `sim` (N, sim_len) int32 item indices: chronological (oldest
        first), left-aligned, zero-padded on the right. `hist` holds the user's positive items
        strictly before the event; `sim` those among the latest `long_len` of them that share
        at least one genre with the event's item.
    """
    n = len(user)
    by_user = np.argsort(user, kind="stable")  # chronological within each user
    u, it, lab = user[by_user], item[by_user], label[by_user].astype(np.int64)
    pos_items = it[lab == 1]  # every user's positives, grouped by user, chronological
    # Exclusive cumsum: index into pos_items of the event's next positive, so the user's
    # earlier positives are pos_items[first positive of the user : end].
    end = np.cumsum(lab) - lab  # (N,)
    first = np.zeros(n, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])  # first event of each user
    first[starts] = end[starts]
    first = np.maximum.accumulate(first)  # carry each user's start forward
    count = end - first  # earlier positives of the event's user

    hist = _last_window(pos_items, end, np.minimum(count, seq_len), seq_len)

    pos_mask = item_genre_mask[pos_items]
    target_mask = item_genre_mask[it]
    width = np.minimum(count, long_len)  # searched window of each event
    sim = np.zeros((n, sim_len), dtype=np.int32)
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
        match = valid & ((pos_mask[idx] & target_mask[rows, None]) != 0)  # (C, W)
        rank = np.cumsum(match, axis=1)  # matches up to and including each position
        total = rank[:, -1:]
        skip = np.maximum(total - sim_len, 0)  # older matches beyond the sim_len latest
        keep = match & (rank > skip)
        r, c = np.nonzero(keep)
        sim[rows[r], (rank - skip - 1)[r, c]] = pos_items[idx[r, c]]

    out_hist = np.empty_like(hist)
    out_sim = np.empty_like(sim)
    out_hist[by_user] = hist
    out_sim[by_user] = sim
    return out_hist, out_sim


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
