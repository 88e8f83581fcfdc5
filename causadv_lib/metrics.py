"""Detection metrics on plain score arrays: ROC-AUC, TPR at a fixed FPR, ROC curves, attack success.

Convention: a score is larger for a more suspicious sample; adversarial samples are the positive class.

NaN scores (a strategy that could not judge a sample, see ``strategies.StrategyResult.counted``) are
refused by default (``nan_policy="raise"``); ``nan_policy="omit"`` drops them and the ``n_*`` counts
of `detection_row` say how many remained. Infinite scores are always refused.

Empty inputs: a scalar metric with no clean or no adversarial score left is NaN, meaning "undefined:
nothing to compare" (`detection_row` shows which side is empty through ``n_clean`` / ``n_adv``);
`roc_curve` and `two_sided_score`, which have nothing to return then, raise ValueError.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as _skm

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


def two_sided_score(clean_scores, scores) -> np.ndarray:
    """How far into either tail of the clean score distribution each of `scores` lies, in [0, 1).

    With the mid-rank empirical CDF of the clean scores, F(x) = (#(clean < x) + #(clean == x) / 2 + 1/2)
    / (n + 1), which stays inside (0, 1), the result is 1 - 2 min(F, 1 - F): one minus the two-sided
    empirical tail probability. 0 at the clean median, close to 1 beyond every clean score in either
    direction. Direction and scale come from the clean scores only. NaN scores give NaN.
    """
    clean = np.sort(_scores(clean_scores, "clean_scores", "raise"))
    if clean.size == 0:
        raise ValueError("clean_scores: empty; the clean distribution defines the two tails")
    x = np.asarray(scores, dtype=np.float64)
    below = np.searchsorted(clean, x, side="left")
    not_above = np.searchsorted(clean, x, side="right")
    cdf = (below + 0.5 * (not_above - below) + 0.5) / (clean.size + 1)
    out = 1.0 - 2.0 * np.minimum(cdf, 1.0 - cdf)
    return np.where(np.isnan(x), np.nan, out)


def bootstrap_ci(clean_scores, adv_scores, metric=roc_auc, n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0, nan_policy: str = "raise") -> tuple[float, float]:
    """Percentile bootstrap interval (1 - alpha) of `metric(clean, adv)`, resampling each side apart."""
    clean = _scores(clean_scores, "clean_scores", nan_policy)
    adv = _scores(adv_scores, "adv_scores", nan_policy)
    if clean.size == 0 or adv.size == 0:
        return math.nan, math.nan
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: expected a level in (0, 1), got {alpha!r}")
    rng = np.random.default_rng(seed)
    vals = np.array([metric(rng.choice(clean, clean.size), rng.choice(adv, adv.size)) for _ in range(int(n_boot))])
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
