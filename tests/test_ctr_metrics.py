"""AUC, LogLoss and RelaImpr against hand-computed values."""

import math

import numpy as np
import pytest

from lmn_tf.ctr_metrics import auc, log_loss, paired_t_test, rela_impr
from lmn_tf.data.synthetic import expected_auc


def test_auc_four_examples_by_hand():
    # Positives 0.35 and 0.8 vs negatives 0.1 and 0.4: 0.35 beats 0.1 only, 0.8 beats both.
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75


def test_auc_ties_count_half():
    # Positive 0.5 ties both negatives (½ + ½), positive 0.9 beats both: 3 of 4 pairs.
    assert auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.9])) == 0.75
    assert auc(np.array([0, 1]), np.array([0.3, 0.3])) == 0.5


def test_auc_matches_pair_counting_on_random_data():
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 300), np.round(rng.normal(size=300), 1)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert auc(y, s) == pytest.approx(pairs, abs=1e-12)
    assert auc(y, s) == pytest.approx(expected_auc(s, y), abs=1e-12)


def test_auc_needs_both_classes_and_binary_labels():
    with pytest.raises(ValueError, match="both classes"):
        auc(np.array([1, 1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="0/1"):
        auc(np.array([0, 2]), np.array([0.1, 0.2]))


def test_log_loss_by_hand():
    assert log_loss(np.array([1, 0]), np.array([0.8, 0.3])) == pytest.approx(
        -(math.log(0.8) + math.log(0.7)) / 2)
    assert np.isfinite(log_loss(np.array([1]), np.array([0.0])))  # clipped


def test_rela_impr_arithmetic():
    # The paper's Table 1: LMN 0.7371 vs Base 0.7265 -> (0.2371 / 0.2265) - 1 = +4.68%.
    assert rela_impr(0.7371, 0.7265) == pytest.approx(0.2371 / 0.2265 - 1)
    assert round(100 * rela_impr(0.7371, 0.7265), 2) == 4.68
    assert rela_impr(0.75, 0.75) == 0.0
    assert rela_impr(0.6, 0.7) == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        rela_impr(0.7, 0.5)


@pytest.mark.parametrize("dof,critical", [(1, 12.7062047), (2, 4.3026527), (3, 3.1824463),
                                          (4, 2.7764451), (5, 2.5705818), (10, 2.2281389)])
def test_paired_t_test_p_is_005_at_the_table_critical_values(dof, critical):
    # Differences with mean 0 and std 1, shifted so that t equals the two-sided 5% value.
    d = np.random.default_rng(dof).normal(size=dof + 1)
    d = (d - d.mean()) / d.std(ddof=1) + critical / math.sqrt(dof + 1)
    t, p = paired_t_test(d + 0.8, np.full(dof + 1, 0.8))
    assert t == pytest.approx(critical, rel=1e-9)
    assert p == pytest.approx(0.05, abs=1e-7)


def test_paired_t_test_by_hand_and_sign():
    # d = (0.01, 0.02, 0.00): mean 0.01, std 0.01, t = sqrt(3); df 2: p = 1 - sin(atan(t/sqrt 2))
    t, p = paired_t_test([0.81, 0.82, 0.80], [0.80, 0.80, 0.80])
    assert t == pytest.approx(math.sqrt(3))
    assert p == pytest.approx(1 - math.sin(math.atan(math.sqrt(3 / 2))))
    t2, p2 = paired_t_test([0.80, 0.80, 0.80], [0.81, 0.82, 0.80])
    assert (t2, p2) == pytest.approx((-t, p))


def test_paired_t_test_rejects_bad_input():
    with pytest.raises(ValueError, match=">= 2 values"):
        paired_t_test([0.8], [0.7])
    with pytest.raises(ValueError, match="shapes"):
        paired_t_test([0.8, 0.7], [0.7, 0.6, 0.5])
    with pytest.raises(ValueError, match="undefined"):
        paired_t_test([1.0, 2.0], [0.0, 1.0])
