# %% [markdown]
# # 6 Detection through causal explanations (paper section 5, Figure 4)
#
# The paper's last idea: the causal filters of a class's prototype (CI > 0) can be drawn on any image as an
# attention map. On a clean image of that class the map should highlight the object, as it does on the prototype;
# on an adversarial image predicted as that class, the class's causal features are not really there, and the map
# should look meaningless. The paper only shows pictures (its Figure 4). Here (`causadv_lib.heatmaps`):
#
# * **causal heatmap** of a sample $x$ predicted as class $c$: $x$'s activation maps at the CI layer, weighted by
#   the CI of $c$'s prototype (causal filters only, CI > 0), summed, ReLU, divided by the maximum, upsampled
#   bilinearly to the image and overlaid on it;
# * **the authors' variant**: what their code drew, a binary mask of the prototype's causal filters and the
#   channel mean (the CI values themselves are not used);
# * **Grad-CAM** of the predicted class's logit on the same layer, the gradient-based explanation the paper
#   contrasts CausAdv with.
#
# Figure 4 shows, for a few classes of both datasets, the clean image and each attack's adversarial example
# (the paper's budget), with the three maps. Then a number instead of pictures: the **heatmap-consistency
# score**, the agreement (cosine, or Pearson correlation, over the map's cells) between the sample's *own*
# CI-weighted map (its own CI of its predicted class, causal filters only) and the map built from its predicted
# class's prototype CI, both on the sample's activations. Larger disagreement = more suspicious; its ROC-AUC
# and TPR at 5% FPR (threshold from clean samples only) are given per attack, in the layout of notebook 4, beside
# strategy 2's Pearson correlation of the CI vectors themselves.
#
# Differences from the authors' code: the maps are weighted by CI (the paper's description), not a binary mask;
# samples are the correctly classified clean images and the *successful* adversarial examples of notebook 2, kept
# as float arrays. The maps live at the CI layer's resolution, printed below: MobileNetV2's last convolution is
# 7x7, the CIFAR-10 VGG's 2x2, so CIFAR-10 maps are very coarse.
#
# This notebook regenerates **Figure 4** (`fig06_heatmaps_imagenet`, `fig06_heatmaps_cifar10`), the consistency
# score's ROC table (`table06_heatmap_roc`, compact view `table06_heatmap_auc`) and its distributions
# (`fig06_consistency`).

# %% tags=["parameters"]
profile = "paper"
imagenet_model = "mobilenet_v2_imagenet"
cifar_model = "vgg16_bn_cifar10"
model = None       # your model instead: a zoo or registered name, or a .keras/.tflite file (README, "Bring your own model")
dataset = None     # the dataset it classifies (cifar10 | imagenet); only that dataset runs
normalize = None   # a model file's input normalisation: [0,1] | [-1,1] | imagenet-caffe | imagenet-torch
out = None         # output folder (default: $CAUSADV_OUT, else paper_figures/[profile])
n_examples = 3

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from causadv_lib import experiment, heatmaps, plots, report
from causadv_lib.analysis import heatmaps as heat_eval
from causadv_lib.analysis import tables
from causadv_lib.vocab import DATASET_LABELS, S2_RHO, eps_label

rep = report.Report("06_causal_explanations", profile, out_dir=out)
SETUPS = experiment.setups(profile, imagenet_model=imagenet_model, cifar_model=cifar_model, model=model,
                          dataset=dataset, normalize=normalize)
EXP = {s.dataset: experiment.run(s, progress=False) for s in SETUPS}
ZM = {d: exp.setup.zoo_model() for d, exp in EXP.items()}
for d, exp in EXP.items():
    zm = ZM[d]
    h, w, k = heatmaps.layer_shape(zm)
    rep.record(f"{d}/layer", {"model": zm.name, "layer": zm.ci_layer, "shape": [h, w, k]})
    print(f"{exp.setup.label}: CI layer {zm.ci_layer!r}, {h}x{w} cells x {k} filters; images "
          f"{zm.input_shape[0]}x{zm.input_shape[1]}; {len(exp.prototypes.classes)} of "
          f"{exp.prototypes.num_classes} classes have a prototype")

# %% [markdown]
# ## Figure 4: causal heatmaps, the authors' variant and Grad-CAM
#
# For each dataset, `n_examples` clean images of different classes (`analysis.heatmaps.choose_examples`: those with the
# most successful attacks at the paper's budget whose adversarial class has a prototype, so that its causal map
# can be drawn; ties broken by list order), each followed by its adversarial examples. Titles give the
# predicted class and its probability (red: an adversarial prediction). Three rows per image: the causal heatmap
# (with the sample's consistency, the cosine between its own CI map and the prototype's, in the corner), the
# authors' binary-mask map, and Grad-CAM. "no map": the predicted class has no prototype; an empty panel: that
# attack failed on the image.

# %%
EXAMPLES = {}
for d, exp in EXP.items():
    zm, cs, eps = ZM[d], exp.clean, exp.setup.paper_eps
    chosen = heat_eval.choose_examples(exp, n_examples)
    EXAMPLES[d] = chosen
    panels, row_labels, records = heat_eval.figure_panels(exp, chosen, zm=zm, colors=(plots.CORRECT, plots.WRONG))
    fig = plots.heatmap_grid(panels, row_labels=row_labels, size=1.6,
                             suptitle=f"Figure 4 ({DATASET_LABELS[d]}, {zm.name}, eps "
                                      f"{eps_label(eps)}): causal heatmaps of the predicted class's "
                                      f"prototype, the authors' variant and Grad-CAM on layer {zm.ci_layer}")
    rep.figure(fig, f"fig06_heatmaps_{d}")
    plt.close(fig)
    rep.record(f"{d}/figure4_examples", records)
    print(f"{DATASET_LABELS[d]}: examples {[cs.ids[i] for i in chosen]}; {len(records)} samples drawn")

# %% [markdown]
# ## Beyond the pictures: the heatmap-consistency score
#
# Score = 1 - agreement between the sample's own CI-weighted map and its predicted class's prototype map (cosine
# or Pearson over the map's cells; 0 agreement where a map is zero everywhere, e.g. a sample without any causal
# filter). ROC-AUC over all thresholds (0.5 = chance) and TPR at 5% FPR with the threshold set on clean samples
# only. Samples whose predicted class has no prototype cannot be scored and are left out (the `n_*` columns say
# how many remain). For comparison, strategy 2's score from notebook 4 (Pearson correlation of the CI *vectors*
# with the prototype's), on the same samples.

# %%
SCORES = {(d, eps): heat_eval.consistency_scores(exp, eps, zm=ZM[d]) for d, exp in EXP.items() for eps in exp.setup.eps}
roc_rows = []
for d, exp in EXP.items():
    roc_rows += heat_eval.detection_rows(exp, zm=ZM[d], scores={eps: SCORES[(d, eps)] for eps in exp.setup.eps})
    roc_rows += [r for r in tables.detection_rows(exp) if r["strategy"] == S2_RHO]
rep.table("table06_heatmap_roc", roc_rows)
compact, compact_columns = tables.roc_summary(roc_rows, SETUPS[0])

# %%
display(Markdown(rep.table("table06_heatmap_auc", compact, compact_columns,
                           caption="ROC-AUC / TPR at 5% FPR (threshold on clean samples) of the heatmap-consistency "
                                   "score, with strategy 2's CI-vector correlation for comparison")))

# %% [markdown]
# Distributions of the score, 1 - agreement, per group, on a log scale (the agreement of clean samples is close to
# 1, so the differences are in the last digits; an agreement of 0, e.g. a sample without causal filters, gives 1).

# %%
panels = list(SCORES)
fig, axes = plt.subplots(2, len(panels), figsize=(4.8 * len(panels), 6.4), squeeze=False)
bins = np.geomspace(1e-4, 2.0, 28)
for col, (d, eps) in enumerate(panels):
    sc = SCORES[(d, eps)]
    for row, m in enumerate(heatmaps.MEASURES):
        groups = heat_eval.score_groups(sc, EXP[d].setup.keys(eps), m)
        ax = axes[row, col]
        plots.group_histograms(ax, groups, bins=bins, xlabel=f"1 - {m}(own CI map, prototype map)",
                               title=f"{EXP[d].setup.label}, eps {eps_label(eps)}")
        ax.set_xscale("log")
fig.suptitle("Heatmap consistency score (larger = more suspicious): each sample's own causal map against its predicted "
             "class's prototype map", fontsize=10)
fig.tight_layout()
rep.figure(fig, "fig06_consistency")
plt.close(fig)

# %% [markdown]
# ## What the numbers say
#
# Sentences generated from this run's numbers.

# %%
lines = heat_eval.summary_lines(SCORES, roc_rows, EXP)
display(Markdown("\n".join(lines)))

# %% [markdown]
# Reading Figure 4 against the paper's claim ("for adversarial examples across all attacks, the heatmaps generated
# are meaningless"): a heatmap is drawn on the image's own activations, so an adversarial image whose content
# barely changed can still light up the object even though its predicted class's causal filters were picked on a
# different object. The consistency score measures exactly that difference, and the table above says, per attack,
# how far the pictures' impression carries as a detector.

# %%
print(f"results: {rep.save()}")
