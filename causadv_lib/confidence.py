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
then gets an AUC below 0.5; the two-sided score of `metrics.clean_tail_score` (direction from clean
images only) is the honest alternative, reported beside it.

    >>> z = np.array([[20.0, 0, 0], [30.0, 0, 0]], np.float32)   # float32 softmax: p_max == 1.0 for both
    >>> msp_score(z)                                             # log(2) - 20, log(2) - 30: still ordered
    >>> scores(z)                                                # {"msp": ..., "margin": ..., "entropy": ...}

`causadv_lib.analysis.confidence` assembles, on the shared experiment, the per-sample confidence and CI
features of the clean set and of each attack, and notebook 08's comparison.
"""
from __future__ import annotations

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
