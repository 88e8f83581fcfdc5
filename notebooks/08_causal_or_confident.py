# %% [markdown]
# # 8 Causal or merely confident?
#
# CausAdv's strategies read a sample's CI vector: how much the probability of the predicted class drops when
# one filter is removed. A very confident model makes that drop small for every filter, whatever the filters
# mean: on `vgg16_bn_cifar10` the predicted probability often rounds to 1.0 in float32, removing one filter
# then changes nothing representable, and the CI is exactly 0. Counting zero or positive CIs (strategies 3
# and 1) may therefore measure *confidence* rather than causal structure, and an attack that makes the model
# more confident (iterative attacks do) moves these counts in the opposite direction from one that makes it
# less confident (FGSM). This notebook asks whether the causal analysis adds anything beyond confidence, and
# answers with numbers:
#
# 1. **Exact zeros under each CI definition**: the paper's `probability` CI, the saturation-free
#    `log_probability` CI (exact where $p_c$ rounds to 1) and the `logit` CI (`causadv_lib.ci`), for clean and
#    attacked images. Strategies, prototypes and tables below are run under all three.
# 2. **Confidence baselines** (`causadv_lib.confidence`): maximum softmax probability (Hendrycks & Gimpel
#    2017) as $\log(1 - p_{max})$ computed exactly from the logits, the logit margin and the predictive
#    entropy, in the conventional direction fixed in advance: **low confidence = suspicious**. Same images,
#    same attacks, same ROC table as the strategies (notebook 4).
# 3. **Honest directions**: each strategy in the paper's direction (e.g. "fewer zero filters means
#    adversarial"), and as a *two-sided* score whose direction and threshold come from clean images only: how
#    far into either tail of the clean distribution a sample lies (a clean image is scored against the other
#    clean images). No direction is ever chosen per attack from adversarial labels.
# 4. **Within bins of equal confidence**: each strategy's ROC-AUC inside quantile bins of the pooled clean and
#    adversarial confidence. If a strategy only measures confidence, its AUC falls to 0.5 inside the bins.
# 5. **Cross-validated logistic models** on confidence features alone, on CI features alone (the strategies'
#    continuous scores) and on both, per attack, with bootstrap intervals over images. If CI carries
#    information beyond confidence, confidence + CI beats confidence alone.
#
# The set is the one of notebooks 2-4 (read from the cache): clean = the correctly classified evaluation
# images, adversarial = the *successful* examples made from them.
#
# This notebook regenerates `table08_zero_share`, `table08_confidence_roc`, `table08_strategy_roc`,
# `table08_binned_auc`, `table08_within_bin`, `table08_logistic`, and the figures `fig08_causal_or_confident`
# and `fig08_within_bin`.

# %% tags=["parameters"]
profile = "paper"
imagenet_model = "mobilenet_v2_imagenet"
cifar_model = "vgg16_bn_cifar10"

# %%
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from causadv_lib import config, confidence, experiment, metrics, plots, report

rep = report.Report("08_causal_or_confident", profile)
DEFINITIONS = ("probability", "log_probability", "logit")      # "authors" is the paper's CI with a bug: left out
N_BINS = 4              # quantile bins of confidence
N_SPLITS = 5            # stratified folds, a clean image and its adversarial examples in the same fold
N_BOOT = 1000           # bootstrap resamples of the source images
SETUPS = experiment.setups(profile, imagenet_model=imagenet_model, cifar_model=cifar_model)
BASE = {s.dataset: experiment.run(s, progress=False) for s in SETUPS}
EXP = {(d, defn): experiment.with_definition(exp, defn) for d, exp in BASE.items() for defn in DEFINITIONS}
SETTINGS = [(s.dataset, eps) for s in SETUPS for eps in s.eps]
SAMPLES = {(d, defn, eps): confidence.samples_of(EXP[(d, defn)], eps) for d, eps in SETTINGS for defn in DEFINITIONS}
CLEAN = experiment.CLEAN
LABEL = experiment.DATASET_LABELS
ATTACKS = [k.label for k in SETUPS[0].keys(SETUPS[0].paper_eps)]


META = {(d, eps): {"dataset": LABEL[d], "eps": experiment.eps_label(eps)} for d, eps in SETTINGS}
fmt, pct, rated = report.num, report.percent, confidence.rated
print(f"profile {profile}: {N_BINS} confidence bins, {N_SPLITS} folds, {N_BOOT} bootstrap resamples; " + "; ".join(
    f"{LABEL[d]} eps {experiment.eps_label(eps)}: {SAMPLES[(d, 'probability', eps)][CLEAN].n} clean, "
    f"{sum(s.n for _, s in confidence.attacks(SAMPLES[(d, 'probability', eps)]))} adversarial"
    for d, eps in SETTINGS))

# %% [markdown]
# ## 1 Exact zeros under each definition
#
# Share of all CI values that are exactly 0, per group, for each definition; the median number of zero
# filters per sample (out of $K$); and the share of samples whose predicted probability is exactly 1.0 in
# float32. Under `log_probability` and `logit` a CI is 0 only where removing the filter changes nothing at
# all (a dead filter, whose activation map is already 0).

# %%
zero_rows = [row for d, eps in SETTINGS for row in confidence.zero_share_rows(
    {defn: SAMPLES[(d, defn, eps)] for defn in DEFINITIONS}, META[(d, eps)])]
zero_cols = ["dataset", "eps", "samples", "N", "K", "p = 1.0"] + [f"zero share: {x}" for x in DEFINITIONS] + [
    f"median #zero: {x}" for x in DEFINITIONS]
_ = rep.table("table08_zero_share", zero_rows, zero_cols)

# %%
# NBVAL_CHECK_OUTPUT
compact = [{"dataset": r["dataset"], "eps": r["eps"], "samples": r["samples"], "N": r["N"],
            "p = 1.0": pct(r["p = 1.0"]),
            **{x: f"{pct(r[f'zero share: {x}'])} (median {fmt(r[f'median #zero: {x}'], 0)}/{r['K']})"
               for x in DEFINITIONS}} for r in zero_rows]
display(Markdown(report.markdown_table(compact, ["dataset", "eps", "samples", "N", "p = 1.0", *DEFINITIONS],
                                       caption="Share of CI values exactly 0 (median zero filters per sample / K)")))

# %%
lines = []
for d, eps in SETTINGS:
    by = {r["samples"]: r for r in zero_rows if r["dataset"] == LABEL[d] and r["eps"] == experiment.eps_label(eps)}
    clean = by[CLEAN]
    adv = [r for name, r in by.items() if name != CLEAN and r["N"]]
    if not adv:
        continue
    hi = max(adv, key=lambda r: r["median #zero: probability"])
    lo = min(adv, key=lambda r: r["median #zero: probability"])
    lines.append(
        f"* **{LABEL[d]}, eps {experiment.eps_label(eps)}** (K = {clean['K']}): under the paper's probability CI the "
        f"median clean image has {fmt(clean['median #zero: probability'], 0)} zero filters; {hi['samples']} "
        f"{fmt(hi['median #zero: probability'], 0)}, {lo['samples']} {fmt(lo['median #zero: probability'], 0)}. "
        f"{pct(clean['p = 1.0'])} of the clean predictions and {pct(hi['p = 1.0'])} of the {hi['samples']} ones "
        f"have p = 1.0 in float32. Under log_probability the clean median is "
        f"{fmt(clean['median #zero: log_probability'], 0)} ({hi['samples']}: "
        f"{fmt(hi['median #zero: log_probability'], 0)}): what remains are removals that change nothing at all.")
rep.record("zero_share", zero_rows)
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## 2 Confidence baselines
#
# Three scores from the logits, larger = less confident = more suspicious (`causadv_lib.confidence`):
# $\log(1 - p_{max})$ (ranks exactly like $-$MSP, but is exact and untied where $p_{max}$ rounds to 1.0), the
# negative logit margin $-(z_1 - z_2)$, and $\log H(p)$. Each is reported in this conventional direction and
# as the two-sided clean-tail score. The confidence scores do not depend on the CI definition. Same format as
# notebook 4's ROC table: AUC, and TPR at 5% FPR with the threshold set on clean images only.

# %%
conf_rows = [row for d, eps in SETTINGS
             for row in confidence.confidence_roc_rows(SAMPLES[(d, "probability", eps)], META[(d, eps)])]
_ = rep.table("table08_confidence_roc", conf_rows)
compact = {}
for r in conf_rows:
    row = compact.setdefault((r["dataset"], r["eps"], r["score"], r["direction"]),
                             {k: r[k] for k in ("dataset", "eps", "score", "direction")})
    row[r["attack"]] = "n/a" if r["auc"] is None else f"{r['auc']:.2f} / {r['tpr@5%fpr']:.2f}"
conf_compact = list(compact.values())

# %%
# NBVAL_CHECK_OUTPUT
display(Markdown(report.markdown_table(
    conf_compact, ["dataset", "eps", "score", "direction", *ATTACKS],
    caption="Confidence baselines: ROC-AUC / TPR at 5% FPR (threshold on clean images)")))

# %% [markdown]
# ## 3 The strategies under each definition: the paper's direction and the two-sided score
#
# The strategies' continuous scores (notebook 4: S1 the number of causal filters, S2 the rank of the own class
# or $-\rho$, S3 the number of zero filters, S4 the number of common filters, and the largest CI value), with
# prototypes computed under the same definition. "paper" is the direction the paper fixes; "two-sided" needs
# no direction. An AUC below 0.5 in the paper's direction means the rule points the wrong way for that
# attack.

# %%
strat_rows = [dict(definition=defn) | row for defn in DEFINITIONS for d, eps in SETTINGS
              for row in confidence.strategy_roc_rows(SAMPLES[(d, defn, eps)], META[(d, eps)])]
_ = rep.table("table08_strategy_roc", strat_rows)

by_dir = {}
for r in strat_rows:
    row = by_dir.setdefault((r["definition"], r["dataset"], r["eps"], r["score"]),
                            {k: r[k] for k in ("definition", "dataset", "eps", "score")})
    cell = row.get(r["attack"], ["n/a", "n/a"])
    cell[0 if r["direction"] == "paper" else 1] = fmt(r["auc"])
    row[r["attack"]] = cell
strat_compact = [{k: (" / ".join(v) if isinstance(v, list) else v) for k, v in row.items()} for row in by_dir.values()]

# %%
for defn in DEFINITIONS:
    display(Markdown(report.markdown_table(
        [r for r in strat_compact if r["definition"] == defn], ["dataset", "eps", "score", *ATTACKS],
        caption=f"CI definition `{defn}`: ROC-AUC in the paper's direction / two-sided (clean tails)")))

# %%
lines = []
for defn in DEFINITIONS:
    paper = rated(strat_rows, definition=defn, direction="paper")
    two = rated(strat_rows, definition=defn, direction="two-sided (clean)")
    below = [r for r in paper if r["auc"] < 0.5]
    s3 = rated(strat_rows, definition=defn, direction="paper", strategy="S3(n=5)")
    s3_lo = sorted({f"{r['attack']} ({r['dataset']} {r['eps']})" for r in s3 if r["auc"] < 0.5})
    s3_hi = sorted({f"{r['attack']} ({r['dataset']} {r['eps']})" for r in s3 if r["auc"] > 0.5})
    lines.append(
        f"* **{defn}**: {len(below)} of {len(paper)} strategy/attack pairs have AUC below 0.5 in the paper's direction "
        f"(mean AUC {np.mean([r['auc'] for r in paper]):.2f}; two-sided mean {np.mean([r['auc'] for r in two]):.2f}). "
        f"S3 (fewer zeros = adversarial) has AUC above 0.5 for {len(s3_hi)} and below 0.5 for {len(s3_lo)} attack "
        "settings" + (f"; below for: {', '.join(s3_lo)}." if s3_lo else "."))
rep.record("directions", {defn: {"below_half": sum(r["auc"] < 0.5 for r in rated(strat_rows, definition=defn,
                                                                                   direction="paper")),
                                 "rated": len(rated(strat_rows, definition=defn, direction="paper"))}
                          for defn in DEFINITIONS})
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## 4 Within bins of equal confidence
#
# For each strategy score and attack, the clean and adversarial samples are pooled and cut into
# `N_BINS` quantile bins of confidence ($\log(1 - p_{max})$); the AUC is computed inside each bin (NaN where a bin
# holds only one side). "within bins" is the AUC over the clean/adversarial pairs that share a bin (the bins'
# AUCs weighted by $n_{clean} \times n_{adv}$). A score that only measures confidence has a within-bin AUC near
# 0.5; a score with information of its own keeps its AUC. The confidence score itself is shown for reference.
# The full per-bin table (n and AUC per bin) is `table08_binned_auc`.

# %%
binned_rows, within_rows = [], []
for defn in DEFINITIONS:
    for d, eps in SETTINGS:
        per_bin, summary = confidence.binned_rows(SAMPLES[(d, defn, eps)], {"definition": defn} | META[(d, eps)],
                                                  n_bins=N_BINS, with_confidence=defn == DEFINITIONS[0])
        binned_rows += per_bin
        within_rows += summary
_ = rep.table("table08_binned_auc", binned_rows)
_ = rep.table("table08_within_bin", within_rows)

# %%
wb = {}
for r in within_rows:
    row = wb.setdefault((r["definition"], r["dataset"], r["eps"], r["score"]),
                        {k: r[k] for k in ("definition", "dataset", "eps", "score")})
    row[r["attack"]] = f"{fmt(r['auc'])} -> {fmt(r['within bins'])}"
display(Markdown(report.markdown_table(list(wb.values()), ["definition", "dataset", "eps", "score", *ATTACKS],
                                       caption=f"ROC-AUC overall -> within {N_BINS} bins of equal confidence")))

# %%
lines = []
WITHIN = {}
for defn in DEFINITIONS:
    rows = [r for r in within_rows if r["definition"] == defn and r["auc"] is not None and r["within bins"] is not None]
    if not rows:
        continue
    gap = confidence.distance_from_chance
    closer = sum(gap(r["within bins"]) < gap(r["auc"]) for r in rows)
    strong = [r for r in rows if gap(r["auc"]) >= 0.2]
    kept = [r for r in strong if gap(r["within bins"]) >= 0.2]
    WITHIN[defn] = {"rated": len(rows), "closer_to_half": closer,
                    "mean_gap": float(np.mean([gap(r["auc"]) for r in rows])),
                    "mean_gap_within": float(np.mean([gap(r["within bins"]) for r in rows])),
                    "strong": len(strong), "strong_kept": len(kept)}
    w = WITHIN[defn]
    lines.append(f"* **{defn}**: inside confidence bins {closer} of {len(rows)} strategy/attack AUCs move towards 0.5; "
                 f"the mean distance from 0.5 goes from {w['mean_gap']:.2f} to {w['mean_gap_within']:.2f}. Of the "
                 f"{len(strong)} pairs with AUC outside 0.3-0.7 overall, {len(kept)} stay outside it within bins.")
conf_within = [r for r in within_rows
               if r["strategy"] == "msp" and r["auc"] is not None and r["within bins"] is not None]
if conf_within:
    c_all = float(np.mean([abs(r["auc"] - 0.5) for r in conf_within]))
    c_in = float(np.mean([abs(r["within bins"] - 0.5) for r in conf_within]))
    WITHIN["confidence"] = {"mean_gap": c_all, "mean_gap_within": c_in}
    lines.append(f"* For reference, the confidence score itself: mean distance from 0.5 {c_all:.2f} overall, "
                 f"{c_in:.2f} "
                 "within bins. " + ("The bins remove most of the confidence differences, so a strategy that keeps its "
                                    "distance within them carries something else."
                                    if c_in < 0.5 * c_all else
                                    f"With {N_BINS} bins at this sample size the bins remove little of the confidence "
                                    "differences themselves, so this test is weak here; the logistic models below are "
                                    "the stronger test."))
rep.record("within_bins", WITHIN)
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## 5 Does CI add to confidence? Cross-validated logistic models
#
# Per attack: clean images (label 0) against that attack's successful examples (label 1). Three logistic
# regressions (scikit-learn, standardised features, median imputation of the S2/S4 scores a strategy could not
# compute, L2 with C = 1) on (a) the three confidence features, (b) the eight CI features, (c) both;
# `N_SPLITS`-fold stratified cross-validation, a clean image and its adversarial example always in the same fold,
# folds shuffled with `config.SEED`. The AUC of the out-of-fold predictions, with 95% percentile intervals from
# `N_BOOT` bootstrap resamples of the source images (the models are not refitted); $\Delta$ = AUC(confidence +
# CI) $-$ AUC(confidence), with its interval from the same resamples.
#
# These models learn each attack's direction from its labels: they measure what the features *contain*, an
# upper bound for any detector built on them, not a detector that would work against an unknown attack.

# %%
cv_rows = [row for defn in DEFINITIONS for d, eps in SETTINGS
           for row in confidence.logistic_rows(SAMPLES[(d, defn, eps)], {"definition": defn} | META[(d, eps)],
                                               n_splits=N_SPLITS, seed=config.SEED, n_boot=N_BOOT)]
CV = {(r["definition"], r["dataset"], r["eps"], r["attack"]): r for r in cv_rows}
_ = rep.table("table08_logistic", cv_rows)

# %%
# NBVAL_CHECK_OUTPUT
iv = report.interval
show = [{"definition": r["definition"], "dataset": r["dataset"], "eps": r["eps"], "attack": r["attack"],
         "n": f"{r['n_clean']}+{r['n_adv']}", "confidence": iv(r, "auc_base"), "CI": iv(r, "auc_extra"),
         "confidence + CI": iv(r, "auc_both"), "delta": iv(r, "delta"), "verdict": r["verdict"]} for r in cv_rows]
display(Markdown(report.markdown_table(show, ["definition", "dataset", "eps", "attack", "n", "confidence", "CI",
                                              "confidence + CI", "delta", "verdict"],
                                       caption="Cross-validated ROC-AUC [95% bootstrap interval] of logistic models")))

# %% [markdown]
# ## Figure
#
# Left: share of CI values exactly 0 per group under each definition. Right: cross-validated AUC of confidence
# alone and of confidence + CI under each definition, with 95% bootstrap intervals.

# %%
fig, axes = plt.subplots(len(SETTINGS), 2, figsize=(15, 3.9 * len(SETTINGS)), squeeze=False,
                         gridspec_kw={"width_ratios": [1, 1.15]})
for i, (d, eps) in enumerate(SETTINGS):
    e = experiment.eps_label(eps)
    rows = [r for r in zero_rows if r["dataset"] == LABEL[d] and r["eps"] == e]
    groups = [f"{r['samples']}\n(N={r['N']})".replace(" targeted", "\ntargeted").replace(" untargeted", "\nuntargeted")
              for r in rows]
    shares = {x: [None if r[f"zero share: {x}"] is None else round(100 * r[f"zero share: {x}"]) for r in rows]
              for x in DEFINITIONS}
    plots.grouped_bars(axes[i, 0], groups, shares,
                       ylabel="% of CI values exactly 0", title=f"{LABEL[d]} ({EXP[(d, 'probability')].setup.model}), "
                                                                  f"eps {e}: exact zeros")
    axes[i, 0].set_ylim(0, 105)
    axes[i, 0].tick_params(axis="x", labelsize=7)
    keys = [k for k in BASE[d].setup.keys(eps)]
    series = {}
    for j, defn in enumerate(DEFINITIONS):
        cv = [CV.get((defn, LABEL[d], e, k.label), {}) for k in keys]
        if j == 0:
            series["confidence only"] = tuple([r.get(f"auc_base{s}") for r in cv] for s in ("", "_lo", "_hi"))
        series[f"confidence + CI ({defn})"] = tuple([r.get(f"auc_both{s}") for r in cv] for s in ("", "_lo", "_hi"))
    plots.interval_dots(axes[i, 1], [k.label.replace(" ", "\n") for k in keys], series,
                        ylabel="cross-validated ROC-AUC", reference=0.5, ylim=(0, 1.05),
                        title=f"{LABEL[d]}, eps {e}: logistic models, 95% bootstrap intervals")
fig.suptitle("Causal or merely confident? Exact zeros of the CI, and what CI adds to confidence", fontsize=11)
fig.tight_layout()
rep.figure(fig, "fig08_causal_or_confident")
plt.close(fig)

# %% [markdown]
# Each strategy's AUC overall (x) against its AUC within bins of equal confidence (y), one point per strategy
# score and attack, one panel per definition: points near the horizontal line y = 0.5 carry no information
# beyond confidence; points on the diagonal keep all of it.

# %%
fig, axes = plt.subplots(1, len(DEFINITIONS), figsize=(4.4 * len(DEFINITIONS), 5.4), squeeze=False, sharey=True)
marker = {LABEL[d]: m for d, m in zip(BASE, "os")}
color = {name: plt.cm.tab10(i) for i, name in enumerate(ATTACKS)}
for ax, defn in zip(axes[0], DEFINITIONS):
    ax.plot([0, 1], [0, 1], color="#bbbbbb", linewidth=0.7)
    ax.axhline(0.5, color="#bbbbbb", linewidth=0.7, linestyle=":")
    ax.axvline(0.5, color="#bbbbbb", linewidth=0.7, linestyle=":")
    rows = [r for r in within_rows if r["definition"] == defn and r["auc"] is not None]
    pts = [r for r in rows if r["within bins"] is not None]
    for r in pts:
        ax.scatter(r["auc"], r["within bins"], s=16, marker=marker[r["dataset"]], color=color[r["attack"]], alpha=0.75)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("ROC-AUC overall (paper's direction)", fontsize=8)
    ax.set_title(f"CI definition: {defn}\n{len(rows) - len(pts)} of {len(rows)} score/attack pairs share no bin "
                 "(not drawn)", fontsize=8)
axes[0, 0].set_ylabel(f"ROC-AUC within {N_BINS} confidence bins", fontsize=8)
handles = [plt.Line2D([], [], linestyle="", marker="o", color=c, label=a) for a, c in color.items()]
handles += [plt.Line2D([], [], linestyle="", marker=m, color="#555555", label=d) for d, m in marker.items()]
fig.legend(handles=handles, fontsize=7, ncol=len(handles), loc="lower center", bbox_to_anchor=(0.5, 0.0),
           frameon=False)
fig.suptitle("Strategy scores inside bins of equal confidence: on the diagonal = information beyond confidence, "
             "on y = 0.5 = none", fontsize=10)
fig.subplots_adjust(left=0.06, right=0.98, bottom=0.2, top=0.84, wspace=0.12)
rep.figure(fig, "fig08_within_bin")
plt.close(fig)

# %% [markdown]
# ## The answer
#
# Sentences computed from this run's numbers (nothing below is written in advance).

# %%
lines = []
summary = {}
n_adv = [r["n_adv"] for r in cv_rows if r["folds"]]
for defn in DEFINITIONS:
    rows = [r for r in cv_rows if r["definition"] == defn]
    count = {v: sum(r["verdict"] == v for r in rows) for v in confidence.VERDICTS}
    open_ = [r for r in rows if r["verdict"] in confidence.VERDICTS[:3]]
    med = float(np.median([r["delta"] for r in open_])) if open_ else math.nan
    width = float(np.median([r["delta_hi"] - r["delta_lo"] for r in open_])) if open_ else math.nan
    adds = [f"{r['attack']} ({r['dataset']} {r['eps']}, +{r['delta']:.2f})" for r in rows if r["verdict"] == "CI adds"]
    best = {}
    for r in rated(strat_rows, definition=defn, direction="paper") + rated(strat_rows, definition=defn,
                                                                             direction="two-sided (clean)"):
        k = (r["dataset"], r["eps"], r["attack"])
        best[k] = max(best.get(k, 0.0), r["auc"])
    conf_best = {}
    for r in rated(conf_rows):
        k = (r["dataset"], r["eps"], r["attack"])
        conf_best[k] = max(conf_best.get(k, 0.0), r["auc"])
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
        f"{count['confidence at ceiling']} (too few samples: {count['too few samples']}); where confidence left room "
        f"the median Delta AUC is {fmt(med)} and the median width of its interval {fmt(width)}."
        + (f" CI adds in: {', '.join(adds)}." if adds else "")
        + (f" The best single confidence score is at least as good as the best strategy score (either direction) "
           f"in {conf_wins} of {len(common)} attack settings." if common else ""))
if WITHIN:
    w = WITHIN["probability"] if "probability" in WITHIN else next(iter(WITHIN.values()))
    lines.append(f"* **Within bins of equal confidence** (paper's probability CI), {w['closer_to_half']} of "
                 f"{w['rated']} strategy/attack AUCs move towards 0.5, and {w['strong_kept']} of the {w['strong']} "
                 f"clearly informative ones (AUC outside 0.3-0.7) stay informative"
                 + (f"; a weak test at this scale, since the confidence score itself keeps a distance of "
                    f"{WITHIN['confidence']['mean_gap_within']:.2f} from 0.5 within bins "
                    f"({WITHIN['confidence']['mean_gap']:.2f} overall)." if "confidence" in WITHIN and
                    WITHIN["confidence"]["mean_gap_within"] >= 0.5 * WITHIN["confidence"]["mean_gap"] else "."))
lines.append(f"* Scale: {min(n_adv) if n_adv else 0} to {max(n_adv) if n_adv else 0} adversarial examples per attack "
             f"setting (profile `{profile}`); intervals are wide where n is small.")
rep.record("verdict", summary)
display(Markdown("\n".join(lines)))

# %%
print(f"results: {rep.save()}")
