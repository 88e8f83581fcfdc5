# %% [markdown]
# # 4 The four detection strategies (paper section 4.2, Tables 1-3, Figure 3)
#
# CausAdv judges a sample from its CI vector alone (`causadv_lib.strategies`, where every rule and each
# choice made where the paper is ambiguous is documented):
#
# * **S1** causal feature existence: adversarial if at most $n$ filters have CI > 0;
# * **S2** Pearson correlation with the prototypes: on ImageNet, adversarial if the predicted class is not
#   among the 5 prototypes most correlated with the sample (Table 1); on CIFAR-10, adversarial if
#   $\rho$ with the predicted class's prototype is below 0.5 (Table 2);
# * **S3** zero effect: adversarial if at most $n$ filters have CI exactly 0 (Table 3);
# * **S4** common robust causal features: adversarial unless the sample's top-$n$ causal filters lie in the
#   top-$m$ causal filters of its predicted class's prototype (Figure 3).
#
# Like the paper, the tables count the samples that **pass** a test (look clean), out of $N$, for the clean
# set and for each attack; S1 counts the samples it flags. We run every table on both datasets (and both
# CIFAR-10 budgets), print the paper's own number beside ours where it reported one, and then go beyond the
# paper's counts: a count at one threshold does not say how well a score separates clean from adversarial
# samples, so the last section gives ROC-AUC and the true-positive rate at a 5% false-positive rate (the
# threshold set on clean samples only) for every strategy and attack.
#
# The set is the one built in notebook 2 (read from the cache): clean = the correctly classified evaluation
# images; adversarial = the *successful* examples made from them, so $N$ differs between rows (the paper's $N$
# is always 300 or 100, successful or not). Other differences from the paper's set: MobileNetV2 (1280
# filters) on ImageNet instead of VGG16 (512); 150 x 2 ImageNet images; PGD with a random start (the
# authors' PGD was BIM); adversarial inputs kept as float arrays (the authors saved JPEGs); a seeded random
# target class per image. A sample whose predicted class has no prototype (no correctly classified image of
# that class in the prototype pool) cannot be judged by S2 or S4 and is reported as "uncounted"; how many
# there are is printed below.
#
# This notebook regenerates:
#
# * **Table 1** (`table04_pearson_top5`), **Table 2** (`table04_pearson_rho`), **Table 3**
#   (`table04_zero_filters`), each for both datasets, and the strategy-1 counts (`table04_causal_existence`).
# * **Figure 3** (`fig04_common_features`, table `table04_common_features`): strategy 4 for n/m = 3/10,
#   5/20, 10/30, clean against each attack.
# * **ROC table** (`table04_roc`, compact view `table04_roc_auc`) and **ROC curves** (`fig04_roc_imagenet`,
#   `fig04_roc_cifar10`).

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

from causadv_lib import experiment, paper, plots, report
from causadv_lib.analysis import tables
from causadv_lib.vocab import ROC_VARIANTS, S4_3_10, SCORE_NAMES, eps_label

rep = report.Report("04_detection_strategies", profile, out_dir=out)
SETUPS = experiment.setups(profile, imagenet_model=imagenet_model, cifar_model=cifar_model, model=model,
                          dataset=dataset, normalize=normalize)
EXP = {s.dataset: experiment.run(s, progress=False) for s in SETUPS}
COUNTS = {(d, eps): tables.strategy_results(exp, eps) for d, exp in EXP.items() for eps in exp.setup.eps}
TABLES = tables.paper_tables(EXP.values(), COUNTS)
for (d, eps), res in COUNTS.items():
    missing = len(EXP[d].prototypes.missing)
    uncounted = tables.uncounted(res)
    rep.record(f"{d}/{eps_label(eps)}/uncounted_s2_s4", uncounted)
    print(f"{EXP[d].setup.label}, eps {eps_label(eps)}: {missing} classes without a prototype; samples "
          f"uncounted by S2/S4: {sum(uncounted.values())} of {sum(by[S4_3_10].n for by in res.values())}")

# %% [markdown]
# ## Table 1: Pearson correlation, top-5 rule
#
# Samples whose predicted class is among the 5 prototypes most correlated with their CI vector (the rule of
# the authors' code: the sample's own class competes too). On CIFAR-10 (10 classes) the rule is weak by
# construction and is shown for completeness; the paper applies it to ImageNet only.

# %%
rows, cols = TABLES["table04_pearson_top5"]
display(Markdown(rep.table("table04_pearson_top5", rows, cols,
                           caption="Table 1: samples whose predicted class is among the 5 most correlated prototypes")))

# %% [markdown]
# ## Table 2: Pearson correlation with the predicted class's prototype, rho >= 0.5
#
# The paper's CIFAR-10 rule, also run on ImageNet. Note that the paper is not a fixed target here: the
# authors' own stored CIFAR-10 vectors, recounted with this rule, give 23 and 20 (not 8 and 3) for targeted
# PGD and BIM (`reference-implementation.md`).

# %%
rows, cols = TABLES["table04_pearson_rho"]
display(Markdown(rep.table("table04_pearson_rho", rows, cols,
                           caption="Table 2: samples with Pearson rho >= 0.5 with their predicted class's prototype")))

# %% [markdown]
# ## Table 3: zero effect
#
# Samples having more than $n$ filters with CI exactly 0, for $n$ = 5 and 10 (the paper's CIFAR-10 table; it
# says the strategy does not help on ImageNet, which the ImageNet rows test).

# %%
rows, cols = TABLES["table04_zero_filters"]
display(Markdown(rep.table("table04_zero_filters", rows, cols,
                           caption="Table 3: samples having more than n zero filters (CI == 0)")))

# %% [markdown]
# ## Strategy 1: causal feature existence
#
# Samples with at most $n$ causal filters (flagged as adversarial). The paper reports no table: it says all
# BIM examples (targeted and untargeted) on ImageNet have no causal filter, so S1 detects 100% of them, and
# no other attack is detected.

# %%
rows, cols = TABLES["table04_causal_existence"]
display(Markdown(rep.table("table04_causal_existence", rows, cols,
                           caption="Strategy 1: samples with at most n causal filters (CI > 0), flagged")))

# %% [markdown]
# ## Figure 3: common robust causal features
#
# Samples whose top-$n$ causal filters all lie in the top-$m$ causal filters of their predicted class's
# prototype. The paper prints one adversarial number per n/m for all attacks ("all the attacks yield similar
# values"), out of 300; bars are percentages of each group, since our groups differ in size.

# %%
rows, cols = TABLES["table04_common_features"]
display(Markdown(rep.table("table04_common_features", rows, cols,
                           caption="Strategy 4: samples whose top-n causal filters lie in the prototype's top-m")))
panels = [(d, eps) for d, exp in EXP.items() for eps in exp.setup.eps]
fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
for ax, (d, eps) in zip(axes[0], panels):
    labels, series, hatched = tables.figure3_series(COUNTS[(d, eps)], paper.table_for("figure3", d, eps))
    plots.grouped_bars(ax, labels, series, ylabel="% of the group passing (shares features)",
                       title=f"{EXP[d].setup.label}, eps {eps_label(eps)}", hatched=hatched)
    ax.set_xlabel("n / m (top-n causal filters of the sample in the top-m of the prototype)")
    ax.set_ylim(0, 110)
fig.suptitle("Figure 3: samples sharing their top causal filters with their predicted class's prototype", fontsize=10)
fig.tight_layout()
rep.figure(fig, "fig04_common_features")
plt.close(fig)

# %% [markdown]
# ## How our counts compare with the paper's
#
# Sentences generated from this run's numbers: for each table the paper reported, the share of clean samples
# that pass against the share of adversarial ones (ours and the paper's).

# %%
display(Markdown("\n".join(tables.paper_comparison_lines(COUNTS))))

# %% [markdown]
# ### Why our counts differ from the paper's
#
# Known reasons, with the numbers of this run:

# %%
reasons = tables.reasons_for(EXP, COUNTS)
display(Markdown("\n".join(reasons)))

# %% [markdown]
# ## Beyond the paper: ROC analysis
#
# Every strategy is a threshold on a score (S1: the number of causal filters; S2: the rank of the predicted
# class, or $-\rho$; S3: the number of zero filters; S4: the number of common filters; signs such that larger
# means more suspicious, in the paper's direction). One more score, not in the paper, is added for comparison:
# the largest CI value of the vector (low = suspicious), which is small when the prediction is saturated. ROC-AUC measures how well that score separates clean from
# successful adversarial samples over all thresholds (0.5 = chance; below 0.5 = the paper's direction is the
# wrong one for this attack); TPR at 5% FPR is the detection rate when the threshold is set on clean samples
# only so that at most 5% of them are flagged. Each clean image is its adversarial examples' source.

# %%
roc_rows = [row for exp in EXP.values() for row in tables.detection_rows(exp, COUNTS)]
rep.table("table04_roc", roc_rows)
compact, compact_columns = tables.roc_summary(roc_rows, SETUPS[0])

# %%
display(Markdown(rep.table("table04_roc_auc", compact, compact_columns,
                           caption="ROC-AUC / TPR at 5% FPR (threshold on clean samples) per strategy and attack")))

# %%
summary, text = tables.roc_extremes(roc_rows)
rep.record("roc_summary", summary)
display(Markdown(text))

# %% [markdown]
# ### ROC curves
#
# One panel per strategy score (rows) and attack (columns), one curve per budget; the dotted line marks
# FPR = 5%.

# %%
for d, exp in EXP.items():
    fig = plots.roc_grid(tables.roc_curves(exp, COUNTS), [SCORE_NAMES[v] for v in ROC_VARIANTS],
                         [k.label for k in exp.setup.keys(exp.setup.paper_eps)],
                         suptitle=f"{exp.setup.label}: ROC of each strategy score, clean vs successful adversarial")
    rep.figure(fig, f"fig04_roc_{d}")
    plt.close(fig)

# %%
print(f"results: {rep.save()}")
