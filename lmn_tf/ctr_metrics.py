"""Offline CTR metrics: exact AUC, LogLoss, RelaImpr, a paired t-test, batch prediction, and
a model's metrics on eval arrays (`evaluate_arrays`).

AUC here is exact (rank statistic, ties count one half) rather than Keras' thresholded
approximation, so tables are comparable to the fourth decimal.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lmn_tf import data as lmn_data
from lmn_tf.data import schema


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties ½.

    Raises:
        ValueError: if the labels are not all 0/1 or one class is missing.

    Example:
    >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0/1. Received: labels={np.unique(y)[:10]}")
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if pos == 0 or neg == 0:
        raise ValueError(f"AUC needs both classes. Received: {pos} positives, {neg} negatives")
    r = ranks(s)
    return float((r[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` in ascending order, tied values sharing their average rank
    (the ranks of AUC's rank statistic and of Spearman's rho).

    Example:
    >>> ranks(np.array([0.3, 0.1, 0.3]))
    array([2.5, 1. , 2.5])
    """
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inv]


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities ``probs`` (clipped to [eps, 1 - eps]).

    Example:
    >>> round(log_loss(np.array([1, 0]), np.array([0.5, 0.5])), 6)
    0.693147
    """
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def rela_impr(auc_model: float, auc_base: float) -> float:
    """RelaImpr (Yan et al. 2014) = (AUC_model - 0.5) / (AUC_base - 0.5) - 1, as a fraction.

    Raises:
        ValueError: if ``auc_base`` is 0.5 (a random base has no relative scale).

    Example:
    >>> round(rela_impr(0.7371, 0.7265), 4)  # the paper's LMN vs Base: +4.68%
    0.0468
    """
    if auc_base == 0.5:
        raise ValueError("RelaImpr is undefined for a base AUC of 0.5. Received: auc_base=0.5")
    return (auc_model - 0.5) / (auc_base - 0.5) - 1.0


def paired_t_test(a, b) -> tuple[float, float]:
    """(t, two-sided p) of the paired t-test of ``a`` against ``b`` (e.g. AUCs by seed).

    ``t = mean(d) / (std(d, ddof=1) / sqrt(n))`` with ``d = a - b``, and ``p = P(|T| >= |t|)``
    for Student's t with ``n - 1`` degrees of freedom, from the closed forms for integer
    degrees of freedom (Abramowitz & Stegun 26.7.3-4): exact, no SciPy needed.

    Raises:
        ValueError: fewer than 2 pairs, unequal lengths, or every difference equal (no
            spread to test against).

    Example:
    >>> t, p = paired_t_test([0.81, 0.82, 0.80], [0.80, 0.80, 0.80])
    >>> round(t, 4), round(p, 4)
    (1.7321, 0.2254)
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1 or len(d) < 2 or np.shape(a) != np.shape(b):
        raise ValueError("paired_t_test needs two equally long 1-D sequences of >= 2 values. "
                         f"Received: shapes {np.shape(a)} and {np.shape(b)}")
    sd = d.std(ddof=1)
    if sd == 0:
        raise ValueError(f"Every paired difference is {d[0]!r}: the t statistic is undefined")
    t, dof = d.mean() / (sd / np.sqrt(len(d))), len(d) - 1
    theta = np.arctan(abs(t) / np.sqrt(dof))
    c2, term, total = np.cos(theta) ** 2, 1.0, 0.0
    if dof % 2:  # odd: (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2.4/(3.5) cos^4 + ...))
        for j in range(1, (dof - 1) // 2 + 1):
            total, term = total + term, term * c2 * 2 * j / (2 * j + 1)
        inside = 2 / np.pi * (theta + np.sin(theta) * np.cos(theta) * total)
    else:  # even: sin (1 + 1/2 cos^2 + 1.3/(2.4) cos^4 + ...)
        for j in range(1, dof // 2 + 1):
            total, term = total + term, term * c2 * (2 * j - 1) / (2 * j)
        inside = np.sin(theta) * total
    return float(t), float(min(1.0, max(0.0, 1.0 - inside)))


def predict(model: tf.keras.Model, dataset: tf.data.Dataset,
            verbose: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(labels, logits) of every example of ``dataset`` (dicts with ``schema.LABEL``)."""
    step = tf.function(lambda batch: model(batch, training=False))
    labels, logits = [], []
    n = int(dataset.cardinality())
    bar = tf.keras.utils.Progbar(n if n > 0 else None, verbose=verbose, unit_name="batch")
    for i, batch in enumerate(dataset):
        logits.append(step(batch).numpy().reshape(-1))
        labels.append(batch[schema.LABEL].numpy().reshape(-1))
        bar.update(i + 1)
    return np.concatenate(labels), np.concatenate(logits)


def score(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """{"auc", "logloss", "n"} of logits against 0/1 labels."""
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return {"auc": auc(labels, logits), "logloss": log_loss(labels, probs), "n": len(labels)}


def evaluate_arrays(model, eval_arrays: dict[str, np.ndarray], batch_size: int = 4096,
                    verbose: int = 1, warm_users: np.ndarray | None = None) -> dict:
    """AUC / LogLoss (and, on synthetic data, the oracle's) of ``model`` on eval arrays.

    With ``warm_users`` (the user ids of the training window) also the AUC on warm users'
    events ("auc_warm") and on cold users' ("auc_cold"), and the warm share of events.
    """
    ds = lmn_data.make_dataset(eval_arrays, batch_size)
    labels, logits = predict(model, ds, verbose=verbose)
    metrics = score(labels, logits)
    if warm_users is not None:
        warm = np.isin(eval_arrays["user_id"], warm_users)
        metrics["warm_share"] = float(warm.mean())
        for name, mask in (("auc_warm", warm), ("auc_cold", ~warm)):
            if 0 < labels[mask].sum() < mask.sum():  # AUC needs both labels
                metrics[name] = auc(labels[mask], logits[mask])
    if "true_prob" in eval_arrays:
        from lmn_tf.data.synthetic import expected_auc

        p = eval_arrays["true_prob"]
        metrics["oracle_auc"] = expected_auc(p, eval_arrays[schema.LABEL])
        metrics["bayes_auc"] = expected_auc(p, p)
    return metrics
