"""Causal or merely confident? (notebook 08): per-sample confidence and CI features of the clean set and of
each attack's successes, their ROC rows in both directions, AUC within bins of equal confidence, and
cross-validated logistic models (confidence alone against confidence + CI) with their verdict.

The confidence scores come from `causadv_lib.confidence` (exact from the logits); the CI scores are the
strategies' (`analysis.tables.strategy_results`); the samples are the experiment's groups.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import experiment, metrics
from ..confidence import SCORE_NAMES, SCORES, features
from ..text import interval, num, percent
from ..vocab import CLEAN, MAX_CI, ROC_VARIANTS, S3_5
from ..vocab import SCORE_NAMES as STRATEGY_NAMES
from .tables import auc_tpr, pivot, strategy_results

#: The CI features: the continuous score of each strategy (`vocab.ROC_VARIANTS`; the S1 and S3
#: variants differ only in their threshold) and the largest CI value (low = suspicious), all with
#: larger = more suspicious in the paper's direction.
CI_VARIANTS = ROC_VARIANTS
CI_NAMES = STRATEGY_NAMES | {MAX_CI: "-max CI (not in the paper)"}


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
    successful examples at `eps` (default: every budget), the same samples as `analysis.tables.strategy_results`.

    `exp` may be an experiment under any CI definition (`experiment.with_definition`): the CI features
    follow its CI vectors and prototypes; the confidence features come from the logits
    (`experiment.logits`), which do not depend on the definition.
    """
    results = strategy_results(exp, eps)
    out = {}
    for g in exp.groups(eps):
        ci_ = g.ci
        pred = g.predicted
        z = experiment.logits(exp, g.key)[g.mask]
        if len(z) and not np.array_equal(z.argmax(axis=1), pred):
            raise RuntimeError(f"{exp.setup.label}, {g.name}: the logits' argmax differs from the CI pass's "
                               "prediction for some samples")
        cols = []
        for v in CI_VARIANTS:
            if v == MAX_CI:
                cols.append(-ci_.max(axis=1).astype(np.float64) if len(ci_) else np.zeros(0))
            else:
                cols.append(results[g.id][v].score)
        out[g.id] = Samples(g.name, g.key, g.source.astype(np.int64), features(z),
                            np.column_stack(cols) if len(ci_) else np.zeros((0, len(CI_VARIANTS))),
                            (ci_ == 0).sum(axis=1), g.result.ci.shape[1], g.probability == 1.0)
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
    return [(k, s) for k, s in samples.items() if k != CLEAN and s.n]


def roc_row(clean_scores, adv_scores, direction: str = FIXED) -> dict:
    """n_clean, n_adv, auc, tpr@5%fpr, realised fpr of one score (larger = suspicious), NaN scores dropped.

    `direction` FIXED scores as given; TWO_SIDED first maps both sides to `metrics.two_sided_scores`
    (clean tails, clean samples leave-one-out). Undefined metrics are None.
    """
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


def _roc_rows(samples: dict, meta: dict, names: dict, score, fixed: str) -> list[dict]:
    """ROC rows of every score of `names` x direction (`fixed` = FIXED's label, TWO_SIDED) x attack;
    ``score(samples, name)`` gives a group's scores."""
    clean = samples[CLEAN]
    return [dict(meta) | {"strategy": name, "score": label, "direction": fixed if direction == FIXED else direction,
                          "attack": key.label}
            | roc_row(score(clean, name), score(adv, name), direction)
            for name, label in names.items() for direction in (FIXED, TWO_SIDED) for key, adv in attacks(samples)]


def confidence_roc_rows(samples: dict, meta: dict) -> list[dict]:
    """ROC rows of every confidence score x direction (FIXED = low confidence suspicious, TWO_SIDED) x attack."""
    return _roc_rows(samples, meta, {n: SCORE_NAMES[n] for n in SCORES}, Samples.confidence_score, "conventional")


def strategy_roc_rows(samples: dict, meta: dict) -> list[dict]:
    """ROC rows of every CI score x direction (FIXED = the paper's, TWO_SIDED) x attack."""
    return _roc_rows(samples, meta, {v: CI_NAMES[v] for v in CI_VARIANTS}, Samples.ci_score, "paper")


def binned_rows(samples: dict, meta: dict, n_bins: int = 4, with_confidence: bool = False) -> tuple[list, list]:
    """(per-bin rows, one summary row per score and attack) of `metrics.binned_auc` within bins of the
    confidence score ``msp`` (log(1 - p_max)) pooled over clean and adversarial samples.

    Summary rows: ``auc`` overall, ``within bins`` (`metrics.within_bin_auc`) and the number of
    clean/adversarial pairs sharing a bin. `with_confidence` adds the ``msp`` score itself (its
    ``definition`` column reads "(confidence)").
    """
    clean = samples[CLEAN]
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
    clean = samples[CLEAN]
    rows = []
    for key, adv in attacks(samples):
        y, groups, Xc, Xi = labelled(clean, adv)
        r = metrics.logistic_cv_comparison(Xc, Xi, y, groups, n_splits=n_splits, seed=seed, n_boot=n_boot)
        rows.append(dict(meta) | {"attack": key.label, "n_clean": r["n_neg"], "n_adv": r["n_pos"],
                                  "folds": r["n_splits"]}
                    | {f"{k}{s}": _round(r[f"{k}{s}"]) for k in LOGISTIC_KEYS for s in ("", "_lo", "_hi")}
                    | {"verdict": verdict(r)})
    return rows


# ---------------------------------------------------------------- notebook 08's pivots and sentences
def zero_compact(zero_rows: list[dict], definitions) -> list[dict]:
    """`zero_share_rows` for reading: per group the share of p = 1.0 and, per definition, the share of
    exact zeros with the median zero filters per sample out of K."""
    return [{"dataset": r["dataset"], "eps": r["eps"], "samples": r["samples"], "N": r["N"],
             "p = 1.0": percent(r["p = 1.0"]),
             **{x: f"{percent(r[f'zero share: {x}'])} (median {num(r[f'median #zero: {x}'], 0)}/{r['K']})"
                for x in definitions}} for r in zero_rows]


def zero_lines(zero_rows: list[dict], settings: list[dict]) -> list[str]:
    """One sentence per setting (`settings`: the meta columns, dataset and eps labels) on the exact zeros of
    clean and adversarial samples under the probability and log-probability CIs."""
    lines = []
    for meta in settings:
        by = {r["samples"]: r for r in zero_rows if r["dataset"] == meta["dataset"] and r["eps"] == meta["eps"]}
        clean = by[CLEAN]
        adv = [r for name, r in by.items() if name != CLEAN and r["N"]]
        if not adv:
            continue
        hi = max(adv, key=lambda r: r["median #zero: probability"])
        lo = min(adv, key=lambda r: r["median #zero: probability"])
        lines.append(
            f"* **{meta['dataset']}, eps {meta['eps']}** (K = {clean['K']}): under the paper's probability CI the "
            f"median clean image has {num(clean['median #zero: probability'], 0)} zero filters; {hi['samples']} "
            f"{num(hi['median #zero: probability'], 0)}, {lo['samples']} {num(lo['median #zero: probability'], 0)}. "
            f"{percent(clean['p = 1.0'])} of the clean predictions and {percent(hi['p = 1.0'])} of the {hi['samples']} "
            f"ones have p = 1.0 in float32. Under log_probability the clean median is "
            f"{num(clean['median #zero: log_probability'], 0)} ({hi['samples']}: "
            f"{num(hi['median #zero: log_probability'], 0)}): what remains are removals that change nothing at all.")
    return lines


def confidence_compact(conf_rows: list[dict]) -> list[dict]:
    """The confidence ROC rows pivoted: one row per (dataset, eps, score, direction), ``AUC / TPR`` per attack."""
    return pivot(conf_rows, ("dataset", "eps", "score", "direction"), auc_tpr)


def strategy_compact(strat_rows: list[dict]) -> list[dict]:
    """The strategy ROC rows pivoted: one row per (definition, dataset, eps, score), ``paper / two-sided``
    AUC per attack."""
    def cell(r, previous):
        c = previous or ["n/a", "n/a"]
        c[0 if r["direction"] == "paper" else 1] = num(r["auc"])
        return c
    rows = pivot(strat_rows, ("definition", "dataset", "eps", "score"), cell)
    return [{k: (" / ".join(v) if isinstance(v, list) else v) for k, v in row.items()} for row in rows]


def direction_lines(strat_rows: list[dict], definitions) -> tuple[list[str], dict]:
    """(one sentence per definition on the pairs whose AUC is below 0.5 in the paper's direction, and the
    record {definition: {below_half, rated}})."""
    lines = []
    for defn in definitions:
        paper_dir = rated(strat_rows, definition=defn, direction="paper")
        two = rated(strat_rows, definition=defn, direction=TWO_SIDED)
        below = [r for r in paper_dir if r["auc"] < 0.5]
        s3 = rated(strat_rows, definition=defn, direction="paper", strategy=S3_5)
        s3_lo = sorted({f"{r['attack']} ({r['dataset']} {r['eps']})" for r in s3 if r["auc"] < 0.5})
        s3_hi = sorted({f"{r['attack']} ({r['dataset']} {r['eps']})" for r in s3 if r["auc"] > 0.5})
        lines.append(
            f"* **{defn}**: {len(below)} of {len(paper_dir)} strategy/attack pairs have AUC below 0.5 in the paper's "
            f"direction (mean AUC {np.mean([r['auc'] for r in paper_dir]):.2f}; two-sided mean "
            f"{np.mean([r['auc'] for r in two]):.2f}). "
            f"S3 (fewer zeros = adversarial) has AUC above 0.5 for {len(s3_hi)} and below 0.5 for {len(s3_lo)} attack "
            "settings" + (f"; below for: {', '.join(s3_lo)}." if s3_lo else "."))
    record = {defn: {"below_half": sum(r["auc"] < 0.5 for r in rated(strat_rows, definition=defn, direction="paper")),
                     "rated": len(rated(strat_rows, definition=defn, direction="paper"))} for defn in definitions}
    return lines, record


def within_compact(within_rows: list[dict]) -> list[dict]:
    """The within-bin summary pivoted: ``AUC overall -> AUC within bins`` per attack."""
    return pivot(within_rows, ("definition", "dataset", "eps", "score"),
                 lambda r, _: f"{num(r['auc'])} -> {num(r['within bins'])}")


def within_summary(within_rows: list[dict], definitions, n_bins: int) -> tuple[list[str], dict]:
    """(sentences, record) on how far the strategies' AUCs move towards 0.5 within bins of equal confidence,
    per definition, with the confidence score itself for reference."""
    lines, within = [], {}
    gap = distance_from_chance
    for defn in definitions:
        rows = [r for r in within_rows if r["definition"] == defn and r["auc"] is not None
                and r["within bins"] is not None]
        if not rows:
            continue
        closer = sum(gap(r["within bins"]) < gap(r["auc"]) for r in rows)
        strong = [r for r in rows if gap(r["auc"]) >= 0.2]
        kept = [r for r in strong if gap(r["within bins"]) >= 0.2]
        within[defn] = {"rated": len(rows), "closer_to_half": closer,
                        "mean_gap": float(np.mean([gap(r["auc"]) for r in rows])),
                        "mean_gap_within": float(np.mean([gap(r["within bins"]) for r in rows])),
                        "strong": len(strong), "strong_kept": len(kept)}
        w = within[defn]
        lines.append(f"* **{defn}**: inside confidence bins {closer} of {len(rows)} strategy/attack AUCs move towards "
                     f"0.5; the mean distance from 0.5 goes from {w['mean_gap']:.2f} to {w['mean_gap_within']:.2f}. "
                     f"Of the {len(strong)} pairs with AUC outside 0.3-0.7 overall, {len(kept)} stay outside it "
                     "within bins.")
    conf_within = [r for r in within_rows
                   if r["strategy"] == "msp" and r["auc"] is not None and r["within bins"] is not None]
    if conf_within:
        c_all = float(np.mean([abs(r["auc"] - 0.5) for r in conf_within]))
        c_in = float(np.mean([abs(r["within bins"] - 0.5) for r in conf_within]))
        within["confidence"] = {"mean_gap": c_all, "mean_gap_within": c_in}
        lines.append(f"* For reference, the confidence score itself: mean distance from 0.5 {c_all:.2f} overall, "
                     f"{c_in:.2f} "
                     "within bins. " + ("The bins remove most of the confidence differences, so a strategy that keeps "
                                        "its distance within them carries something else."
                                        if c_in < 0.5 * c_all else
                                        f"With {n_bins} bins at this sample size the bins remove little of the "
                                        "confidence differences themselves, so this test is weak here; the logistic "
                                        "models below are the stronger test."))
    return lines, within


def logistic_display(cv_rows: list[dict]) -> list[dict]:
    """The logistic rows for reading: each AUC and delta with its interval, and the verdict."""
    return [{"definition": r["definition"], "dataset": r["dataset"], "eps": r["eps"], "attack": r["attack"],
             "n": f"{r['n_clean']}+{r['n_adv']}", "confidence": interval(r, "auc_base"), "CI": interval(r, "auc_extra"),
             "confidence + CI": interval(r, "auc_both"), "delta": interval(r, "delta"), "verdict": r["verdict"]}
            for r in cv_rows]


def _best_auc(rows: list[dict]) -> dict:
    best = {}
    for r in rows:
        k = (r["dataset"], r["eps"], r["attack"])
        best[k] = max(best.get(k, 0.0), r["auc"])
    return best


def the_answer(cv_rows: list[dict], strat_rows: list[dict], conf_rows: list[dict], within: dict, definitions,
               profile: str) -> tuple[list[str], dict]:
    """Notebook 08's answer: (sentences, record) computed from the logistic models' verdicts, the best single
    scores of each kind, and the within-bin summary."""
    lines, summary = [], {}
    n_adv = [r["n_adv"] for r in cv_rows if r["folds"]]
    for defn in definitions:
        rows = [r for r in cv_rows if r["definition"] == defn]
        count = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
        open_ = [r for r in rows if r["verdict"] in VERDICTS[:3]]
        med = float(np.median([r["delta"] for r in open_])) if open_ else math.nan
        width = float(np.median([r["delta_hi"] - r["delta_lo"] for r in open_])) if open_ else math.nan
        adds = [f"{r['attack']} ({r['dataset']} {r['eps']}, +{r['delta']:.2f})" for r in rows if r["verdict"] == "CI adds"]
        best = _best_auc(rated(strat_rows, definition=defn, direction="paper")
                         + rated(strat_rows, definition=defn, direction=TWO_SIDED))
        conf_best = _best_auc(rated(conf_rows))
        common = [k for k in best if k in conf_best]
        conf_wins = sum(conf_best[k] >= best[k] for k in common)
        summary[defn] = count | {"median_delta": med, "median_interval_width": width, "settings": len(rows),
                                 "confidence_at_least_as_good": conf_wins, "compared": len(common)}
        if not open_ and not count["confidence at ceiling"]:
            text = "there are too few samples to compare the models"
        elif not count["CI adds"]:
            text = ("the CI features add **no detectable information** to confidence in any setting where confidence "
                    "left room")
        elif count["CI adds"] * 2 > len(open_):
            text = "the CI features **add information** to confidence in most settings where confidence left room"
        else:
            text = "the CI features add information to confidence **in some settings only**"
        lines.append(
            f"* **{defn} CI**: {text}. Of {len(rows)} attack settings, confidence + CI beats confidence alone with a "
            f"bootstrap interval above 0 in {count['CI adds']}, is indistinguishable in "
            f"{count['no detectable difference']}, "
            f"is worse in {count['CI hurts']}, and confidence alone is already at AUC >= 0.99 in "
            f"{count['confidence at ceiling']} (too few samples: {count['too few samples']}); where confidence left "
            f"room the median Delta AUC is {num(med)} and the median width of its interval {num(width)}."
            + (f" CI adds in: {', '.join(adds)}." if adds else "")
            + (f" The best single confidence score is at least as good as the best strategy score (either direction) "
               f"in {conf_wins} of {len(common)} attack settings." if common else ""))
    if within:
        w = within["probability"] if "probability" in within else next(iter(within.values()))
        lines.append(f"* **Within bins of equal confidence** (paper's probability CI), {w['closer_to_half']} of "
                     f"{w['rated']} strategy/attack AUCs move towards 0.5, and {w['strong_kept']} of the {w['strong']} "
                     f"clearly informative ones (AUC outside 0.3-0.7) stay informative"
                     + (f"; a weak test at this scale, since the confidence score itself keeps a distance of "
                        f"{within['confidence']['mean_gap_within']:.2f} from 0.5 within bins "
                        f"({within['confidence']['mean_gap']:.2f} overall)." if "confidence" in within and
                        within["confidence"]["mean_gap_within"] >= 0.5 * within["confidence"]["mean_gap"] else "."))
    lines.append(f"* Scale: {min(n_adv) if n_adv else 0} to {max(n_adv) if n_adv else 0} adversarial examples per "
                 f"attack setting (profile `{profile}`); intervals are wide where n is small.")
    return lines, summary
