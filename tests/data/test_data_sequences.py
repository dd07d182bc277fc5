"""build_sequences and behaviour_sequences on a hand-checked event log."""

import numpy as np

from lmn_tf.data.sequences import behaviour_sequences, build_sequences


def test_hand_checked_windows_and_sim_search():
    # Items 1..5; genre bitmasks: 1 -> A, 2 -> B, 3 -> A|B, 4 -> A, 5 -> B.
    mask = np.array([0, 0b01, 0b10, 0b11, 0b01, 0b10])
    user = np.array([1, 1, 2, 1, 1, 1, 2, 1])
    item = np.array([1, 2, 5, 3, 4, 5, 1, 4])
    label = np.array([1, 1, 1, 0, 1, 1, 1, 1])
    hist, sim = build_sequences(
        user, item, label, mask, seq_len=2, long_len=3, sim_len=2, progress=False
    )
    # user 1's positives in order: 1, 2, (3 is negative), 4, 5, 4
    np.testing.assert_array_equal(
        hist, [[0, 0], [1, 0], [0, 0], [1, 2], [1, 2], [2, 4], [5, 0], [4, 5]]
    )
    # sim: of the latest 3 earlier positives, the latest 2 sharing a genre with the target.
    np.testing.assert_array_equal(
        sim,
        [
            [0, 0],  # nothing earlier
            [0, 0],  # target 2 (B) vs [1 (A)]
            [0, 0],
            [1, 2],  # target 3 (A|B) vs [1, 2]
            [1, 0],  # target 4 (A) vs [1, 2]
            [2, 0],  # target 5 (B) vs [1, 2, 4]
            [0, 0],  # user 2: target 1 (A) vs [5 (B)]
            [4, 0],  # target 4 (A) vs window [2, 4, 5]: item 1 fell out of the long window
        ],
    )
    assert hist.dtype == np.int32 and sim.dtype == np.int32
    # With a 4-item window the last target (4, A) matches 1 and 4: sim_len=1 keeps the latest.
    _, sim = build_sequences(user, item, label, mask, 2, long_len=4, sim_len=1, progress=False)
    assert sim[-1, 0] == 4


def test_behaviour_sequences_carry_their_side_values():
    mask = np.array([0, 0b01, 0b10, 0b11, 0b01, 0b10])
    user = np.array([1, 1, 2, 1, 1, 1, 2, 1])
    item = np.array([1, 2, 5, 3, 4, 5, 1, 4])
    rating = np.array([5, 4, 4, 2, 4, 5, 4, 4])
    every = np.ones(8, bool)
    hist, hist_r, sim, sim_r = behaviour_sequences(
        user, item, rating, every, mask, seq_len=2, long_len=3, sim_len=2, progress=False)
    # user 1 rated 1 (5), 2 (4), 3 (2), 4 (4), 5 (5): the negative 3 now enters as well.
    np.testing.assert_array_equal(
        hist, [[0, 0], [1, 0], [0, 0], [1, 2], [2, 3], [3, 4], [5, 0], [4, 5]])
    np.testing.assert_array_equal(
        hist_r, [[0, 0], [5, 0], [0, 0], [5, 4], [4, 2], [2, 4], [4, 0], [4, 5]])
    # sim of the last event (4, A): window [3, 4, 5] -> 3 (A|B) and 4 (A) match.
    np.testing.assert_array_equal(sim[-1], [3, 4])
    np.testing.assert_array_equal(sim_r[-1], [2, 4])
    np.testing.assert_array_equal(sim_r > 0, sim > 0)
    # Positives only with zero side values is exactly build_sequences.
    old = build_sequences(user, item, rating >= 4, mask, 2, 3, 2, progress=False)
    new = behaviour_sequences(user, item, rating, rating >= 4, mask, 2, 3, 2, progress=False)
    np.testing.assert_array_equal(old[0], new[0])
    np.testing.assert_array_equal(old[1], new[2])
