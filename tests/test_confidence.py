"""Confidence baselines on hand-made logits (saturated ones included), binned AUC, two-sided scores,
the grouped bootstrap and the cross-validated logistic comparison on synthetic data with a known answer."""
import itertools
import math

import numpy as np
import pytest

from causadv_lib import config, logprob
from causadv_lib import confidence as cf
from causadv_lib import metrics as mt
from causadv_lib.analysis import confidence as ac
from causadv_lib.vocab import CLEAN


def _softmax64(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _softmax32(z):
    z = np.asarray(z, np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True, dtype=np.float32)


# ------------------------------------------------------------------------------------- scores
def test_scores_match_the_textbook_formulas_on_moderate_logits():
    z = np.array([[2.0, 1.0, 0.0], [0.3, 0.2, -1.0], [1.0, 1.0, 1.0], [-3.0, 4.0, 0.5]])
    p = _softmax64(z)
    assert np.allclose(cf.msp(z), p.max(axis=1), rtol=1e-12)
    assert np.allclose(cf.log_msp(z), np.log(p.max(axis=1)), rtol=1e-12)
    assert np.allclose(cf.msp_score(z), np.log(1 - p.max(axis=1)), rtol=1e-12)
    srt = np.sort(z, axis=1)
    assert np.allclose(cf.margin(z), srt[:, -1] - srt[:, -2])
    assert np.allclose(cf.margin_score(z), -(srt[:, -1] - srt[:, -2]))
    h = -(p * np.log(p)).sum(axis=1)
    assert np.allclose(cf.entropy(z), h, rtol=1e-12)
    assert np.allclose(cf.entropy_score(z), np.log(h), rtol=1e-12)
    assert cf.entropy(z)[2] == pytest.approx(math.log(3))      # uniform: log C, margin 0
    assert cf.margin(z)[2] == 0.0


def test_saturated_logits_where_float32_softmax_gives_exactly_one():
    z = np.array([[20.0, 0, 0, 0], [30.0, 0, 0, 0], [60.0, 1.0, 0, 0], [800.0, 0, 0, 0]], np.float32)
    assert (_softmax32(z).max(axis=1) == 1.0).all()            # float32 MSP cannot tell these rows apart
    s = cf.msp_score(z)
    assert np.isfinite(s).all()
    # log(1 - p_max) = a - log1p(e^a), a = log(sum_{j != top} e^{z_j - z_top}) = log(3) - 20 etc.
    exact = lambda a: a - math.log1p(math.exp(a))  # noqa: E731
    assert s[0] == pytest.approx(exact(math.log(3) - 20), rel=1e-12)
    assert s[1] == pytest.approx(exact(math.log(3) - 30), rel=1e-12)
    assert s[2] == pytest.approx(exact(math.log(math.exp(-59) + 2 * math.exp(-60))), rel=1e-12)
    assert s[3] == pytest.approx(math.log(3) - 800, rel=1e-12)  # 1 - p_max = 3e^-800 underflows float64: exact
    assert list(np.argsort(s)) == [3, 2, 1, 0]                 # less confident = larger score
    le = cf.entropy_score(z)
    assert np.isfinite(le).all() and list(np.argsort(le)) == [3, 2, 1, 0]
    # H ~ sum_j e^{d_j} (1 - d_j) for saturated rows: row 0, d = -20 three times
    assert le[0] == pytest.approx(math.log(3 * math.exp(-20) * 21), rel=1e-6)
    assert cf.log_msp(z)[1] == pytest.approx(-3 * math.exp(-30), rel=1e-9)   # not 0: exact log p_max
    assert np.array_equal(cf.margin(z), [20.0, 30.0, 59.0, 800.0])


def test_scores_dict_features_and_direction():
    z = np.array([[5.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    sc = cf.scores(z)
    assert list(sc) == list(cf.SCORES) == ["msp", "margin", "entropy"]
    for name, s in sc.items():                                 # less confident rows score higher
        assert s[0] < s[1] < s[2], name
    f = cf.features(z)
    assert f.shape == (3, 3) and np.array_equal(f[:, 1], sc["margin"])
    assert cf.features(np.zeros((0, 4), np.float32)).shape == (0, 3)


def test_score_input_checks():
    with pytest.raises(ValueError, match="2-D"):
        cf.msp_score(np.zeros(3))
    with pytest.raises(ValueError, match="C >= 2"):
        cf.msp_score(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="non-finite"):
        cf.margin(np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match="floating"):
        cf.entropy(np.array([[1, 0]]))


def test_ties_at_the_top_are_half_mass():
    z = np.array([[3.0, 3.0, -np.float64(40)]])
    assert cf.msp(z)[0] == pytest.approx(0.5, rel=1e-12)
    assert cf.margin(z)[0] == 0.0
    assert cf.entropy(z)[0] == pytest.approx(math.log(2), rel=1e-9)


# --------------------------------------------------------------------------------- binned AUC
def test_binned_auc_rows_counts_and_nan_for_one_sided_bins():
    clean = np.array([0.0, 1.0, 2.0, 3.0])
    adv = np.array([5.0, 6.0, 0.5, 0.2])
    clean_by = np.array([0.1, 0.2, 0.8, 0.9])
    adv_by = np.array([0.15, 0.25, 0.3, 0.35])
    rows = mt.binned_auc(clean, adv, clean_by, adv_by, n_bins=2)
    # pooled by: 0.1 .15 .2 .25 .3 .35 .8 .9 -> median 0.275: bin 0 = {c 0.1, 0.2; a 0.15, 0.25}
    assert (rows[0]["n_clean"], rows[0]["n_adv"]) == (2, 2)
    assert rows[0]["auc"] == 1.0                     # adv 5, 6 above clean 0, 1
    assert (rows[1]["n_clean"], rows[1]["n_adv"]) == (2, 2)
    assert rows[1]["auc"] == 0.0                     # adv 0.5, 0.2 below clean 2, 3
    assert mt.within_bin_auc(rows) == 0.5
    one_sided = mt.binned_auc([0.0, 1.0], [2.0, 3.0], [0.0, 0.1], [0.9, 1.0], n_bins=2)
    assert [(r["n_clean"], r["n_adv"]) for r in one_sided] == [(2, 0), (0, 2)]
    assert all(math.isnan(r["auc"]) for r in one_sided)
    assert math.isnan(mt.within_bin_auc(one_sided))


def test_binned_auc_one_bin_is_the_plain_auc_and_nan_scores_drop():
    rng = np.random.default_rng(1)
    c, a = rng.normal(size=30), rng.normal(0.7, size=25)
    rows = mt.binned_auc(c, a, rng.random(30), rng.random(25), n_bins=1)
    assert rows[0]["n_clean"] == 30 and rows[0]["auc"] == pytest.approx(mt.roc_auc(c, a))
    assert mt.within_bin_auc(rows) == pytest.approx(mt.roc_auc(c, a))
    c2 = c.copy()
    c2[:5] = np.nan
    rows = mt.binned_auc(c2, a, rng.random(30), rng.random(25), n_bins=3)
    assert sum(r["n_clean"] for r in rows) == 25 and sum(r["n_adv"] for r in rows) == 25
    with pytest.raises(ValueError, match="aligned"):
        mt.binned_auc(c, a, rng.random(29), rng.random(25))
    with pytest.raises(ValueError, match="finite"):
        mt.binned_auc(c, a, np.full(30, np.nan), rng.random(25))


def test_within_bin_auc_removes_a_confounder():
    # the score is confidence plus noise; adversarial samples are less confident: a high plain AUC that
    # vanishes inside bins of equal confidence
    rng = np.random.default_rng(2)
    conf_c, conf_a = rng.normal(0, 1, 2000), rng.normal(2, 1, 2000)
    c, a = conf_c + 0.1 * rng.normal(size=2000), conf_a + 0.1 * rng.normal(size=2000)
    assert mt.roc_auc(c, a) > 0.85
    rows = mt.binned_auc(c, a, conf_c, conf_a, n_bins=20)
    assert abs(mt.within_bin_auc(rows) - 0.5) < 0.1


# ------------------------------------------------------------------------------ two-sided scores
def test_two_sided_scores_leave_one_out_and_direction_free():
    clean = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    tc, ta = mt.two_sided_scores(clean, [-10.0, 2.0, 10.0])
    assert ta[0] == pytest.approx(ta[2]) and ta[0] > ta[1]   # both tails alike
    for i in range(clean.size):                         # clean i against the others only
        others = np.delete(clean, i)
        assert tc[i] == pytest.approx(mt.clean_tail_score(others, clean[i:i + 1])[0])
    with pytest.raises(ValueError, match="at least 2"):
        mt.two_sided_scores([1.0], [2.0])
    tc, _ = mt.two_sided_scores([1.0, 1.0, 1.0], [1.0])
    assert np.allclose(tc, 0.0)                         # ties: the median


# ------------------------------------------------------------------------------------ bootstrap
def test_bootstrap_aucs_exact_weighted_auc_and_seeded():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(15, int), np.ones(12, int)]
    s = np.column_stack([rng.integers(0, 4, 27), rng.normal(size=27)]).astype(float)   # ties in column 0
    groups = np.r_[np.arange(15), rng.integers(0, 15, 12)]
    b1 = mt.bootstrap_aucs(y, s, groups, n_boot=50, seed=7)
    b2 = mt.bootstrap_aucs(y, s, groups, n_boot=50, seed=7)
    assert b1.shape == (50, 2) and np.array_equal(b1, b2, equal_nan=True)
    assert not np.array_equal(b1, mt.bootstrap_aucs(y, s, groups, n_boot=50, seed=8))
    # replicate 0 recomputed by expanding the drawn groups
    _, gi = np.unique(groups, return_inverse=True)
    draw = np.random.default_rng(7).integers(0, gi.max() + 1, size=(50, gi.max() + 1))[0]
    idx = np.concatenate([np.flatnonzero(gi == g) for g in draw])
    yy, ss = y[idx], s[idx]
    for j in range(2):
        pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(ss[yy == 1, j], ss[yy == 0, j])]
        assert b1[0, j] == pytest.approx(np.mean(pairs))


def test_bootstrap_aucs_nan_without_both_classes():
    y = np.array([0, 1])
    b = mt.bootstrap_aucs(y, np.array([0.0, 1.0]), n_boot=200, seed=0)
    assert np.isnan(b).any() and np.nanmax(b) == 1.0


# ---------------------------------------------------------------------- cross-validated logistic
def _synthetic(n=200, signal=2.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    conf = rng.normal(size=(2 * n, 2)) + y[:, None] * np.array([1.0, 0.0])     # confidence carries signal
    informative = rng.normal(size=(2 * n, 1)) + signal * y[:, None]            # independent extra signal
    noise = rng.normal(size=(2 * n, 3))
    groups = np.r_[np.arange(n), np.arange(n)]                                 # pairs: clean i, adv i
    return y, conf, informative, noise, groups


def test_cv_logistic_extra_signal_is_detected():
    y, conf, informative, _, groups = _synthetic()
    r = mt.logistic_cv_comparison(conf, informative, y, groups, n_splits=5, seed=config.SEED, n_boot=300)
    assert r["n_neg"] == r["n_pos"] == 200 and r["n_splits"] == 5
    assert 0.70 < r["auc_base"] < 0.82                  # one unit of mean shift: AUC ~ 0.76
    assert r["auc_both"] > r["auc_base"] + 0.1
    assert r["delta_lo"] > 0                           # the interval says: the extra features add
    assert r["auc_base_lo"] <= r["auc_base"] <= r["auc_base_hi"]
    assert r["delta"] == pytest.approx(r["auc_both"] - r["auc_base"])


def test_cv_logistic_pure_noise_adds_nothing():
    y, conf, _, noise, groups = _synthetic(seed=1)
    r = mt.logistic_cv_comparison(conf, noise, y, groups, n_splits=5, seed=config.SEED, n_boot=300)
    assert abs(r["auc_extra"] - 0.5) < 0.1
    assert r["delta_lo"] < 0 < r["delta_hi"] or r["delta_hi"] <= 0     # no evidence that noise adds
    assert r["delta"] < 0.03


def test_cv_logistic_is_deterministic_with_the_seed_and_handles_nan_features():
    y, conf, informative, noise, groups = _synthetic(n=60, seed=2)
    extra = np.hstack([informative, noise])
    extra[::7, 1] = np.nan                              # a strategy that could not judge some samples
    a = mt.logistic_cv_comparison(conf, extra, y, groups, seed=config.SEED, n_boot=100)
    b = mt.logistic_cv_comparison(conf, extra, y, groups, seed=config.SEED, n_boot=100)
    assert a == b
    p1 = mt.cross_validated_probabilities(extra, y, groups, seed=config.SEED)
    assert np.isfinite(p1).all() and np.array_equal(p1, mt.cross_validated_probabilities(extra, y, groups,
                                                                                         seed=config.SEED))
    assert not np.array_equal(p1, mt.cross_validated_probabilities(extra, y, groups, seed=config.SEED + 1))


def test_cv_logistic_groups_never_straddle_folds():
    from sklearn.model_selection import StratifiedGroupKFold

    y, conf, _, _, groups = _synthetic(n=40, seed=3)
    for train, test in StratifiedGroupKFold(5, shuffle=True, random_state=config.SEED).split(conf, y, groups):
        assert not set(groups[train]) & set(groups[test])


def test_cv_logistic_too_few_samples_gives_nan():
    y = np.array([0, 0, 0, 1])
    r = mt.logistic_cv_comparison(np.zeros((4, 1)), np.zeros((4, 1)), y, n_boot=10)
    assert r["n_splits"] == 0 and math.isnan(r["auc_base"]) and math.isnan(r["delta_hi"])
    assert np.isnan(mt.cross_validated_probabilities(np.zeros((4, 1)), y)).all()
    with pytest.raises(ValueError, match="0/1"):
        mt.cross_validated_probabilities(np.zeros((3, 1)), np.array([0, 1, 2]))


# ------------------------------------------------------------------ samples of the shared experiment
def _synthetic_experiment(monkeypatch, seed=0):
    """12 clean CIFAR-10 samples (2 wrong), six attacks per budget, logits agreeing with the predictions."""
    from types import SimpleNamespace

    from causadv_lib import experiment

    rng = np.random.default_rng(seed)
    setup = experiment.setup_for("cifar10", "smoke")
    C, K, N = 10, 32, 12      # K >= 30: every paper variant fits (S4(10/30))
    proto_ci = rng.normal(size=(C, K)).astype(np.float32)
    proto_ci[9] = np.nan                                      # class 9 has no prototype
    labels = np.arange(N) % C
    pred = labels.copy()
    pred[[0, 1]] = [5, 6]
    clean_ci = rng.normal(size=(N, K)).astype(np.float32)
    clean_ci[:, :3] = 0.0
    logits = {None: (rng.normal(size=(N, C)) + 30.0 * np.eye(C)[pred]).astype(np.float32)}
    ci_res = lambda ci, p: SimpleNamespace(ci=ci, predicted=p, probability=np.ones(len(p), np.float32),  # noqa: E731
                                           definition="probability")
    cs = experiment.CleanSet(setup, tuple(map(str, range(N))), labels, np.zeros((N, 2, 2, 3), np.float32),
                             ci_res(clean_ci, pred))
    exp = experiment.Experiment(setup, cs, SimpleNamespace(ci=proto_ci))
    source = np.flatnonzero(cs.correct)
    for i, key in enumerate(setup.keys()):
        adv_pred = (labels[source] + 1 + i) % C
        adv_ci = rng.normal(size=(len(source), K)).astype(np.float32)
        adv_ci[:, :5] = 0.0
        ok = np.arange(len(source)) % 3 != 0
        res = SimpleNamespace(success=ok, predicted=adv_pred, adversarial=np.zeros((len(ok), 2, 2, 3), np.float32))
        exp.adversarial[key] = experiment.AdversarialSet(setup, key, res, ci_res(adv_ci, adv_pred), source)
        logits[key] = (rng.normal(size=(len(source), C)) + 5.0 * np.eye(C)[adv_pred]).astype(np.float32)
    monkeypatch.setattr(experiment, "logits", lambda e, key=None: logits[key])
    return exp, logits


def test_samples_of_aligns_confidence_and_ci_features(monkeypatch):
    from causadv_lib import experiment

    exp, logits = _synthetic_experiment(monkeypatch)
    S = ac.samples_of(exp, 24 / 255)
    assert list(S)[0] == CLEAN and len(S) == 7
    clean = S[CLEAN]
    assert clean.n == 10 and clean.source.tolist() == list(range(2, 12))
    assert np.array_equal(clean.confidence, cf.features(logits[None][2:]))
    assert clean.ci.shape == (10, len(ac.CI_VARIANTS)) and (clean.ci_zero == 3).all()
    assert np.array_equal(clean.ci_score("S3(n=5)"), -clean.ci_zero.astype(float))
    # class 9 has no prototype: S2 and S4 cannot judge those samples (NaN), S1, S3, max CI can
    no_proto = exp.clean.ci_result.predicted[2:] == 9
    assert no_proto.any()
    assert np.isnan(clean.ci_score("S4(3/10)")[no_proto]).all()
    assert np.isfinite(clean.ci_score("S1(n=0)")).all() and np.isfinite(clean.ci_score("max CI")).all()
    key = experiment.AttackKey("pgd", True, 24 / 255)
    adv, a = S[key], exp.adversarial[key]
    assert adv.n == a.n_success and np.array_equal(adv.source, a.source[a.success])
    assert np.array_equal(adv.ci_score("max CI"), -a.ci_result.ci[a.success].max(axis=1))
    y, groups, Xc, Xi = ac.labelled(clean, adv)
    assert y.tolist() == [0] * 10 + [1] * adv.n and np.array_equal(groups[10:], adv.source)
    assert Xc.shape == (10 + adv.n, 3) and Xi.shape == (10 + adv.n, len(ac.CI_VARIANTS))


def test_samples_of_refuses_logits_that_disagree_with_the_ci_pass(monkeypatch):
    from causadv_lib import experiment

    exp, logits = _synthetic_experiment(monkeypatch)
    logits[None] = -logits[None]
    with pytest.raises(RuntimeError, match="argmax"):
        ac.samples_of(exp, 24 / 255)
    with pytest.raises(ValueError, match="unknown definition"):
        experiment.with_definition(exp, "nope")
    assert experiment.with_definition(exp, "probability") is exp


def test_roc_row_directions_and_verdicts():
    clean, adv = np.arange(20.0), np.r_[np.arange(-10.0, 0.0), np.arange(30.0, 40.0)]   # both tails
    fixed = ac.roc_row(clean, adv, ac.FIXED)
    two = ac.roc_row(clean, adv, ac.TWO_SIDED)
    assert fixed["auc"] == 0.5 and two["auc"] == 1.0          # the fixed direction sees half, two-sided all
    assert two["realised fpr"] <= 0.05 and (fixed["n_clean"], fixed["n_adv"]) == (20, 20)
    assert ac.roc_row([1.0], [2.0], ac.TWO_SIDED)["auc"] is None
    assert ac.roc_row([np.nan, 1.0, 2.0], [3.0])["n_clean"] == 2
    with pytest.raises(ValueError, match="direction"):
        ac.roc_row(clean, adv, "up")
    base = {"n_splits": 5, "auc_base_lo": 0.6, "delta_lo": -0.1, "delta_hi": 0.1}
    assert ac.verdict(base) == "no detectable difference"
    assert ac.verdict(base | {"delta_lo": 0.01}) == "CI adds"
    assert ac.verdict(base | {"delta_hi": -0.01}) == "CI hurts"
    assert ac.verdict(base | {"auc_base_lo": 0.995}) == "confidence at ceiling"
    assert ac.verdict(base | {"n_splits": 0}) == "too few samples"


def test_rows_of_notebook_08_on_the_synthetic_experiment(monkeypatch):
    exp, _ = _synthetic_experiment(monkeypatch)
    S = ac.samples_of(exp, 24 / 255)
    meta = {"dataset": "CIFAR-10", "eps": "24/255"}
    n_att = len(ac.attacks(S))
    assert n_att == 6
    zero = ac.zero_share_rows({"probability": S, "logit": S}, meta)
    assert len(zero) == 7 and zero[0]["samples"] == "Clean" and zero[0]["zero share: logit"] == round(3 / 32, 3)
    assert zero[0]["median #zero: probability"] == 3.0 and zero[0]["p = 1.0"] == 1.0
    assert len(ac.confidence_roc_rows(S, meta)) == 3 * 2 * n_att
    rows = ac.strategy_roc_rows(S, meta)
    assert len(rows) == len(ac.CI_VARIANTS) * 2 * n_att and {r["direction"] for r in rows} == {"paper", ac.TWO_SIDED}
    s3 = [r for r in rows if r["strategy"] == "S3(n=5)" and r["direction"] == "paper"]
    assert all(r["auc"] == 0.0 for r in s3)                  # 5 zeros > 3 clean zeros: the paper's direction fails
    per_bin, summary = ac.binned_rows(S, {"definition": "probability"} | meta, n_bins=2, with_confidence=True)
    assert len(summary) == (len(ac.CI_VARIANTS) + 1) * n_att and len(per_bin) == 2 * len(summary)
    assert summary[-1]["definition"] == "(confidence)"
    cv = ac.logistic_rows(S, meta, n_splits=3, seed=config.SEED, n_boot=50)
    assert len(cv) == n_att and all(r["verdict"] in ac.VERDICTS for r in cv)
    assert cv == ac.logistic_rows(S, meta, n_splits=3, seed=config.SEED, n_boot=50)


def test_log_probability_has_one_home():
    """`logprob.log_prob` is confidence's log p_max at the top class, bit for bit, and exact off the top."""
    rng = np.random.default_rng(3)
    z = np.concatenate([rng.normal(size=(40, 6)) * 4, rng.normal(size=(10, 6)) + 50 * np.eye(6)[rng.integers(0, 6, 10)]])
    top = z.argmax(axis=1)
    assert logprob.log_prob(z, top).tobytes() == cf.log_msp(z).tobytes()
    c = rng.integers(0, 6, len(z))
    np.testing.assert_allclose(logprob.log_prob(z, c), np.log(_softmax64(z)[np.arange(len(z)), c]), rtol=1e-9, atol=1e-12)
    sat = np.array([[40.0, 0.0, 0.0]])                       # float32 p_0 == 1.0, log p_0 still exact
    assert logprob.log_prob(sat.astype(np.float32), [0])[0] == pytest.approx(-2 * math.exp(-40), rel=1e-9)
