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
model = None       # your model instead: a zoo or registered name, or a .keras/.tflite file (README, "Bring your own model")
dataset = None     # the dataset it classifies (cifar10 | imagenet); only that dataset runs
normalize = None   # a model file's input normalisation: [0,1] | [-1,1] | imagenet-caffe | imagenet-torch
out = None         # output folder (default: $CAUSADV_OUT, else paper_figures/[profile])

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from causadv_lib import config, experiment, plots, report
from causadv_lib.analysis import confidence
from causadv_lib.vocab import CLEAN, DATASET_LABELS, eps_label

rep = report.Report("08_causal_or_confident", profile, out_dir=out)
DEFINITIONS = ("probability", "log_probability", "logit")      # "authors" is the paper's CI with a bug: left out
N_BINS = 4              # quantile bins of confidence
N_SPLITS = 5            # stratified folds, a clean image and its adversarial examples in the same fold
N_BOOT = 1000           # bootstrap resamples of the source images
SETUPS = experiment.setups(profile, imagenet_model=imagenet_model, cifar_model=cifar_model, model=model,
                          dataset=dataset, normalize=normalize)
BASE = {s.dataset: experiment.run(s, progress=False) for s in SETUPS}
EXP = {(d, defn): experiment.with_definition(exp, defn) for d, exp in BASE.items() for defn in DEFINITIONS}
SETTINGS = [(s.dataset, eps) for s in SETUPS for eps in s.eps]
SAMPLES = {(d, defn, eps): confidence.samples_of(EXP[(d, defn)], eps) for d, eps in SETTINGS for defn in DEFINITIONS}
LABEL = DATASET_LABELS
ATTACKS = [k.label for k in SETUPS[0].keys(SETUPS[0].paper_eps)]


META = {(d, eps): {"dataset": LABEL[d], "eps": eps_label(eps)} for d, eps in SETTINGS}
print(f"profile {profile}: {N_BINS} confidence bins, {N_SPLITS} folds, {N_BOOT} bootstrap resamples; " + "; ".join(
    f"{LABEL[d]} eps {eps_label(eps)}: {SAMPLES[(d, 'probability', eps)][CLEAN].n} clean, "
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
compact = confidence.zero_compact(zero_rows, DEFINITIONS)
display(Markdown(report.markdown_table(compact, ["dataset", "eps", "samples", "N", "p = 1.0", *DEFINITIONS],
                                       caption="Share of CI values exactly 0 (median zero filters per sample / K)")))

# %%
lines = confidence.zero_lines(zero_rows, [META[k] for k in SETTINGS])
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
conf_compact = confidence.confidence_compact(conf_rows)

# %%
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

strat_compact = confidence.strategy_compact(strat_rows)

# %%
for defn in DEFINITIONS:
    display(Markdown(report.markdown_table(
        [r for r in strat_compact if r["definition"] == defn], ["dataset", "eps", "score", *ATTACKS],
        caption=f"CI definition `{defn}`: ROC-AUC in the paper's direction / two-sided (clean tails)")))

# %%
lines, directions = confidence.direction_lines(strat_rows, DEFINITIONS)
rep.record("directions", directions)
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
wb = confidence.within_compact(within_rows)
display(Markdown(report.markdown_table(wb, ["definition", "dataset", "eps", "score", *ATTACKS],
                                       caption=f"ROC-AUC overall -> within {N_BINS} bins of equal confidence")))

# %%
lines, WITHIN = confidence.within_summary(within_rows, DEFINITIONS, N_BINS)
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
show = confidence.logistic_display(cv_rows)
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
    e = eps_label(eps)
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
lines, summary = confidence.the_answer(cv_rows, strat_rows, conf_rows, WITHIN, DEFINITIONS, profile)
rep.record("verdict", summary)
display(Markdown("\n".join(lines)))

# %%
print(f"results: {rep.save()}")
