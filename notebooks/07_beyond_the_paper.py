# %% [markdown]
# # 7 Beyond the paper: CausAdv as a detector, against its peers and against an attacker who knows it
#
# The paper reports one count per strategy at one threshold, with no baseline and no attacker who knows the
# detector. The field asks both of any detector (Carlini & Wagner 2017; Tramer et al. 2020; the notes in
# `../shared/notes/evaluation-standard.md`). This notebook asks them, on the images, attacks and CI vectors of
# the shared experiment (notebook 2), on both datasets and, for CIFAR-10, at both budgets (at the smoke profile,
# CIFAR-10 only unless a dataset is named: `config.BEYOND_DATASETS`):
#
# 1. **The detector** (`causadv_lib.detector.CausAdvDetector`, ART's `EvasionDetector` interface): fitted on
#    clean images only (the evaluation pool without the evaluation sample), with the paper's prototypes, each
#    strategy and the combined score calibrated at a 5% false-positive rate.
# 2. **Its peers**, run by this project's code on the same images (`causadv_lib.peers`): maximum softmax
#    probability (the baseline every detector must beat), feature squeezing, ART's subset scanning on the CI
#    layer, and a supervised Mahalanobis detector trained on PGD examples of other images. One table per dataset
#    and budget: ROC-AUC and TPR at 5% FPR per attack, on the successful adversarial examples paired with their
#    clean sources, and the calibrated detectors' own detection rate / false-positive rate beside the
#    detectors_review benchmark's numbers (marked as that benchmark's).
# 3. **An adaptive attacker** (`causadv_lib.adaptive`): PGD on the classification loss plus a term that moves
#    CausAdv's scores toward the clean side, through a differentiable CI vector; judged by the real detector.
# 4. **An eps sweep**: FGSM and PGD at 1, 2, 4, 8 and 16 / 255: attack success and detection ROC-AUC.
# 5. **Adversarial images as they would be stored**: every attack's success as floats and after rounding to
#    uint8, attacks that stay on the 8-bit grid, and the peer table for those.
# 6. **A plain-language conclusion**, computed from this run's numbers.
#
# This notebook regenerates `table07_detector`, `table07_peers`, `table07_other_benchmark`, `table07_adaptive`,
# `table07_sweep`, `table07_rounding`, `table07_peers_8bit`, and the figures `fig07_peers`, `fig07_adaptive` and
# `fig07_eps_sweep`.

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
from causadv_lib.analysis import detectors
from causadv_lib.vocab import DATASET_LABELS, eps_label

rep = report.Report("07_beyond_the_paper", profile, out_dir=out)
SETUPS, LEFT_OUT = detectors.setups_of(experiment.setups(profile, imagenet_model=imagenet_model,
                                                          cifar_model=cifar_model, model=model, dataset=dataset,
                                                          normalize=normalize), profile, dataset)
EXP = {s.dataset: experiment.run(s, progress=False) for s in SETUPS}
BENCH = {d: detectors.bench(exp.setup) for d, exp in EXP.items()}
SETTINGS = [(s.dataset, eps) for s in SETUPS for eps in s.eps]
display(Markdown("\n".join(detectors.bench_lines(BENCH.values()) + LEFT_OUT)))

# %% [markdown]
# ## 1 The detector, fitted on clean images only
#
# Per strategy (in the paper's direction: larger = more suspicious) and for the combined score (the largest
# two-sided calibrated tail over the strategies, `causadv_lib.detector`), the threshold set at 5% FPR on the
# fit images, and the false-positive rate it gives on the correctly classified *evaluation* images, which the
# fit never saw.

# %%
detector_rows = [row for d, exp in EXP.items() for row in detectors.detector_rows(BENCH[d], exp)]
display(Markdown(rep.table("table07_detector", detector_rows,
                           caption="Thresholds at 5% FPR on the fit images; realised FPR on the evaluation images")))

# %% [markdown]
# ## 2 Peers: the same images, the same attacks, the same code path
#
# Each cell: ROC-AUC / TPR at 5% FPR (threshold on the paired clean sources; ties count against the
# detector). `*`: the attack the supervised Mahalanobis detector was trained on (untargeted PGD at the same
# budget, on other images); its other cells show how it transfers.

# %%
PEERS = {(d, eps): detectors.peer_rows(BENCH[d], EXP[d], eps) for d, eps in SETTINGS}
peer_rows = [r for rows in PEERS.values() for r in rows]
_ = rep.table("table07_peers", peer_rows)
ATTACKS = {(d, eps): list(dict.fromkeys(r["attack"] for r in rows)) for (d, eps), rows in PEERS.items()}
for (d, eps), rows in PEERS.items():
    display(Markdown(report.markdown_table(
        detectors.compact(rows), ["detector", *ATTACKS[(d, eps)]],
        caption=f"{EXP[d].setup.label}, eps {eps_label(eps)}: ROC-AUC / TPR at 5% FPR, successful examples only")))
display(Markdown("\n".join(detectors.not_run_lines(BENCH.values()))))

# %% [markdown]
# The calibrated detectors' own verdicts, detection rate % / false-positive rate % for the untargeted attacks,
# beside the detectors_review benchmark's published numbers for other detectors (CIFAR-10, eps 8/256, their
# models and images: another benchmark's numbers, not run here, shown for scale only).

# %%
other = detectors.other_benchmark_rows(PEERS)
if other:
    display(Markdown(rep.table("table07_other_benchmark", other, ["source", "detector", "FGSM", "BIM", "PGD"],
                               caption="Detection rate % / FPR %, untargeted attacks")))

# %% [markdown]
# The ROC-AUC of the peer tables at a glance: red = the detector ranks the attack's examples above their clean
# sources (1 = perfectly), blue = below (an AUC under 0.5: the score moves the other way for that attack),
# white = chance. A framed cell is the supervised detector's training attack.

# %%
fig, axes = plt.subplots(1, len(PEERS), figsize=(5.2 * len(PEERS), 4.2), squeeze=False)
for ax, ((d, eps), rows) in zip(axes[0], PEERS.items()):
    names, cols, values, marked = detectors.matrix(rows)
    plots.value_matrix(ax, names, cols, values, highlight=marked,
                       title=f"{EXP[d].setup.label}, eps {eps_label(eps)}")
fig.suptitle("ROC-AUC of every detector against every attack (successful examples, paired clean sources)",
             fontsize=10)
fig.tight_layout()
rep.figure(fig, "fig07_peers")
plt.close(fig)

# %% [markdown]
# ## 3 An adaptive attacker
#
# The attacker knows the detector: its strategies, prototypes and clean reference distributions
# (`causadv_lib.adaptive`). It runs untargeted PGD at the budget of the plain attacks on a loss that asks for
# a misclassification *and* for CausAdv scores near the middle of the clean distribution, through a
# differentiable CI vector; the count-based strategies get smooth surrogates (see the module). The real
# detector then judges its images. The attacker wins only when the image is misclassified and not flagged.

# %%
ADAPTIVE = [row for d, eps in SETTINGS for row in detectors.adaptive_rows(BENCH[d], EXP[d], eps)]
display(Markdown(rep.table("table07_adaptive", ADAPTIVE, caption="The adaptive attacker against the real detector")))

# %% [markdown]
# Per setting, against the number of attack iterations: the attacker's success (misclassified and not flagged),
# the detector's TPR on the misclassified examples, and the accuracy of the defended system (correct, or
# detected); solid: the adaptive attacker, dashed: the same loop without the detector term.

# %%
KEYS = list(dict.fromkeys((r["dataset"], r["eps"]) for r in ADAPTIVE))
fig, axes = plt.subplots(1, len(KEYS), figsize=(4.6 * len(KEYS), 3.8), squeeze=False)
for ax, (d, e) in zip(axes[0], KEYS):
    rows = [r for r in ADAPTIVE if (r["dataset"], r["eps"]) == (d, e)]
    its = [r["iterations"] for r in rows]
    series, styles = {}, {}
    for label, key, color in (("attack success", "success rate", "C3"), ("detector TPR", "TPR", "C0"),
                              ("defended accuracy", "defended accuracy", "C2")):
        for who, prefix, style in (("adaptive", "", "-"), ("plain", "plain ", "--")):
            series[f"{label} ({who})"] = [r[prefix + key] for r in rows]
            styles[f"{label} ({who})"] = {"color": color, "linestyle": style}
    plots.curves(ax, its, series, xlabel="attack iterations", ylabel="rate", log_x=True,
                 xticklabels=[str(t) for t in its], styles=styles,
                 title=f"{DATASET_LABELS[d]}, eps {e} ({rows[0]['attacked']} images)")
fig.suptitle("An attacker who knows CausAdv, judged by the real detector", fontsize=10)
fig.tight_layout()
rep.figure(fig, "fig07_adaptive")
plt.close(fig)

# %% [markdown]
# ## 4 An eps sweep
#
# Untargeted FGSM and PGD at 1, 2, 4, 8 and 16 / 255 on the first correctly classified evaluation images:
# the attack's success rate, and the ROC-AUC of the best CausAdv strategy (chosen at the paper's budget, from
# the peer table above), of the combined detector and of maximum softmax probability.

# %%
BEST = {d: detectors.best_strategy(PEERS[(d, EXP[d].setup.paper_eps)]) for d in EXP}
SWEEP = [row for d, exp in EXP.items() for row in detectors.sweep_rows(BENCH[d], exp, BEST[d])]
display(Markdown(rep.table("table07_sweep", SWEEP, caption="Attack success and detection ROC-AUC against eps")))

# %%
fig, axes = plt.subplots(len(EXP), 2, figsize=(11, 3.6 * len(EXP)), squeeze=False)
for i, d in enumerate(EXP):
    for attack, style in zip(config.SWEEP_ATTACKS, ("-", "--")):
        rows = [r for r in SWEEP if r["dataset"] == d and r["attack"] == attack.upper()]
        x = [r["eps_value"] * 255 for r in rows]
        ticks = [r["eps"] for r in rows]
        plots.curves(axes[i, 0], x, {f"{attack.upper()} success": [r["success rate"] for r in rows]},
                     xlabel="eps (grey levels of 255)", ylabel="attack success rate", log_x=True,
                     xticklabels=ticks, styles={f"{attack.upper()} success": {"linestyle": style, "color": "black"}},
                     title=f"{EXP[d].setup.label}: untargeted attacks")
        series = {f"{attack.upper()}: {BEST[d]}": [r["AUC best strategy"] for r in rows],
                  f"{attack.upper()}: CausAdv combined": [r["AUC combined"] for r in rows],
                  f"{attack.upper()}: max softmax": [r["AUC max softmax"] for r in rows]}
        plots.curves(axes[i, 1], x, series, xlabel="eps (grey levels of 255)", ylabel="detection ROC-AUC",
                     log_x=True, xticklabels=ticks, reference=0.5,
                     styles={k: {"linestyle": style, "color": c} for k, c in zip(series, ("C3", "C0", "C7"))},
                     title=f"{EXP[d].setup.label}: detection of the successful examples")
fig.suptitle("Attack success and detection against the budget", fontsize=10)
fig.tight_layout()
rep.figure(fig, "fig07_eps_sweep")
plt.close(fig)

# %% [markdown]
# ## 5 Adversarial images as they would be stored
#
# The attacks of notebook 2 keep float pixels. Any saved image is 8-bit: the success rate of each attack as
# floats, after rounding its images to uint8, and (on the first correctly classified images) of the same
# attack run on the 8-bit grid (rounded after every step, success checked on the rounded image). Then the
# peer table for the 8-bit adversarial examples.

# %%
ROUNDING = {(d, eps): detectors.rounding_rows(EXP[d], eps) for d, eps in SETTINGS}
rounding_rows = [r for rows, _ in ROUNDING.values() for r in rows]
display(Markdown(rep.table("table07_rounding", rounding_rows, caption="Attack success: floats, rounded, 8-bit grid")))

# %%
PEERS_8BIT = {(d, eps): detectors.peer_rows(BENCH[d], EXP[d], eps, groups=ROUNDING[(d, eps)][1],
                                            meta={"images": "8-bit grid"}) for d, eps in SETTINGS}
_ = rep.table("table07_peers_8bit", [r for rows in PEERS_8BIT.values() for r in rows])
for (d, eps), rows in PEERS_8BIT.items():
    display(Markdown(report.markdown_table(
        detectors.compact(rows), ["detector", *ATTACKS[(d, eps)]],
        caption=f"{EXP[d].setup.label}, eps {eps_label(eps)}, 8-bit adversarial examples: ROC-AUC / TPR at 5% FPR")))

# %% [markdown]
# ## 6 Where CausAdv works, and where it does not
#
# Sentences computed from this run's numbers (nothing below is written in advance).

# %%
lines, verdict = detectors.conclusion(peer_rows, ADAPTIVE, SWEEP, rounding_rows,
                                      [r for rows in PEERS_8BIT.values() for r in rows], profile)
rep.record("conclusion", verdict)
display(Markdown("\n".join(lines)))

# %%
print(f"results: {rep.save()}")
