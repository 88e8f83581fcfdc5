"""Detection metrics on plain score arrays: ROC-AUC, TPR at a fixed FPR, ROC curves, attack success.

Convention: a score is larger for a more suspicious sample; adversarial samples are the positive class.

NaN scores (a strategy that could not judge a sample, see ``strategies.StrategyResult.counted``) are
refused by default (``nan_policy="raise"``); ``nan_policy="omit"`` drops them and the ``n_*`` counts
of `detection_row` say how many remained. Infinite scores are always refused.

Empty inputs: a scalar metric with no clean or no adversarial score left is NaN, meaning "undefined:
nothing to compare" (`detection_row` shows which side is empty through ``n_clean`` / ``n_adv``);
`roc_curve`, `clean_cdf` and `clean_tail_score`, which have nothing to return then, raise ValueError.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn import metrics as _skm
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from . import checks

NAN_POLICIES = ("raise", "omit")


def _scores(a, name: str, nan_policy: str) -> np.ndarray:
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy: expected one of {NAN_POLICIES}, got {nan_policy!r}")
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of scores, got shape {arr.shape}")
    if arr.size and not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name}: expected real-valued scores, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if np.isinf(arr).any():
        raise ValueError(f"{name}: {int(np.isinf(arr).sum())} infinite score(s); scores must be finite")
    nan = np.isnan(arr)
    if nan.any():
        if nan_policy == "raise":
            raise ValueError(f"{name}: {int(nan.sum())} NaN score(s) (e.g. samples a strategy did not count); "
                             "drop them or pass nan_policy='omit'")
        arr = arr[~nan]
    return arr


def _labelled(clean, adv):
    y = np.r_[np.zeros(clean.size, np.int8), np.ones(adv.size, np.int8)]
    return y, np.r_[clean, adv]


def roc_auc(clean_scores, adv_scores, nan_policy: str = "raise") -> float:
    """ROC-AUC with adversarial = positive: P(adv > clean) + 0.5 P(adv == clean); NaN if a side is empty."""
    clean = _scores(clean_scores, "clean_scores", nan_policy)
    adv = _scores(adv_scores, "adv_scores", nan_policy)
    if clean.size == 0 or adv.size == 0:
        return math.nan
    y, s = _labelled(clean, adv)
    return float(_skm.roc_auc_score(y, s))


def roc_curve(clean_scores, adv_scores, nan_policy: str = "raise") -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of the ROC curve, from (0, 0) to (1, 1), every distinct threshold kept (for plots)."""
    clean = _scores(clean_scores, "clean_scores", nan_policy)
    adv = _scores(adv_scores, "adv_scores", nan_policy)
    if clean.size == 0 or adv.size == 0:
        raise ValueError(f"roc_curve: needs clean and adversarial scores, got {clean.size} clean and "
                         f"{adv.size} adversarial")
    y, s = _labelled(clean, adv)
    fpr, tpr, _ = _skm.roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr


def clean_threshold(clean_scores, fpr: float = 0.05, nan_policy: str = "raise") -> float:
    """Threshold t from clean scores only: flagged means score > t, and at most fpr of the clean set is.

    With n clean scores sorted ascending c_1 <= ... <= c_n and a = floor(fpr * n) false positives
    allowed, t = c_(n-a) (t = -inf when a = n): #(clean > t) <= a, fewer where scores tie at t, so the
    realised FPR never exceeds `fpr`. NaN for an empty clean set.
    """
    fpr = float(fpr)
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr: expected a rate in [0, 1], got {fpr!r}")
    clean = np.sort(_scores(clean_scores, "clean_scores", nan_policy))
    n = clean.size
    if n == 0:
        return math.nan
    allowed = min(n, int(math.floor(fpr * n + 1e-9)))      # 1e-9: 0.29 * 100 is 28.999999999999996
    return -math.inf if allowed == n else float(clean[n - allowed - 1])


def tpr_at_fpr(clean_scores, adv_scores, fpr: float = 0.05, nan_policy: str = "raise") -> tuple[float, float, float]:
    """(tpr, threshold, realised_fpr) with the threshold of `clean_threshold` (set on clean scores only).

    tpr is the fraction of adversarial scores > threshold (NaN if there are none); realised_fpr the
    fraction of clean scores > threshold (<= fpr). All three are NaN for an empty clean set.
    """
    clean = _scores(clean_scores, "clean_scores", nan_policy)
    adv = _scores(adv_scores, "adv_scores", nan_policy)
    t = clean_threshold(clean, fpr)
    if math.isnan(t):
        return math.nan, math.nan, math.nan
    tpr = float((adv > t).mean()) if adv.size else math.nan
    return tpr, t, float((clean > t).mean())


def attack_success_rate(success) -> float:
    """Fraction of successful attacks; `success` holds booleans (or 0/1). NaN for an empty array."""
    arr = np.asarray(success)
    if arr.ndim != 1:
        raise ValueError(f"success: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return math.nan
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"success: expected booleans (or 0/1), got dtype {arr.dtype} with values "
                             f"{np.unique(arr)[:5]}")
    return float(arr.astype(bool).mean())


def clean_cdf(clean_scores, scores) -> np.ndarray:
    """The mid-rank empirical CDF of the clean scores at each of `scores`, inside (0, 1).

    F(x) = (#(clean < x) + #(clean == x) / 2 + 1/2) / (n + 1): close to 1 beyond every clean score on the
    large (suspicious) side, close to 0 beyond them on the other, 1/2 at the clean median; ties count half.
    One minus it is a one-sided tail probability in the score's direction. NaN scores give NaN.
    """
    clean = np.sort(_scores(clean_scores, "clean_scores", "raise"))
    if clean.size == 0:
        raise ValueError("clean_scores: empty; the clean distribution defines the tails")
    x = np.asarray(scores, dtype=np.float64)
    below = np.searchsorted(clean, x, side="left")
    not_above = np.searchsorted(clean, x, side="right")
    cdf = (below + 0.5 * (not_above - below) + 0.5) / (clean.size + 1)
    return np.where(np.isnan(x), np.nan, cdf)


def clean_tail_score(clean_scores, scores) -> np.ndarray:
    """How far into either tail of the clean score distribution each of `scores` lies, in [0, 1).

    With the mid-rank empirical CDF of the clean scores (`clean_cdf`), F(x) = (#(clean < x) + #(clean == x)
    / 2 + 1/2) / (n + 1), which stays inside (0, 1), the result is 1 - 2 min(F, 1 - F): one minus the
    two-sided empirical tail probability. 0 at the clean median, close to 1 beyond every clean score in
    either direction. Direction and scale come from the clean scores only. NaN scores give NaN.
    """
    if np.asarray(clean_scores).size == 0:
        raise ValueError("clean_scores: empty; the clean distribution defines the two tails")
    cdf = clean_cdf(clean_scores, scores)
    return 1.0 - 2.0 * np.minimum(cdf, 1.0 - cdf)


def bootstrap_interval(clean_scores, adv_scores, metric=roc_auc, n_boot: int = 1000, alpha: float = 0.05,
                       seed: int = 0, nan_policy: str = "raise") -> tuple[float, float]:
    """Percentile bootstrap interval (1 - alpha) of `metric(clean, adv)`, resampling each side apart
    (a confidence interval of the metric; "CI" in this package means counterfactual information)."""
    n_boot = checks.positive_int(n_boot, "n_boot")
    alpha = checks.level(alpha, "alpha")
    seed = checks.seed(seed)
    clean = _scores(clean_scores, "clean_scores", nan_policy)
    adv = _scores(adv_scores, "adv_scores", nan_policy)
    if clean.size == 0 or adv.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    vals = np.array([metric(rng.choice(clean, clean.size), rng.choice(adv, adv.size)) for _ in range(n_boot)])
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def detection_row(clean_scores, adv_scores, fpr: float = 0.05, nan_policy: str = "raise") -> dict:
    """One row of the ROC table: auc, tpr at `fpr` (key ``tpr_at_5fpr`` for 0.05), its clean-set threshold
    and realised FPR, and how many scores entered each side."""
    clean = _scores(clean_scores, "clean_scores", nan_policy)
    adv = _scores(adv_scores, "adv_scores", nan_policy)
    tpr, t, realised = tpr_at_fpr(clean, adv, fpr)
    return {"auc": roc_auc(clean, adv), f"tpr_at_{100 * float(fpr):g}fpr": tpr, "threshold": t,
            "realised_fpr": realised, "n_clean": int(clean.size), "n_adv": int(adv.size)}


# ------------------------------------------------------------------ confidence bins, logistic models
def binned_auc(clean_scores, adv_scores, clean_by, adv_by, n_bins: int = 4) -> list[dict]:
    """ROC-AUC within bins of a second quantity `by` (e.g. confidence), one row per bin.

    Bins: quantiles of the pooled clean and adversarial `by` values (equal counts up to ties; a bin holds
    lo <= by < hi, the last one also by == hi; tied edges leave a bin empty). Each row: ``bin``, ``lo``,
    ``hi``, ``n_clean``, ``n_adv`` and ``auc`` (NaN where the bin lacks one side). Samples with a NaN score
    are dropped with their `by` value; `by` must be finite.
    """
    n_bins = int(n_bins)
    if n_bins < 1:
        raise ValueError(f"n_bins: expected a positive integer, got {n_bins!r}")
    c, a = np.asarray(clean_scores, np.float64), np.asarray(adv_scores, np.float64)
    cb, ab = np.asarray(clean_by, np.float64), np.asarray(adv_by, np.float64)
    if c.shape != cb.shape or a.shape != ab.shape or c.ndim != 1 or a.ndim != 1:
        raise ValueError(f"scores and `by` must be 1-D and aligned: clean {c.shape} vs {cb.shape}, "
                         f"adversarial {a.shape} vs {ab.shape}")
    if not (np.isfinite(cb).all() and np.isfinite(ab).all()):
        raise ValueError("clean_by, adv_by: expected finite values (the binning quantity)")
    c, cb = c[~np.isnan(c)], cb[~np.isnan(c)]
    a, ab = a[~np.isnan(a)], ab[~np.isnan(a)]
    pooled = np.r_[cb, ab]
    if not pooled.size:
        return []
    edges = np.quantile(pooled, np.linspace(0.0, 1.0, n_bins + 1))
    bin_of = lambda x: np.searchsorted(edges[1:-1], x, side="right")  # noqa: E731
    ic, ia = bin_of(cb), bin_of(ab)
    rows = []
    for b in range(n_bins):
        cs, as_ = c[ic == b], a[ia == b]
        rows.append({"bin": b, "lo": float(edges[b]), "hi": float(edges[b + 1]), "n_clean": int(cs.size),
                     "n_adv": int(as_.size), "auc": roc_auc(cs, as_)})
    return rows


def within_bin_auc(rows) -> float:
    """AUC over the clean/adversarial pairs that share a bin (`binned_auc` rows): the bins' AUCs weighted by
    n_clean x n_adv. It equals the plain AUC when there is one bin; NaN when no bin holds both sides."""
    w = np.array([r["n_clean"] * r["n_adv"] for r in rows], np.float64)
    auc = np.array([r["auc"] for r in rows], np.float64)
    ok = w > 0
    return float((w[ok] * auc[ok]).sum() / w[ok].sum()) if ok.any() else math.nan


def bootstrap_aucs(y, scores, groups=None, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, S) ROC-AUCs of S score columns over bootstrap resamples of the groups (e.g. source images).

    y: (n,) 0/1 labels (1 = adversarial = positive); scores: (n,) or (n, S); groups: (n,) group of each
    sample (default: every sample its own group). A resample draws as many groups as there are, with
    replacement, and keeps every sample of a drawn group once per draw; the AUC is exact (ties count 1/2).
    A resample without both classes gives NaN. Seeded: the same seed gives the same replicates.
    """
    n_boot = checks.positive_int(n_boot, "n_boot")
    seed = checks.seed(seed)
    y = np.asarray(y)
    s = np.asarray(scores, np.float64)
    s = s[:, None] if s.ndim == 1 else s
    if y.ndim != 1 or s.ndim != 2 or s.shape[0] != y.shape[0]:
        raise ValueError(f"y {y.shape} and scores {s.shape}: expected (n,) and (n,) or (n, S)")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y: expected 0/1 labels")
    if not np.isfinite(s).all():
        raise ValueError("scores: expected finite values")
    g = np.arange(y.size) if groups is None else np.asarray(groups)
    if g.shape != y.shape:
        raise ValueError(f"groups: expected shape {y.shape}, got {g.shape}")
    _, gi = np.unique(g, return_inverse=True)
    G = int(gi.max()) + 1 if gi.size else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, max(G, 1), size=(int(n_boot), G))
    counts = np.stack([np.bincount(d, minlength=G) for d in draws]).astype(np.float64) if G else \
        np.zeros((int(n_boot), 0))
    w = counts[:, gi]                                   # (B, n) multiplicity of each sample
    pos, neg = y == 1, y == 0
    wp, wn = w[:, pos], w[:, neg]
    denom = wp.sum(axis=1) * wn.sum(axis=1)
    out = np.full((int(n_boot), s.shape[1]), np.nan)
    for j in range(s.shape[1]):
        sp, sn = s[pos, j], s[neg, j]
        m = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
        num = ((wp @ m) * wn).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), np.nan)
    return out


def cross_validated_probabilities(X, y, groups=None, n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold P(y = 1) of a logistic regression on standardised features, one per sample.

    Model: median imputation of NaN features and standardisation (both fitted on the training folds),
    then scikit-learn's `LogisticRegression` (L2, C = 1, solved by Newton-Cholesky). Folds:
    `StratifiedGroupKFold` over `groups` (samples of one group, e.g. a clean image and its adversarial
    example, never straddle a split), else `StratifiedKFold`; shuffled with `seed`. n_splits is lowered
    to the size of the smaller class; with fewer than 2 samples in a class the result is all NaN. A
    training fold holding one class predicts its share.
    """
    X = np.asarray(X, np.float64)
    y = np.asarray(y)
    X = X[:, None] if X.ndim == 1 else X
    if X.ndim != 2 or X.shape[0] != y.shape[0] or y.ndim != 1:
        raise ValueError(f"X {X.shape} and y {y.shape}: expected (n, d) and (n,)")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y: expected 0/1 labels")
    if np.isinf(X).any():
        raise ValueError("X: infinite feature values")
    out = np.full(y.shape[0], np.nan)
    k = min(int(n_splits), int((y == 0).sum()), int((y == 1).sum()))
    if k < 2:
        return out
    if groups is None:
        split = StratifiedKFold(k, shuffle=True, random_state=seed).split(X, y)
    else:
        split = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(X, y, np.asarray(groups))
    for train, test in split:
        if np.unique(y[train]).size < 2:
            out[test] = y[train].mean()
            continue
        xtr, xte = _standardise(X[train], X[test])
        model = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=1000).fit(xtr, y[train])
        out[test] = model.predict_proba(xte)[:, 1]
    return out


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median imputation of NaN and scaling to zero mean, unit variance, both fitted on `train` only
    (a column that is all NaN or constant in `train` becomes 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # "All-NaN slice": a column set to 0 below
        med = np.nanmedian(train, axis=0)
    med = np.where(np.isnan(med), 0.0, med)
    train = np.where(np.isnan(train), med, train)
    test = np.where(np.isnan(test), med, test)
    mu, sd = train.mean(axis=0), train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mu) / sd, (test - mu) / sd


def logistic_cv_comparison(X_base, X_extra, y, groups=None, *, n_splits: int = 5, seed: int = 0,
                           n_boot: int = 1000, alpha: float = 0.05) -> dict:
    """Does `X_extra` add to `X_base`? Cross-validated logistic models on base, extra and both features.

    Out-of-fold probabilities of each model (`cross_validated_probabilities`, the same folds for all
    three) are scored by ROC-AUC; intervals are percentile bootstrap intervals (1 - alpha) over resampled
    groups of the out-of-fold predictions (`bootstrap_aucs`; the models are not refitted), and ``delta``
    = AUC(both) - AUC(base) has its own interval from the same resamples (paired). Keys: ``n_neg``,
    ``n_pos``, ``n_splits``, ``auc_base``, ``auc_extra``, ``auc_both``, ``delta`` and ``*_lo``/``*_hi``
    for each; all NaN when a class has fewer than 2 samples.
    """
    checks.integer(n_splits, "n_splits", minimum=2)
    checks.positive_int(n_boot, "n_boot")
    checks.level(alpha, "alpha")
    y = np.asarray(y)
    Xb, Xe = np.asarray(X_base, np.float64), np.asarray(X_extra, np.float64)
    Xb, Xe = (Xb[:, None] if Xb.ndim == 1 else Xb), (Xe[:, None] if Xe.ndim == 1 else Xe)
    n_neg, n_pos = int((y == 0).sum()), int((y == 1).sum())
    k = min(int(n_splits), n_neg, n_pos)
    out = {"n_neg": n_neg, "n_pos": n_pos, "n_splits": k if k >= 2 else 0}
    keys = ("auc_base", "auc_extra", "auc_both", "delta")
    if k < 2:
        return out | {f"{m}{s}": math.nan for m in keys for s in ("", "_lo", "_hi")}
    prob = np.column_stack([cross_validated_probabilities(X, y, groups, n_splits=k, seed=seed)
                            for X in (Xb, Xe, np.hstack([Xb, Xe]))])
    point = [float(_skm.roc_auc_score(y, prob[:, j])) for j in range(3)]
    point.append(point[2] - point[0])
    boot = bootstrap_aucs(y, prob, groups, n_boot=n_boot, seed=seed)
    boot = np.column_stack([boot, boot[:, 2] - boot[:, 0]])
    lo, hi = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    for j, m in enumerate(keys):
        out |= {m: point[j], f"{m}_lo": float(lo[j]), f"{m}_hi": float(hi[j])}
    return out


def two_sided_scores(clean_scores, adv_scores, nan_policy: str = "raise") -> tuple[np.ndarray, np.ndarray]:
    """`clean_tail_score` of the clean and the adversarial scores, the clean ones leave-one-out.

    An adversarial score is placed in the distribution of all n clean scores; a clean score in that of
    the other n - 1 clean scores (it never defines its own tail), so the clean side of an ROC built on
    these scores is scored as a new clean image would be. Direction and scale come from clean scores only.
    """
    clean = _scores(clean_scores, "clean_scores", nan_policy)
    adv = _scores(adv_scores, "adv_scores", nan_policy)
    if clean.size < 2:
        raise ValueError(f"clean_scores: {clean.size} score(s); leave-one-out needs at least 2")
    srt = np.sort(clean)
    below = np.searchsorted(srt, clean, side="left")
    equal = np.searchsorted(srt, clean, side="right") - below      # includes the sample itself
    cdf = (below + 0.5 * (equal - 1) + 0.5) / clean.size           # mid-rank CDF among the n - 1 others
    return 1.0 - 2.0 * np.minimum(cdf, 1.0 - cdf), clean_tail_score(clean, adv)
