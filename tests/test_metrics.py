"""Detection metrics against hand computation."""
import itertools
import math

import numpy as np
import pytest

from causadv_lib import metrics as mt


def _auc_by_pairs(clean, adv):
    pairs = [(a > c) + 0.5 * (a == c) for a, c in itertools.product(adv, clean)]
    return sum(pairs) / len(pairs)


def test_auc_perfect_reversed_identical():
    assert mt.roc_auc([0, 1, 2], [3, 4, 5]) == 1.0
    assert mt.roc_auc([3, 4, 5], [0, 1, 2]) == 0.0
    assert mt.roc_auc([1, 2, 3], [1, 2, 3]) == 0.5
    assert mt.roc_auc([7, 7, 7], [7, 7]) == 0.5               # all tied


def test_auc_with_ties_is_the_pairwise_probability():
    clean, adv = [0, 1, 1, 2, 5], [1, 1, 3, 2, 0, 6]
    assert mt.roc_auc(clean, adv) == pytest.approx(_auc_by_pairs(clean, adv))
    rng = np.random.default_rng(0)
    c, a = rng.integers(0, 4, 30), rng.integers(1, 5, 25)      # integer scores: many ties (S1, S3, S4 scores)
    assert mt.roc_auc(c, a) == pytest.approx(_auc_by_pairs(c, a))


def test_roc_curve_end_points_and_area():
    clean, adv = [0.1, 0.4, 0.35, 0.8], [0.9, 0.4, 0.7]
    fpr, tpr = mt.roc_curve(clean, adv)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(mt.roc_auc(clean, adv))


def test_tpr_at_fpr_threshold_from_clean_only():
    clean = np.arange(100, dtype=float)                      # 0..99
    adv = np.array([94.5, 95, 96, 200, 10])
    tpr, t, realised = mt.tpr_at_fpr(clean, adv, fpr=0.05)
    assert t == 94.0                                         # 95..99 flagged: 5 of 100
    assert realised == 0.05
    assert tpr == pytest.approx(4 / 5)                       # 94.5, 95, 96, 200
    # the adversarial scores never move the threshold
    assert mt.tpr_at_fpr(clean, adv * 0 + 1000, fpr=0.05)[1] == t
    assert mt.clean_threshold(clean, 0.05) == t


def test_tpr_at_fpr_ties_keep_realised_fpr_below_target():
    clean = np.array([0] * 90 + [1] * 10, dtype=float)      # 10% of clean tie at the top
    tpr, t, realised = mt.tpr_at_fpr(clean, [1, 2, 0.5], fpr=0.05)
    assert t == 1.0 and realised == 0.0 <= 0.05
    assert tpr == pytest.approx(1 / 3)                       # only 2 > 1
    for fpr in (0.0, 0.01, 0.05, 0.1, 0.29, 0.5, 0.99, 1.0):
        rng = np.random.default_rng(int(fpr * 100))
        c = rng.integers(0, 6, 77).astype(float)
        _, t, realised = mt.tpr_at_fpr(c, [3.0], fpr=fpr)
        assert realised <= fpr
        assert realised == np.mean(c > t)
        # the threshold is the lowest that keeps the FPR: the next lower clean value would exceed it
        lower = c[c < t]
        if lower.size:
            assert np.mean(c > lower.max()) > fpr


def test_tpr_at_fpr_float_rounding_of_allowed_count():
    clean = np.arange(100, dtype=float)
    _, t, realised = mt.tpr_at_fpr(clean, [0.0], fpr=0.29)   # 0.29 * 100 = 28.999999999999996
    assert realised == pytest.approx(0.29) and t == 70.0


def test_fpr_one_and_zero():
    assert mt.tpr_at_fpr([1, 2, 3], [0, 5], fpr=1.0) == (1.0, -math.inf, 1.0)
    assert mt.tpr_at_fpr([1, 2, 3], [0, 5], fpr=0.0) == (0.5, 3.0, 0.0)


def test_empty_inputs():
    assert math.isnan(mt.roc_auc([], [1.0]))
    assert math.isnan(mt.roc_auc([1.0], []))
    assert all(math.isnan(v) for v in mt.tpr_at_fpr([], [1.0]))
    tpr, t, realised = mt.tpr_at_fpr([1.0, 2.0], [])
    assert math.isnan(tpr) and t == 2.0 and realised == 0.0
    with pytest.raises(ValueError, match="roc_curve: needs clean and adversarial"):
        mt.roc_curve([], [1.0])
    row = mt.detection_row([1.0, 2.0], [])
    assert row["n_adv"] == 0 and math.isnan(row["auc"]) and math.isnan(row["tpr_at_5fpr"])
    assert math.isnan(mt.attack_success_rate([]))


def test_nan_scores_refused_or_omitted():
    with pytest.raises(ValueError, match="adv_scores: 1 NaN score"):
        mt.roc_auc([0, 1], [2, np.nan])
    assert mt.roc_auc([0, 1], [2, np.nan], nan_policy="omit") == 1.0
    row = mt.detection_row([0, 1, np.nan], [2, np.nan], nan_policy="omit")
    assert (row["n_clean"], row["n_adv"], row["auc"]) == (2, 1, 1.0)
    with pytest.raises(ValueError, match="infinite"):
        mt.roc_auc([0, np.inf], [1])
    with pytest.raises(ValueError, match="nan_policy"):
        mt.roc_auc([0], [1], nan_policy="drop")
    with pytest.raises(ValueError, match="clean_scores: expected a 1-D"):
        mt.roc_auc([[0, 1]], [1])
    with pytest.raises(ValueError, match="fpr: expected a rate"):
        mt.tpr_at_fpr([0], [1], fpr=5)


def test_detection_row():
    row = mt.detection_row(np.arange(20.0), np.arange(10.0, 30.0))
    assert set(row) == {"auc", "tpr_at_5fpr", "threshold", "realised_fpr", "n_clean", "n_adv"}
    assert row["auc"] == pytest.approx(_auc_by_pairs(np.arange(20.0), np.arange(10.0, 30.0)))
    assert row["threshold"] == 18.0 and row["realised_fpr"] == 0.05
    assert row["tpr_at_5fpr"] == pytest.approx(11 / 20)      # 19..29
    assert (row["n_clean"], row["n_adv"]) == (20, 20)
    assert "tpr_at_1fpr" in mt.detection_row([0.0], [1.0], fpr=0.01)


def test_attack_success_rate():
    assert mt.attack_success_rate([True, False, True, True]) == 0.75
    assert mt.attack_success_rate(np.array([1, 0])) == 0.5
    with pytest.raises(ValueError, match="success: expected booleans"):
        mt.attack_success_rate([0.3, 1.0])


def test_two_sided_score():
    clean = np.arange(1.0, 100.0)                            # 1..99, median 50
    s = mt.clean_tail_score(clean, [50.0, 25.0, 75.0, -1e9, 1e9, np.nan])
    assert s[0] == 0.0
    assert s[1] == pytest.approx(s[2])                       # symmetric tails
    assert 0 < s[1] < s[3] and s[3] == s[4] < 1
    assert np.isnan(s[5])
    # scale-free: only the clean ranks matter
    assert np.allclose(mt.clean_tail_score(clean * 10 - 3, [497.0, -1e9]), s[[0, 3]])
    # both tails of the clean distribution are detected: AUC of a two-sided shift
    rng = np.random.default_rng(0)
    ref, c = rng.normal(size=500), rng.normal(size=200)
    adv = np.r_[rng.normal(-4, 1, 100), rng.normal(4, 1, 100)]
    assert mt.roc_auc(mt.clean_tail_score(ref, c), mt.clean_tail_score(ref, adv)) > 0.95
    assert mt.roc_auc(c, adv) == pytest.approx(0.5, abs=0.1)
    with pytest.raises(ValueError, match="clean_scores: empty"):
        mt.clean_tail_score([], [1.0])


def test_clean_cdf_is_the_mid_rank_cdf_and_the_two_sided_score_folds_it():
    clean = np.array([1.0, 2.0, 2.0, 3.0])
    F = mt.clean_cdf(clean, [0.0, 2.0, 9.0, np.nan])
    np.testing.assert_allclose(F[:3], [0.5 / 5, (1 + 1 + 0.5) / 5, 4.5 / 5])   # ties count half
    assert np.isnan(F[3])
    x = np.array([-3.0, 1.5, 2.0, 7.0])
    np.testing.assert_allclose(mt.clean_tail_score(clean, x),
                               1 - 2 * np.minimum(mt.clean_cdf(clean, x), 1 - mt.clean_cdf(clean, x)))
    with pytest.raises(ValueError, match="clean_scores: empty"):
        mt.clean_cdf([], [1.0])


def test_bootstrap_ci_brackets_the_estimate():
    rng = np.random.default_rng(3)
    c, a = rng.normal(size=60), rng.normal(1, 1, 60)
    lo, hi = mt.bootstrap_interval(c, a, n_boot=200, seed=1)
    assert lo < mt.roc_auc(c, a) < hi
    assert (lo, hi) == mt.bootstrap_interval(c, a, n_boot=200, seed=1)
