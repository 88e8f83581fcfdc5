"""Confidence baselines: how sure the model is of its prediction, computed exactly from the logits.

A CausAdv score may only be measuring confidence: on a saturated model (VGG16-BN on CIFAR-10) the
predicted probability rounds to 1.0 in float32, removing one filter then changes nothing representable,
and the number of filters with CI exactly 0 grows with the saturation. This module gives the confidence
baselines that a CI score has to beat, and the features of notebook 08's "causal or merely confident?"
comparison.

Three baselines (Hendrycks & Gimpel 2017 and the usual companions), each a function of the logits ``z``
(N, C), computed in float64 and exact where the float32 softmax rounds ``p_max`` to 1.0:

=========== ============================ ===================================================================
name        score (larger = suspicious)  what it is
=========== ============================ ===================================================================
``msp``     log(1 - p_max)               maximum softmax probability, on a log scale: log of the mass of the
                                         other classes, ``a - softplus(a)`` with
                                         ``a = log sum_{j != top} exp(z_j - z_top)``; strictly increasing
                                         in -p_max, so it ranks like -MSP or 1 - MSP, without their ties at 1.0
``margin``  -(z_top - z_second)          logit margin between the top two classes
``entropy`` log H(p)                     predictive entropy (nats) on a log scale, as a log-sum-exp of
                                         ``log p_j + log(-log p_j)``: no underflow, exact near p_max = 1
=========== ============================ ===================================================================

Direction: the conventional one, fixed in advance and never chosen from adversarial labels: **low
confidence = suspicious** (Hendrycks & Gimpel: misclassified and out-of-distribution inputs get lower
p_max). An attack that makes the model *more* confident than on clean images (iterative attacks do)
then gets an AUC below 0.5; the two-sided score of `metrics.two_sided_score` (direction from clean
images only) is the honest alternative, reported beside it.

    >>> z = np.array([[20.0, 0, 0], [30.0, 0, 0]], np.float32)   # float32 softmax: p_max == 1.0 for both
    >>> msp_score(z)                                             # log(2) - 20, log(2) - 30: still ordered
    >>> scores(z)                                                # {"msp": ..., "margin": ..., "entropy": ...}

The second half of the module assembles, on the shared experiment (`experiment`), the per-sample
confidence and CI features of the clean set and of each attack (`samples_of`), which notebook 08 feeds
to `metrics.binned_auc` and `metrics.logistic_cv_comparison`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import logprob

#: name -> display name of each confidence score (the conventional direction: low confidence = suspicious)
SCORE_NAMES = {"msp": "MSP: log(1 - p_max)", "margin": "margin: -(z1 - z2)", "entropy": "entropy: log H"}
SCORES = tuple(SCORE_NAMES)


# ------------------------------------------------------------------------------------- from logits
def _logits(z) -> np.ndarray:
    arr = np.asarray(z)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"logits: expected a 2-D (N, C) array with C >= 2 classes, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"logits: expected floating-point logits, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"logits: {bad} row(s) hold non-finite values; logits must be finite")
    return arr


def _log_other_mass(z: np.ndarray) -> np.ndarray:
    """a = log sum_{j != top} exp(z_j - z_top) = log((1 - p_max) / p_max) (`logprob.log_other_mass`)."""
    return logprob.log_other_mass(z, z.argmax(axis=1))


def _softplus(a: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, a)


def _log_softplus(a: np.ndarray) -> np.ndarray:
    """log(log(1 + e^a)), exact for very negative a (where log1p(e^a) underflows towards e^a)."""
    with np.errstate(divide="ignore"):
        direct = np.log(_softplus(np.maximum(a, -30.0)))
    # for a < -30: log1p(e^a) = e^a (1 - e^a / 2 + ...), so its log is a - e^a / 2 = a to float64 precision
    return np.where(a < -30.0, a, direct)


def log_msp(logits) -> np.ndarray:
    """log p_max = -softplus(a) per row (float64), exact where p_max rounds to 1.0 in float32."""
    z = _logits(logits)
    return logprob.log_prob(z, z.argmax(axis=1))


def msp(logits) -> np.ndarray:
    """p_max, the maximum softmax probability per row (float64)."""
    return np.exp(log_msp(logits))


def msp_score(logits) -> np.ndarray:
    """log(1 - p_max) = a - softplus(a) per row: larger = less confident = more suspicious."""
    a = _log_other_mass(_logits(logits))
    return a - _softplus(a)


def margin(logits) -> np.ndarray:
    """z_top - z_second per row (>= 0)."""
    z = np.sort(_logits(logits), axis=1)
    return z[:, -1] - z[:, -2]


def margin_score(logits) -> np.ndarray:
    """-(z_top - z_second): larger = smaller margin = more suspicious."""
    return -margin(logits)


def log_entropy(logits) -> np.ndarray:
    """log H(p) with H = -sum_j p_j log p_j in nats, per row, without underflow.

    log H = logsumexp_j(log p_j + log(-log p_j)); for the top class -log p_top = softplus(a) (exact near
    p_top = 1), for the others -log p_j = logsumexp(z) - z_j > 0. -inf only for a one-hot distribution,
    which finite logits never give.
    """
    z = _logits(logits)
    top = z.argmax(axis=1)
    rows = np.arange(len(z))
    a = _log_other_mass(z)
    lse = z[rows, top] + _softplus(a)                   # logsumexp of each row
    logp = z - lse[:, None]
    with np.errstate(divide="ignore"):
        terms = logp + np.log(np.maximum(-logp, np.finfo(np.float64).tiny))
    terms[rows, top] = -_softplus(a) + _log_softplus(a)
    m = terms.max(axis=1)
    return m + np.log(np.exp(terms - m[:, None]).sum(axis=1))


def entropy(logits) -> np.ndarray:
    """Predictive entropy H(p) in nats per row (float64; tiny but non-zero for saturated rows)."""
    return np.exp(log_entropy(logits))


def entropy_score(logits) -> np.ndarray:
    """log H(p): larger = more uncertain = more suspicious."""
    return log_entropy(logits)


_SCORE_FNS = {"msp": msp_score, "margin": margin_score, "entropy": entropy_score}


def scores(logits) -> dict[str, np.ndarray]:
    """{name: score per row} for every confidence score of `SCORES` (larger = more suspicious)."""
    return {name: _SCORE_FNS[name](logits) for name in SCORES}


def features(logits) -> np.ndarray:
    """(N, 3) float64: the confidence scores as features, columns in `SCORES` order."""
    s = scores(logits)
    return np.column_stack([s[n] for n in SCORES]) if len(np.asarray(logits)) else np.zeros((0, len(SCORES)))


# ------------------------------------------------------------------- on the shared experiment
#: The CI features: the continuous score of each strategy (as `experiment.ROC_VARIANTS`; the S1 and S3
#: variants differ only in their threshold) and the largest CI value (low = suspicious), all with
#: larger = more suspicious in the paper's direction.
CI_VARIANTS = ("S1(n=0)", "S2(top-5)", "S2(rho>=0.5)", "S3(n=5)", "S4(3/10)", "S4(5/20)", "S4(10/30)", "max CI")
CI_NAMES = {"S1(n=0)": "S1: -#causal filters", "S2(top-5)": "S2: rank of own class",
            "S2(rho>=0.5)": "S2: -rho with prototype", "S3(n=5)": "S3: -#zero filters",
            "S4(3/10)": "S4 3/10: -#common", "S4(5/20)": "S4 5/20: -#common", "S4(10/30)": "S4 10/30: -#common",
            "max CI": "-max CI (not in the paper)"}


@dataclass(frozen=True, eq=False)
class Samples:
    """The samples of one group (clean set or one attack's successes) with their features, row-aligned.

    source: index into the clean set of each sample (a clean image is its own source; an adversarial
    example's source is the image it was made from), the group for a bootstrap or a grouped split.
    confidence: (n, 3) confidence features (`SCORES` order); ci: (n, 8) CI features (`CI_VARIANTS`
    order; NaN where a strategy could not judge the sample: no prototype for its predicted class);
    ci_zero: (n,) number of filters with CI exactly 0; saturated: (n,) float32 p_c == 1.0 in the CI pass.
    """

    name: str
    key: object                 # experiment.AttackKey, or None for the clean set
    source: np.ndarray
    confidence: np.ndarray
    ci: np.ndarray
    ci_zero: np.ndarray
    n_filters: int
    saturated: np.ndarray

    @property
    def n(self) -> int:
        return len(self.source)

    def confidence_score(self, name: str) -> np.ndarray:
        return self.confidence[:, SCORES.index(name)]

    def ci_score(self, variant: str) -> np.ndarray:
        return self.ci[:, CI_VARIANTS.index(variant)]


def samples_of(exp, eps: float | None = None) -> dict:
    """{"Clean" or AttackKey: `Samples`} for the clean set (correctly classified images) and each attack's
    successful examples at `eps` (default: every budget), the same samples as `experiment.strategy_results`.

    `exp` may be an experiment under any CI definition (`experiment.with_definition`): the CI features
    follow its CI vectors and prototypes; the confidence features come from the logits
    (`experiment.logits`), which do not depend on the definition.
    """
    from . import experiment

    results = experiment.strategy_results(exp, eps)
    out = {}
    cs = exp.clean
    ok = cs.correct
    groups = [(experiment.CLEAN, None, np.flatnonzero(ok), cs.ci, ok, experiment.logits(exp))]
    for key in exp.setup.keys(eps):
        if key in exp.adversarial:
            adv = exp.adversarial[key]
            groups.append((key.label, key, adv.source[adv.success], adv.ci, adv.success, experiment.logits(exp, key)))
    for name, key, source, ci_res, mask, z in groups:
        group = experiment.CLEAN if key is None else key
        ci_ = ci_res.ci[mask]
        pred = ci_res.predicted[mask]
        z = z[mask]
        if len(z) and not np.array_equal(z.argmax(axis=1), pred):
            raise RuntimeError(f"{exp.setup.label}, {name}: the logits' argmax differs from the CI pass's "
                               "prediction for some samples")
        cols = []
        for v in CI_VARIANTS:
            if v == "max CI":
                cols.append(-ci_.max(axis=1).astype(np.float64) if len(ci_) else np.zeros(0))
            else:
                cols.append(results[group][v].score)
        out[group] = Samples(name, key, source.astype(np.int64), features(z),
                             np.column_stack(cols) if len(ci_) else np.zeros((0, len(CI_VARIANTS))),
                             (ci_ == 0).sum(axis=1), ci_res.ci.shape[1], ci_res.probability[mask] == 1.0)
    return out


def labelled(clean: Samples, adv: Samples) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y, groups, confidence features, CI features) of clean (y = 0) and adversarial (y = 1) samples
    stacked, with each sample's source image as its group."""
    y = np.r_[np.zeros(clean.n, np.int64), np.ones(adv.n, np.int64)]
    return (y, np.r_[clean.source, adv.source], np.vstack([clean.confidence, adv.confidence]),
            np.vstack([clean.ci, adv.ci]))


# ------------------------------------------------------------------------- rows of notebook 08
#: the two directions of every ROC row: the one fixed in advance (the paper's for a strategy, "low
#: confidence = suspicious" for a confidence score) and the two-sided clean-tail score (no direction)
FIXED, TWO_SIDED = "fixed", "two-sided (clean)"
#: the verdicts of `logistic_rows`, in the order the notebook counts them
VERDICTS = ("CI adds", "no detectable difference", "CI hurts", "confidence at ceiling", "too few samples")
#: confidence alone at or above this AUC (lower bootstrap bound) leaves nothing for CI to add
CEILING = 0.99


def _round(x, nd: int = 3):
    """float rounded to `nd` digits, None for None or NaN (never -0.0)."""
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), nd) + 0.0


def attacks(samples: dict) -> list:
    """[(AttackKey, Samples)] of `samples_of`'s attacks that have at least one successful example."""
    from . import experiment

    return [(k, s) for k, s in samples.items() if k != experiment.CLEAN and s.n]


def roc_row(clean_scores, adv_scores, direction: str = FIXED) -> dict:
    """n_clean, n_adv, auc, tpr@5%fpr, realised fpr of one score (larger = suspicious), NaN scores dropped.

    `direction` FIXED scores as given; TWO_SIDED first maps both sides to `metrics.two_sided_scores`
    (clean tails, clean samples leave-one-out). Undefined metrics are None.
    """
    from . import metrics

    c = np.asarray(clean_scores, np.float64)
    a = np.asarray(adv_scores, np.float64)
    c, a = c[~np.isnan(c)], a[~np.isnan(a)]
    row = {"n_clean": int(c.size), "n_adv": int(a.size), "auc": None, "tpr@5%fpr": None, "realised fpr": None}
    if direction == TWO_SIDED:
        if c.size < 2 or not a.size:
            return row
        c, a = metrics.two_sided_scores(c, a)
    elif direction != FIXED:
        raise ValueError(f"direction: expected {FIXED!r} or {TWO_SIDED!r}, got {direction!r}")
    r = metrics.detection_row(c, a, fpr=0.05)
    return row | {"auc": _round(r["auc"]), "tpr@5%fpr": _round(r["tpr_at_5fpr"]),
                  "realised fpr": _round(r["realised_fpr"])}


def zero_share_rows(by_definition: dict, meta: dict) -> list[dict]:
    """One row per group of one setting: N, K, share of p_c == 1.0, and per definition the share of CI
    values exactly 0 and the median number of zero filters per sample.

    by_definition: {definition: `samples_of` result} (the same groups under each); meta: leading columns.
    """
    first = next(iter(by_definition.values()))
    rows = []
    for group, s in first.items():
        row = dict(meta) | {"samples": s.name, "N": s.n, "K": s.n_filters,
                            "p = 1.0": _round(s.saturated.mean()) if s.n else None}
        for defn, S in by_definition.items():
            z = S[group].ci_zero
            row[f"zero share: {defn}"] = _round(z.sum() / (z.size * s.n_filters)) if z.size else None
            row[f"median #zero: {defn}"] = float(np.median(z)) if z.size else None
        rows.append(row)
    return rows


def confidence_roc_rows(samples: dict, meta: dict) -> list[dict]:
    """ROC rows of every confidence score x direction (FIXED = low confidence suspicious, TWO_SIDED) x attack."""
    from . import experiment

    clean = samples[experiment.CLEAN]
    return [dict(meta) | {"strategy": name, "score": SCORE_NAMES[name],
                          "direction": "conventional" if direction == FIXED else direction, "attack": key.label}
            | roc_row(clean.confidence_score(name), adv.confidence_score(name), direction)
            for name in SCORES for direction in (FIXED, TWO_SIDED) for key, adv in attacks(samples)]


def strategy_roc_rows(samples: dict, meta: dict) -> list[dict]:
    """ROC rows of every CI score x direction (FIXED = the paper's, TWO_SIDED) x attack."""
    from . import experiment

    clean = samples[experiment.CLEAN]
    return [dict(meta) | {"strategy": v, "score": CI_NAMES[v],
                          "direction": "paper" if direction == FIXED else direction, "attack": key.label}
            | roc_row(clean.ci_score(v), adv.ci_score(v), direction)
            for v in CI_VARIANTS for direction in (FIXED, TWO_SIDED) for key, adv in attacks(samples)]


def binned_rows(samples: dict, meta: dict, n_bins: int = 4, with_confidence: bool = False) -> tuple[list, list]:
    """(per-bin rows, one summary row per score and attack) of `metrics.binned_auc` within bins of the
    confidence score ``msp`` (log(1 - p_max)) pooled over clean and adversarial samples.

    Summary rows: ``auc`` overall, ``within bins`` (`metrics.within_bin_auc`) and the number of
    clean/adversarial pairs sharing a bin. `with_confidence` adds the ``msp`` score itself (its
    ``definition`` column reads "(confidence)").
    """
    from . import experiment, metrics

    clean = samples[experiment.CLEAN]
    cases = [(v, CI_NAMES[v], lambda s, v=v: s.ci_score(v), meta) for v in CI_VARIANTS]
    if with_confidence:
        cases.append(("msp", SCORE_NAMES["msp"], lambda s: s.confidence_score("msp"),
                      dict(meta) | ({"definition": "(confidence)"} if "definition" in meta else {})))
    per_bin, summary = [], []
    for v, name, score, m in cases:
        for key, adv in attacks(samples):
            bins = metrics.binned_auc(score(clean), score(adv), clean.confidence_score("msp"),
                                      adv.confidence_score("msp"), n_bins=n_bins)
            base = dict(m) | {"strategy": v, "score": name, "attack": key.label}
            per_bin += [base | {k: (_round(x, 4) if isinstance(x, float) else x) for k, x in b.items()} for b in bins]
            summary.append(base | {"auc": _round(metrics.roc_auc(score(clean), score(adv), nan_policy="omit")),
                                   "within bins": _round(metrics.within_bin_auc(bins)),
                                   "pairs in shared bins": int(sum(b["n_clean"] * b["n_adv"] for b in bins))})
    return per_bin, summary


def rated(rows, **match) -> list[dict]:
    """The rows that have an AUC and match every ``key=value`` of `match`."""
    return [r for r in rows if r["auc"] is not None and all(r[k] == v for k, v in match.items())]


def distance_from_chance(auc: float) -> float:
    """|AUC - 0.5|: how far a score is from telling nothing, in either direction."""
    return abs(auc - 0.5)


def verdict(r: dict) -> str:
    """One of `VERDICTS` for a `metrics.logistic_cv_comparison` result (base = confidence, extra = CI)."""
    if not r["n_splits"]:
        return "too few samples"
    if r["auc_base_lo"] >= CEILING:
        return "confidence at ceiling"
    if r["delta_lo"] > 0:
        return "CI adds"
    if r["delta_hi"] < 0:
        return "CI hurts"
    return "no detectable difference"


LOGISTIC_KEYS = ("auc_base", "auc_extra", "auc_both", "delta")


def logistic_rows(samples: dict, meta: dict, *, n_splits: int = 5, seed: int = 0, n_boot: int = 1000) -> list[dict]:
    """Per attack: `metrics.logistic_cv_comparison` of confidence features (base) against CI features
    (extra) and both, clean images (0) against the attack's successes (1), grouped by source image; with
    the `verdict`. Columns: meta, attack, n_clean, n_adv, folds, the AUCs and delta with ``_lo``/``_hi``."""
    from . import experiment, metrics

    clean = samples[experiment.CLEAN]
    rows = []
    for key, adv in attacks(samples):
        y, groups, Xc, Xi = labelled(clean, adv)
        r = metrics.logistic_cv_comparison(Xc, Xi, y, groups, n_splits=n_splits, seed=seed, n_boot=n_boot)
        rows.append(dict(meta) | {"attack": key.label, "n_clean": r["n_neg"], "n_adv": r["n_pos"],
                                  "folds": r["n_splits"]}
                    | {f"{k}{s}": _round(r[f"{k}{s}"]) for k in LOGISTIC_KEYS for s in ("", "_lo", "_hi")}
                    | {"verdict": verdict(r)})
    return rows
