"""The four detection strategies of CausAdv (paper section 3.2), as pure functions of CI vectors.

Inputs are plain numpy arrays (no TensorFlow here):

  ci         (N, K) float  CI vector of each sample, for the class the model predicted for it
  predicted  (N,)   int    the predicted class of each sample
  proto      (C, K) float  CI vector of each class's prototype (row c = class c); an all-NaN row marks
                           a class without a prototype (``prototypes.Prototypes.ci`` writes those)

Every strategy returns a `StrategyResult`: the paper's verdict ``flagged`` (True = adversarial) and a
continuous ``score`` (larger = more suspicious, in the paper's direction) for ROC analysis, per sample.
A sample whose predicted class has no prototype cannot be judged by S2 or S4: it is *not counted*
(``counted`` False, ``flagged`` False, ``score`` NaN) and reported in ``n_uncounted``; pass
``result.score[result.counted]`` to the metrics. S1 and S3 need no prototype and count every sample.

Verdict rules (paper text quoted; where the paper is ambiguous the choice is stated):

S1 causal feature existence -- "adversarial if |F_W| <= n", F_W = {k : CI_k > 0}.
   flagged: #(CI > 0) <= n.  score: -#(CI > 0).  statistic: #(CI > 0).
S2 Pearson correlation with the prototypes, two modes:
   "threshold" (CIFAR-10, Table 2) -- "natural if rho(x, x_prot_phi) >= tau, otherwise adversarial".
       flagged: rho < threshold.  score: -rho.  statistic: rho.
   "topk" (ImageNet, Table 1) -- "suspicious if its predicted label phi is not included in the top 5
       correlated prototypes". The paper adds "every sample is compared with all the 1k classes except
       the class itself", which contradicts the rule; the authors' code correlates the sample with
       *every* prototype, its own class's included, and checks whether the predicted class is among the
       5 most correlated. We follow the code. rank = #{valid prototypes j : rho_j >= rho_phi} (ties
       counted against the sample, so a constant CI vector, correlated 0 with everything, ranks last).
       flagged: rank > k.  score: rank.  statistic: rank.
   Pearson rho of a constant vector (all-zero CI rows happen, e.g. BIM on ImageNet) is undefined; it
   is defined here as 0, without warnings. Prototype classes without a prototype take no part.
S3 zero effect -- section 3.2 says "adversarial if |F_Z0| < n", but Table 3 counts the samples "having
   more than n zero filters" as the clean-looking ones; we follow the table so that verdict and count
   agree: flagged: #(CI == 0) <= n (fewer zeros = adversarial: "clean samples tend to have several zero
   filters").  score: -#(CI == 0).  statistic: #(CI == 0). Zeros are exact (-0.0 counts).
S4 common robust causal features -- top-n causal filters of the sample (CI > 0, ranked by CI, ties to the
   lower filter index) against the top-m causal filters of the predicted class's prototype, m >= n. The
   paper's formula ("adversarial if F_Wn cap F_Wm != empty") has its sign inverted by a typo; its
   sentence reads "adversarial if it has [not] at least top n causal filters present in top m causal
   filters of the prototype" and Figure 3 counts the samples "that intersect with their classes
   prototypes". The counts it prints (164, 182, 128 for 3/10, 5/20, 10/30) fall from 5/20 to 10/30,
   which rules out "non-empty intersection" (monotone non-decreasing in n and m) and fits containment.
   rule="subset" (default): shares iff all n top causal filters exist and lie in the prototype's top m
   (a sample with fewer than n causal filters does not share).  rule="intersect": shares iff at least
   one is common.  rule=r (int): shares iff at least r are common.
   flagged: not shares.  score: -#common.  statistic: #common.

`evaluate_all` also takes the objects that carry these arrays: a `ci.CIResult` for `ci` (its ``predicted``
comes with it) and a `prototypes.Prototypes` for `proto`, and then refuses a pair whose CI layer or CI
definition differ (they are recognised by their fields, so that this module needs no TensorFlow):

    >>> res = evaluate_all(ci_result, protos, dataset="cifar10")       # = evaluate_all(ci_result.ci,
    ...                                                                #   ci_result.predicted, protos.ci, ...)

`paper_count` gives the count the paper prints: Tables 1-3 and Figure 3 count the samples that *pass*
(look clean); for S1 the paper reports detections (samples without enough causal features).

    >>> res = evaluate_all(ci, predicted, protos.ci, dataset="cifar10")
    >>> {r.name: paper_fraction(r) for r in res}           # {"S2(rho>=0.5)": "65/100", ...}
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from . import checks
from .vocab import DATASETS, S1_NS, S2_THRESHOLD, S2_TOPK, S3_NS, S4_NMS, variant_name


@dataclass(frozen=True, eq=False)
class StrategyResult:
    """One strategy variant applied to N samples (arrays are read-only, one entry per sample)."""

    name: str                  # e.g. "S4(3/10)"
    strategy: str              # "s1" .. "s4"
    params: Mapping            # the parameters of the variant
    flagged: np.ndarray        # (N,) bool: the paper's verdict, True = adversarial; False where not counted
    score: np.ndarray          # (N,) float64: larger = more suspicious; NaN where not counted
    counted: np.ndarray        # (N,) bool: False where the predicted class has no prototype (S2, S4)
    statistic: np.ndarray      # (N,) float64: the raw quantity (count, rho, rank, ...); NaN where not counted
    statistic_name: str
    paper_side: str            # what the paper's count counts: "flagged" or "passed"

    @property
    def n(self) -> int:
        return int(self.flagged.shape[0])

    @property
    def n_counted(self) -> int:
        return int(self.counted.sum())

    @property
    def n_uncounted(self) -> int:
        return self.n - self.n_counted

    @property
    def n_flagged(self) -> int:
        return int(self.flagged.sum())

    @property
    def n_passed(self) -> int:
        """Counted samples that the strategy judges clean."""
        return int((self.counted & ~self.flagged).sum())


def paper_count(result: StrategyResult) -> int:
    """The count the paper prints for this strategy: passed samples (S2, S3, S4), flagged ones (S1)."""
    return result.n_flagged if result.paper_side == "flagged" else result.n_passed


def paper_fraction(result: StrategyResult) -> str:
    """``"count/N"`` as the paper's tables print it; N counts every sample, uncounted ones included."""
    return f"{paper_count(result)}/{result.n}"


# --------------------------------------------------------------------------- validation

def _float_matrix(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (rows, K) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name}: expected a floating-point array (float32 CI values), got dtype {arr.dtype}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one filter (K >= 1), got shape {arr.shape}")
    return arr


def check_ci(ci) -> np.ndarray:
    """`ci` as a float64 (N, K) array of finite CI values, or a ValueError naming the first bad value."""
    arr = _float_matrix(ci, "ci")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, k = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"ci: {int(bad.any(axis=1).sum())} row(s) hold non-finite values (first: row {i}, "
                         f"filter {k} = {arr[i, k]}); every sample's CI vector must be finite")
    return arr.astype(np.float64)


def check_proto(proto, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(proto as float64, valid (C,) bool): a row is either finite (valid) or all NaN (no prototype)."""
    arr = _float_matrix(proto, "proto")
    if arr.shape[1] != k:
        raise ValueError(f"proto: expected K = {k} columns like ci, got shape {arr.shape}")
    if np.isinf(arr).any():
        i = int(np.argwhere(np.isinf(arr))[0][0])
        raise ValueError(f"proto: row {i} holds an infinite value; prototype rows must be finite or all NaN")
    nan = np.isnan(arr)
    partial = nan.any(axis=1) & ~nan.all(axis=1)
    if partial.any():
        i = int(np.flatnonzero(partial)[0])
        raise ValueError(f"proto: row {i} is partly NaN ({int(nan[i].sum())} of {k}); a row must be finite "
                         "or all NaN (class without a prototype)")
    return arr.astype(np.float64), ~nan.all(axis=1)


def _check_predicted(predicted, n: int, n_classes: int) -> np.ndarray:
    arr = np.asarray(predicted)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"predicted: expected shape ({n},) (one class per row of ci), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"predicted: expected an integer class array, got dtype {arr.dtype}")
    if n and (arr.min() < 0 or arr.max() >= n_classes):
        bad = arr[(arr < 0) | (arr >= n_classes)][0]
        raise ValueError(f"predicted: class {int(bad)} outside the prototype rows 0..{n_classes - 1}")
    return arr.astype(np.int64)


def _check_int(value, name: str, low: int) -> int:
    return checks.integer(value, name, minimum=low)


def _readonly(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _result(name, strategy, params, flagged, score, counted, statistic, statistic_name, side):
    flagged = np.asarray(flagged, bool) & counted
    score = np.where(counted, score, np.nan).astype(np.float64)
    statistic = np.where(counted, statistic, np.nan).astype(np.float64)
    _readonly(flagged, score, counted, statistic)
    return StrategyResult(name, strategy, MappingProxyType(dict(params)), flagged, score, counted,
                          statistic, statistic_name, side)


# --------------------------------------------------------------------------- strategies

def s1_causal_existence(ci, n: int = 0) -> StrategyResult:
    """S1: adversarial if the sample has at most `n` causal filters (CI > 0)."""
    x = check_ci(ci)
    n = _check_int(n, "n", 0)
    count = (x > 0).sum(axis=1)
    counted = np.ones(x.shape[0], bool)
    return _result(variant_name("s1", n=n), "s1", {"n": n}, count <= n, -count, counted, count,
                   "causal filters (CI > 0)", "flagged")


def _standardised_rows(x: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm; a constant row (Pearson undefined) becomes all zeros."""
    scale = np.abs(x).max(axis=1, keepdims=True)
    x = x / np.where(scale > 0, scale, 1.0)        # Pearson is scale-free; avoids underflow of tiny CIs
    centred = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt((centred * centred).sum(axis=1, keepdims=True))
    constant = (x.max(axis=1, keepdims=True) == x.min(axis=1, keepdims=True)) | (norm == 0)
    return np.where(constant, 0.0, centred / np.where(constant, 1.0, norm))


def pearson_matrix(ci, proto) -> np.ndarray:
    """(N, C) Pearson rho between every sample and every prototype; 0 where either vector is constant,
    NaN in the columns of classes without a prototype."""
    x = check_ci(ci)
    p, valid = check_proto(proto, x.shape[1])
    rho = np.clip(_standardised_rows(x) @ _standardised_rows(np.where(valid[:, None], p, 0.0)).T, -1.0, 1.0)
    rho[:, ~valid] = np.nan
    return rho


def s2_pearson(ci, predicted, proto, mode: str = "topk", k: int = S2_TOPK,
               threshold: float = S2_THRESHOLD) -> StrategyResult:
    """S2: Pearson correlation of the sample's CI vector with the prototypes (module docstring)."""
    x = check_ci(ci)
    p, valid = check_proto(proto, x.shape[1])
    pred = _check_predicted(predicted, x.shape[0], p.shape[0])
    counted = valid[pred]
    zx = _standardised_rows(x)
    zp = _standardised_rows(np.where(valid[:, None], p, 0.0))
    if mode == "threshold":
        threshold = checks.number(threshold, "threshold", low=-1.0, high=1.0)
        rho = np.clip((zx * zp[pred]).sum(axis=1), -1.0, 1.0)
        return _result(variant_name("s2", mode=mode, threshold=threshold), "s2", {"mode": mode, "threshold": threshold},
                       rho < threshold, -rho, counted, rho, "Pearson rho with the predicted class's prototype",
                       "passed")
    if mode == "topk":
        k = _check_int(k, "k", 1)
        if k > p.shape[0]:
            raise ValueError(f"k: expected at most {p.shape[0]} (the number of classes, prototype rows), got {k}: "
                             "every class would be in the top-k")
        rho = np.clip(zx @ zp.T, -1.0, 1.0)
        rho[:, ~valid] = -np.inf                    # classes without a prototype never compete
        own = rho[np.arange(x.shape[0]), pred]
        rank = (rho >= own[:, None]).sum(axis=1).astype(np.float64)
        return _result(variant_name("s2", mode=mode, k=k), "s2", {"mode": mode, "k": k}, rank > k, rank, counted, rank,
                       "rank of the predicted class among the prototypes by rho (ties count against it)",
                       "passed")
    raise ValueError(f"mode: expected 'topk' (ImageNet, Table 1) or 'threshold' (CIFAR-10, Table 2), got {mode!r}")


def s3_zero_effect(ci, n: int = 5) -> StrategyResult:
    """S3: adversarial if the sample has at most `n` filters with CI exactly 0 (Table 3 counts > n)."""
    x = check_ci(ci)
    n = _check_int(n, "n", 0)
    zeros = (x == 0).sum(axis=1)
    counted = np.ones(x.shape[0], bool)
    return _result(variant_name("s3", n=n), "s3", {"n": n}, zeros <= n, -zeros, counted, zeros,
                   "zero filters (CI == 0)", "passed")


def top_causal(ci, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-`n` causal filters of each row: (indices (rows, n) int64, present (rows, n) bool).

    Filters with CI > 0 only, by decreasing CI, ties to the lower filter index (stable sort); a row with
    fewer than n causal filters has ``present`` False in its last columns (their index is meaningless).
    """
    x = np.asarray(ci, dtype=np.float64)
    n = _check_int(n, "n", 1)
    keys = np.where(x > 0, -x, np.inf)
    order = _first_stable(keys, n)
    present = np.take_along_axis(x, order, axis=1) > 0
    return order, present


def _first_stable(keys: np.ndarray, n: int) -> np.ndarray:
    """``np.argsort(keys, axis=1, kind="stable")[:, :n]`` without sorting whole rows (K = 1280 filters for the n
    of a strategy): each row's n smallest keys are those below its n-th smallest, then the lowest-index ones equal
    to it; only these n are sorted (stably, so ties stay in filter order)."""
    rows, k = keys.shape
    if n >= k or rows == 0:
        return np.argsort(keys, axis=1, kind="stable")[:, :n]
    kth = np.partition(keys, n - 1, axis=1)[:, n - 1:n]
    below = keys < kth
    at = keys == kth
    room = n - below.sum(axis=1, keepdims=True)          # how many of the keys equal to kth are taken, >= 1
    chosen = below | (at & (np.cumsum(at, axis=1) <= room))
    idx = np.nonzero(chosen)[1].reshape(rows, n)         # n per row, in filter order
    within = np.argsort(np.take_along_axis(keys, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, within, axis=1)


def s4_common_features(ci, predicted, proto, n: int = 3, m: int = 10, rule="subset") -> StrategyResult:
    """S4: top-n causal filters of the sample against top-m of its predicted class's prototype."""
    x = check_ci(ci)
    p, valid = check_proto(proto, x.shape[1])
    pred = _check_predicted(predicted, x.shape[0], p.shape[0])
    n = _check_int(n, "n", 1)
    m = _check_int(m, "m", 1)
    if m > x.shape[1]:
        raise ValueError(f"m: expected at most K = {x.shape[1]} (the filters of the layer), got m={m}")
    if m < n:
        raise ValueError(f"m: the paper requires m >= n, got n={n}, m={m}")
    if rule == "subset":
        need = n
    elif rule == "intersect":
        need = 1
    elif isinstance(rule, (int, np.integer)) and not isinstance(rule, bool) and 1 <= rule <= n:
        need = int(rule)
    else:
        raise ValueError(f"rule: expected 'subset', 'intersect' or an integer in 1..n={n}, got {rule!r}")
    counted = valid[pred]
    p_idx, p_present = top_causal(np.where(valid[:, None], p, 0.0), m)
    member = np.zeros(p.shape, bool)                # (C, K): filter in the prototype's top-m causal set
    rows = np.repeat(np.arange(p.shape[0]), p_idx.shape[1]).reshape(p_idx.shape)
    member[rows[p_present], p_idx[p_present]] = True
    s_idx, s_present = top_causal(x, n)
    common = (member[pred[:, None], s_idx] & s_present).sum(axis=1)
    return _result(variant_name("s4", n=n, m=m), "s4", {"n": n, "m": m, "rule": rule}, common < need, -common, counted,
                   common, "top-n causal filters in the prototype's top-m", "passed")


# --------------------------------------------------------------------------- registry

STRATEGIES: Mapping[str, Callable[..., StrategyResult]] = MappingProxyType({
    "s1": s1_causal_existence, "s2": s2_pearson, "s3": s3_zero_effect, "s4": s4_common_features})


def paper_variants(dataset: str) -> tuple[tuple[str, dict], ...]:
    """The strategy variants of the paper's tables for `dataset`: (strategy key, keyword arguments).

    S2 runs in the dataset's mode (ImageNet: top-5, Table 1; CIFAR-10: rho >= 0.5, Table 2). S3 and S4,
    which the paper reports on one dataset each, run on both so their usefulness can be checked.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset: expected one of {DATASETS}, got {dataset!r}")
    s2 = {"mode": "topk", "k": S2_TOPK} if dataset == "imagenet" else {"mode": "threshold", "threshold": S2_THRESHOLD}
    return (tuple(("s1", {"n": n}) for n in S1_NS) + (("s2", s2),)
            + tuple(("s3", {"n": n}) for n in S3_NS) + tuple(("s4", {"n": n, "m": m}) for n, m in S4_NMS))


def _does_not_fit(key: str, kwargs: dict, ci, proto) -> bool:
    """A paper variant whose parameters exceed the model: S2 top-k with k above the number of classes, S4 with
    m above the layer's K (a small model of your own)."""
    K, C = np.shape(ci)[-1], np.shape(proto)[0]
    return (key == "s2" and kwargs.get("mode") == "topk" and kwargs["k"] > C) or (key == "s4" and kwargs["m"] > K)


def _unfit(key: str, kwargs: dict, n: int) -> StrategyResult:
    """The result of a variant that cannot judge these samples: every sample uncounted (as a class without a
    prototype is), so tables say "uncounted" and ROC rows have no AUC, instead of a silently degenerate rule."""
    none = np.zeros(n, bool)
    nan = np.full(n, np.nan)
    side = "passed"
    return _result(variant_name(key, **kwargs), key, kwargs, none, nan, none, nan,
                   "does not fit the model (parameter above the number of classes or filters)", side)


def _is_ci_result(obj) -> bool:
    """A `ci.CIResult` (recognised by its fields: importing `ci` would import TensorFlow)."""
    return not isinstance(obj, np.ndarray) and all(hasattr(obj, a) for a in ("ci", "predicted", "target", "layer",
                                                                             "definition"))


def _is_prototypes(obj) -> bool:
    """A `prototypes.Prototypes` (recognised by its fields, like `_is_ci_result`)."""
    return not isinstance(obj, np.ndarray) and all(hasattr(obj, a) for a in ("ci", "missing", "layer", "definition"))


def same_layer(a: str, b: str) -> bool:
    """Two names of one CI layer: equal, or a nested model's ``outer/inner`` and its unique inner name alone."""
    return a == b or ("/" not in a and b.rsplit("/", 1)[-1] == a) or ("/" not in b and a.rsplit("/", 1)[-1] == b)


def _unpack(ci, predicted, proto) -> tuple:
    """(ci, predicted, proto) as arrays from a `ci.CIResult` and `prototypes.Prototypes` or the arrays
    themselves; a pair of objects whose CI layer or definition differ is refused."""
    if proto is None and _is_prototypes(predicted) and _is_ci_result(ci):
        predicted, proto = None, predicted                    # evaluate_all(ci_result, protos, ...)
    if _is_prototypes(ci):
        raise TypeError("ci: got Prototypes; pass the samples' CI vectors first (a CIResult or an (N, K) array) "
                        "and the prototypes as proto")
    if _is_ci_result(proto):
        raise TypeError("proto: got a CIResult; expected the prototypes (a Prototypes or a (C, K) array)")
    if _is_prototypes(predicted):
        raise TypeError("predicted: got Prototypes; pass evaluate_all(ci, predicted, protos), or "
                        "evaluate_all(ci_result, protos) with a CIResult, which carries the predicted classes")
    sample = None
    if _is_ci_result(ci):
        sample, ci = ci, ci.ci
        own = np.asarray(sample.predicted)
        if predicted is None:
            predicted = own
        elif np.shape(predicted) != own.shape or not np.array_equal(np.asarray(predicted), own):
            raise ValueError("predicted: differs from the predicted classes the CIResult carries; pass "
                             "predicted=None (or leave it out) to use them")
        off = np.asarray(sample.target) != own
        if off.any():
            raise ValueError(f"ci: the CIResult holds CI vectors of a target class other than the predicted one in "
                             f"{int(off.sum())} of {off.size} rows (first: row {int(np.flatnonzero(off)[0])}); the "
                             "strategies compare the CI vector of the predicted class with its prototype: compute "
                             "it with target=None")
    if predicted is None:
        raise TypeError("predicted: missing; pass the predicted class of every row of ci (a CIResult carries them)")
    if proto is None:
        raise TypeError("proto: missing; pass the prototypes (a Prototypes or a (C, K) array)")
    if _is_prototypes(proto):
        protos, proto = proto, proto.ci
        if sample is not None and (not same_layer(str(sample.layer), str(protos.layer))
                                   or sample.definition != protos.definition):
            raise ValueError(f"ci and proto do not match: the CI vectors are of layer {sample.layer!r} with "
                             f"definition {sample.definition!r}, the prototypes' of layer {protos.layer!r} with "
                             f"definition {protos.definition!r}; compute both on the same layer with the same "
                             "definition")
    return ci, predicted, proto


def evaluate_all(ci, predicted=None, proto=None, dataset: str = "imagenet", s4_rule="subset") -> list[StrategyResult]:
    """Every variant of `paper_variants(dataset)` on the same samples, in table order. A variant whose
    parameters exceed the model (S2 top-5 with 5 classes or fewer, S4 m/K with fewer than m filters) counts
    no sample (`_unfit`).

    `ci`, `predicted`, `proto`: the arrays of the module docstring; or a `ci.CIResult` as `ci` (`predicted`
    then defaults to its own, and must equal it if given) and a `prototypes.Prototypes` as `proto`, also as
    ``evaluate_all(ci_result, protos, dataset=...)``. A CIResult and Prototypes of different CI layers or
    definitions are refused (ValueError naming both), as is a CIResult computed for a target other than the
    predicted class.
    """
    ci, predicted, proto = _unpack(ci, predicted, proto)
    out = []
    for key, kwargs in paper_variants(dataset):
        fn = STRATEGIES[key]
        if _does_not_fit(key, kwargs, ci, proto):
            out.append(_unfit(key, kwargs, check_ci(ci).shape[0]))
        elif key in ("s1", "s3"):
            out.append(fn(ci, **kwargs))
        elif key == "s4":
            out.append(fn(ci, predicted, proto, rule=s4_rule, **kwargs))
        else:
            out.append(fn(ci, predicted, proto, **kwargs))
    return out
