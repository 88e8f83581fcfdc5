# %% [markdown]
# # 3 CI vectors of prototypes, clean and adversarial samples (paper section 4.2, Figure 2)
#
# The paper's Figure 2 shows the CI vectors of a few ImageNet prototypes, clean images and their
# adversarial versions (eps 8/255), and reads four observations from them:
#
# 1. clean samples have CI vectors resembling those of their class prototypes;
# 2. BIM examples (targeted and untargeted) "lack any causal features" (no filter with CI > 0);
# 3. PGD examples look like the prototypes ("normal and analogous distributions");
# 4. FGSM distorts the vector, turning causal filters non-causal and back.
#
# We redraw the figure on both datasets from the set built in notebook 2 (read from the cache), and check
# the observations on *every* sample instead of a few: the number of causal filters (strategy 1), of zero
# filters (strategy 3) and the Pearson correlation with the predicted class's prototype (strategy 2), per
# group. Differences from the paper's set (MobileNetV2 on ImageNet, successful attacks only, PGD with a
# random start, float adversarial inputs) are listed in notebook 2.
#
# This notebook regenerates:
#
# * **Figure 2** (`fig03_ci_vectors_imagenet`, `fig03_ci_vectors_cifar10`): CI vectors of the prototype of
#   a class, a clean image of it, and the six adversarial versions of that image.
# * **Figure 2b** (`fig03_statistics_imagenet`, `fig03_statistics_cifar10_24`, `fig03_statistics_cifar10_8`):
#   distributions of the three statistics per group.
# * **Table 3a** (`table03_statistics`): their medians per group.

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
import numpy as np
from IPython.display import Markdown, display

from causadv_lib import data, experiment, plots, report
from causadv_lib.analysis import tables
from causadv_lib.vocab import eps_label

rep = report.Report("03_ci_distributions", profile, out_dir=out)
SETUPS = experiment.setups(profile, imagenet_model=imagenet_model, cifar_model=cifar_model, model=model,
                          dataset=dataset, normalize=normalize)
EXP = {s.dataset: experiment.run(s, progress=False) for s in SETUPS}
ROWS_SHOWN = 3 if profile == "paper" else 2

# %% [markdown]
# ## Figure 2: CI vectors by filter
#
# Each row is one clean image: those on which the most attacks succeed at the paper's budget, in sample
# order. Columns: the prototype of its class, the clean image,
# then the six adversarial versions. Bars: CI per filter index, green causal (CI > 0), grey zero, red
# negative; the title counts each kind. Each panel has its own CI scale: compare the scales too (an axis
# offset such as `1e-5` above a panel multiplies its ticks).

# %%
for d, exp in EXP.items():
    cs, protos = exp.clean, exp.prototypes
    names = data.pool(exp.setup.eval_pool).class_names
    keys = exp.setup.keys(exp.setup.paper_eps)
    wins = exp.wins()
    wins[~cs.correct] = -1
    shown = np.argsort(-wins, kind="stable")[:ROWS_SHOWN]
    panels = []
    for i in shown:
        y = int(cs.labels[i])
        row = [(f"prototype '{names[y][:16]}'", protos.ci[y] if y in protos.classes else None),
               (f"clean {cs.ids[i][:22]}", cs.ci_result.ci[i])]
        for k in keys:
            a = exp.adversarial[k]
            j = np.flatnonzero(a.source == i)
            ok = len(j) and a.success[j[0]]
            row.append((f"{k.label} -> {names[a.ci_result.predicted[j[0]]][:12]}" if ok else f"{k.label}: failed",
                        a.ci_result.ci[j[0]] if ok else None))
        panels.append(row)
    fig = plots.ci_grid(panels, suptitle=f"{exp.setup.label}: CI vectors (layer {cs.ci_result.layer}), "
                                         f"eps {eps_label(exp.setup.paper_eps)}")
    rep.figure(fig, f"fig03_ci_vectors_{d}")
    plt.close(fig)

# %% [markdown]
# ## The statistics behind the observations, on every sample
#
# Per group (the prototypes of all classes, the clean set, the successful examples of each attack): the
# number of causal filters, the number of zero filters, and Pearson's rho between the sample's CI vector and
# the CI vector of the prototype of the class it is predicted as (a sample whose predicted class has no
# prototype is left out of rho), and the largest CI of the vector ("max CI"). A prediction saturated at
# $p_c \approx 1$ leaves CI values of the order of one float32 step of $p_c$ ($6 \cdot 10^{-8}$): such a vector
# still counts "causal" filters, but they are rounding steps, not causes.

# %%
stats_rows, STATS = [], {}
for d, exp in EXP.items():
    for eps in exp.setup.eps:
        rows, STATS[(d, eps)] = tables.group_statistics(exp, eps)
        stats_rows += rows

# %%
display(Markdown(rep.table("table03_statistics", stats_rows,
                           caption="Causal filters, zero filters and rho with the prototype: medians per group")))

# %% [markdown]
# ## Figure 2b: distributions per group

# %%
for (d, eps), per in STATS.items():
    K = EXP[d].clean.ci_result.ci.shape[1]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    groups = {g: v for g, v in per.items()}
    plots.group_histograms(axes[0], {g: v["causal"] for g, v in groups.items()}, bins=np.linspace(0, K, 41),
                           xlabel="causal filters (CI > 0)", title="Strategy 1: causal filters")
    plots.group_histograms(axes[1], {g: v["zero"] for g, v in groups.items()}, bins=np.linspace(0, K, 41),
                           xlabel="zero filters (CI == 0)", title="Strategy 3: zero filters")
    plots.group_histograms(axes[2], {g: v["rho"] for g, v in groups.items()},  # prototypes: no rho (empty)
                           bins=np.linspace(-1, 1, 41), xlabel="Pearson rho with the predicted class's prototype",
                           title="Strategy 2: correlation with the prototype")
    fig.suptitle(f"{EXP[d].setup.label}, eps {eps_label(eps)}: {K} filters", fontsize=10)
    fig.tight_layout()
    name = f"fig03_statistics_{d}" if len(EXP[d].setup.eps) == 1 else f"fig03_statistics_{d}_{round(eps * 255)}"
    rep.figure(fig, name)
    plt.close(fig)

# %% [markdown]
# ## The paper's observations, checked
#
# Computed from the table above (the sentences are generated from the numbers of this run).

# %%
text, bim_all_none = tables.observations(STATS, EXP)
rep.record("bim_examples_all_without_causal_filter", bim_all_none)
display(Markdown(text))

# %%
print(f"results: {rep.save()}")
