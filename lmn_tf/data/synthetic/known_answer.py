"""What every synthetic task shares: the known answer, and side features without signal.

Every sample of a synthetic task stores ``TRUE_PROB``, the click probability its label was
drawn from, so a model's AUC can be set against the Bayes-optimal one (``expected_auc``).
Profile fields and item years are random unless a task says otherwise: sizes below.
"""

from __future__ import annotations

import numpy as np

TRUE_PROB = "true_prob"  # float64 (): the click probability each label was drawn from
GROUP = "group"  # int64 (): `spatial`'s latent group of the sample's user (not a feature)
USER_VOCAB = {"user_gender": 2, "user_age": 7, "user_occupation": 21, "user_zip": 100}
NUM_YEARS = 10  # random release years 1 .. NUM_YEARS


def expected_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """AUC of `scores` when sample i is positive with probability ``positive[i]``.

    With 0/1 labels as `positive` this is the ordinary AUC (ties count one half). With the
    true click probabilities it is the expected AUC over the label draws (as a ratio of
    expected pair counts, excluding self-pairs), and ``expected_auc(p, p)`` is the
    Bayes-optimal AUC: no scoring beats ranking by the true probability.

    Example:
        >>> expected_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        0.75
    """
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(positive, dtype=np.float64)
    _, inv = np.unique(s, return_inverse=True)
    pos = np.bincount(inv, weights=w)  # positive mass per distinct score
    neg = np.bincount(inv, weights=1.0 - w)
    below = np.cumsum(neg) - neg  # negative mass strictly below each score
    self_pairs = np.sum(w * (1.0 - w))  # a sample is never paired with itself
    num = np.sum(pos * (below + 0.5 * neg)) - 0.5 * self_pairs
    den = pos.sum() * neg.sum() - self_pairs
    return float(num / den)
