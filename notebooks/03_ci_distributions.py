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

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from causadv_lib import data, experiment, plots, report, strategies

rep = report.Report("03_ci_distributions", profile)
SETUPS = experiment.setups(profile, imagenet_model=imagenet_model, cifar_model=cifar_model)
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
    wins = np.zeros(cs.n, int)
    for k in keys:
        wins[exp.adversarial[k].source] += exp.adversarial[k].success
    wins[~cs.correct] = -1
    shown = np.argsort(-wins, kind="stable")[:ROWS_SHOWN]
    panels = []
    for i in shown:
        y = int(cs.labels[i])
        row = [(f"prototype '{names[y][:16]}'", protos.ci[y] if y in protos.classes else None),
               (f"clean {cs.ids[i][:22]}", cs.ci.ci[i])]
        for k in keys:
            a = exp.adversarial[k]
            j = np.flatnonzero(a.source == i)
            ok = len(j) and a.success[j[0]]
            row.append((f"{k.label} -> {names[a.ci.predicted[j[0]]][:12]}" if ok else f"{k.label}: failed",
                        a.ci.ci[j[0]] if ok else None))
        panels.append(row)
    fig = plots.ci_grid(panels, suptitle=f"{exp.setup.label}: CI vectors (layer {cs.ci.layer}), "
                                         f"eps {experiment.eps_label(exp.setup.paper_eps)}")
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
    protos = exp.prototypes
    have = np.array(protos.classes, dtype=np.int64)
    for eps in exp.setup.eps:
        groups = {"Prototypes": (protos.ci[have], None)}
        groups[experiment.CLEAN] = (exp.clean.ci.ci[exp.clean.correct], exp.clean.ci.predicted[exp.clean.correct])
        for k in exp.setup.keys(eps):
            a = exp.adversarial[k]
            groups[k.label] = (a.ci.ci[a.success], a.ci.predicted[a.success])
        per = {}
        for g, (v, pred) in groups.items():
            rho = (np.full(len(v), np.nan) if pred is None or not len(v)
                   else strategies.pearson_matrix(v, protos.ci)[np.arange(len(v)), pred])
            per[g] = {"causal": (v > 0).sum(axis=1), "zero": (v == 0).sum(axis=1), "rho": rho[np.isfinite(rho)],
                      "max": v.max(axis=1) if len(v) else np.zeros(0)}
            med = lambda x: round(float(np.median(x)), 3) if len(x) else None  # noqa: E731
            stats_rows.append({"dataset": experiment.DATASET_LABELS[d], "eps": experiment.eps_label(eps),
                               "group": g, "n": len(v), "median causal": med(per[g]["causal"]),
                               "no causal filter": int((per[g]["causal"] == 0).sum()),
                               "median zero": med(per[g]["zero"]), "median rho": med(per[g]["rho"]),
                               "median max CI": float(f"{np.median(per[g]['max']):.3g}") if len(v) else None})
        STATS[(d, eps)] = per

# %%
# NBVAL_CHECK_OUTPUT
display(Markdown(rep.table("table03_statistics", stats_rows,
                           caption="Causal filters, zero filters and rho with the prototype: medians per group")))

# %% [markdown]
# ## Figure 2b: distributions per group

# %%
for (d, eps), per in STATS.items():
    K = EXP[d].clean.ci.ci.shape[1]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    groups = {g: v for g, v in per.items()}
    plots.group_histograms(axes[0], {g: v["causal"] for g, v in groups.items()}, bins=np.linspace(0, K, 41),
                           xlabel="causal filters (CI > 0)", title="Strategy 1: causal filters")
    plots.group_histograms(axes[1], {g: v["zero"] for g, v in groups.items()}, bins=np.linspace(0, K, 41),
                           xlabel="zero filters (CI == 0)", title="Strategy 3: zero filters")
    plots.group_histograms(axes[2], {g: v["rho"] for g, v in groups.items()},  # prototypes: no rho (empty)
                           bins=np.linspace(-1, 1, 41), xlabel="Pearson rho with the predicted class's prototype",
                           title="Strategy 2: correlation with the prototype")
    fig.suptitle(f"{EXP[d].setup.label}, eps {experiment.eps_label(eps)}: {K} filters", fontsize=10)
    fig.tight_layout()
    name = f"fig03_statistics_{d}" if len(EXP[d].setup.eps) == 1 else f"fig03_statistics_{d}_{round(eps * 255)}"
    rep.figure(fig, name)
    plt.close(fig)

# %% [markdown]
# ## The paper's observations, checked
#
# Computed from the table above (the sentences are generated from the numbers of this run).

# %%
lines = []
for (d, eps), per in STATS.items():
    label = f"**{EXP[d].setup.label}, eps {experiment.eps_label(eps)}**"
    clean_rho = np.median(per[experiment.CLEAN]["rho"]) if len(per[experiment.CLEAN]["rho"]) else float("nan")
    parts = [f"clean: median rho with the prototype {clean_rho:.2f}, median max CI "
             f"{np.median(per[experiment.CLEAN]['max']):.2g}"]
    for k in EXP[d].setup.keys(eps):
        v = per[k.label]
        n = len(v["causal"])
        if not n:
            parts.append(f"{k.label}: no successful example")
            continue
        none = int((v["causal"] == 0).sum())
        rho = f"{np.median(v['rho']):.2f}" if len(v["rho"]) else "n/a"
        parts.append(f"{k.label}: {none}/{n} without any causal filter, median rho {rho}, "
                     f"median max CI {np.median(v['max']):.2g}")
    lines.append(f"* {label}: " + "; ".join(parts) + ".")
bim = [(d, eps, k) for (d, eps) in STATS for k in EXP[d].setup.keys(eps) if k.attack == "bim"]
bim_all_none = all(len(STATS[(d, eps)][k.label]["causal"]) and (STATS[(d, eps)][k.label]["causal"] == 0).all()
                   for d, eps, k in bim)
rep.record("bim_examples_all_without_causal_filter", bim_all_none)
sat, much_smaller = [], True
for (d, eps), per in STATS.items():
    it = [np.median(per[k.label]["max"]) for k in EXP[d].setup.keys(eps) if k.attack in ("bim", "pgd")
          and len(per[k.label]["max"])]
    if it:
        much_smaller &= max(it) < np.median(per[experiment.CLEAN]["max"]) / 10
        sat.append(f"{EXP[d].setup.label}, eps {experiment.eps_label(eps)}: median max CI {min(it):.2g}-{max(it):.2g} "
                   f"for BIM and PGD against {np.median(per[experiment.CLEAN]['max']):.2g} for clean samples")
display(Markdown("\n".join(lines) + "\n\n"
                 + ("Observation 2 holds here: every successful BIM example has no causal filter."
                    if bim_all_none else
                    "Observation 2 (BIM examples have no causal filter at all) does **not** hold in general here: "
                    "see the counts above. The authors' own stored ImageNet vectors show the same: 129 of their "
                    "249 BIM vectors have no positive CI (`reference-implementation.md`).")
                 + ("\n\nIn magnitude, though, the iterative attacks' CI vectors are more than ten times smaller than "
                    "the clean ones (" + "; ".join(sat) + "): their predictions are pushed to saturation, so removing "
                    "one filter barely moves the predicted probability. Counting filters with CI > 0 misses this; the "
                    "size of the CI values shows it (notebook 4 adds the largest CI value as a score)."
                    if sat and much_smaller else
                    "\n\nLargest CI values: " + "; ".join(sat) + "." if sat else "")))

# %%
print(f"results: {rep.save()}")
