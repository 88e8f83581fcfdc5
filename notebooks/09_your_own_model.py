# %% [markdown]
# # 9 Your own model: the whole CausAdv pipeline on a model you bring
#
# Notebooks 01-04 run CausAdv on the package's zoo models. This notebook carries the same pipeline to
# *any* model, in the few calls a student writes for their own:
#
# 1. **wrap** the Keras model: `zm = zoo.custom(keras_model, preprocess, outputs=..., normalize=...)`
#    (functional or Sequential; a nested `keras.applications` base is flattened into its layers; a model
#    that outputs logits gets a Softmax appended; a zoo model needs no wrapping: `zoo.get(name)`);
# 2. **CI vectors** of clean images: `ci.counterfactual_information(zm.model, x, zm.ci_layer)` (section 3.1);
# 3. **prototypes**: `prototypes.from_images(zm, uint8_images, labels)` for images in memory, or
#    `prototypes.for_pool(zm, pool)` for a pool read from disk (section 3.2);
# 4. **attacks**: `attacks.generate(zm, pixels, labels=..., attack="pgd", eps=8/255)` (FGSM, PGD, BIM);
# 5. **strategies**: `strategies.evaluate_all(ci, predicted, prototypes.ci, dataset=...)`, and ROC-AUC of each
#    strategy's score, clean against adversarial (`metrics.roc_auc`).
#
# It runs twice:
#
# * **A. a zoo model by name**, the papermill parameter `model` (default `mobilenet_v1_imagenet`, the TFLite
#   MobileNetV1 rebuilt by `zoo.from_tflite`; any name of `zoo.names()` works, e.g.
#   `papermill -p model resnet20_cifar10 ...`), on ImageNet or CIFAR-10 images by its dataset;
# * **B. a `keras.applications` model built here**: VGG16 (`weights=None`: no download, so it runs
#   offline) inside a `Sequential` with a 10-class logit head, on CIFAR-10 images. Its convolutions keep
#   their *random* initial weights; only the head is fitted, in seconds, on CIFAR-10 training images. Its
#   accuracy is printed below; **its CI vectors and detection numbers show the mechanics, not what CausAdv
#   achieves on a trained model.** (Why VGG16 and not MobileNetV2: an untrained MobileNetV2's batchnorm
#   layers hold their initial statistics, and its features come out about 1e-12 in size, too small for a
#   head to learn from; VGG16 has no batchnorm.)
#
# This notebook regenerates, per part (`a`, `b`): **Table 9a/9b** (`table09_setup_*`: model, CI layer,
# images, accuracy, prototypes, attack success), **Table 9c/9d** (`table09_detection_*`: the strategies' counts
# on clean and adversarial images, and the ROC-AUC of each strategy's score per attack) and **Figure 9a/9b** (`fig09_ci_*`: the CI vectors of one
# clean image, its PGD version and its class prototype). It ends with the command that runs the whole paper on
# part A's model (`make paper MODEL=... DATASET=... OUT=...`).

# %% tags=["parameters"]
profile = "paper"
model = "mobilenet_v1_imagenet"
out = None         # output folder (default: $CAUSADV_OUT, else paper_figures/[profile])

# %%
import time

import matplotlib

matplotlib.use("Agg")
import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from causadv_lib import config, data, experiment, plots, preprocess, prototypes, report, spread, zoo
from causadv_lib.analysis import tables

P = config.get_profile(profile)
rep = report.Report("09_your_own_model", profile, out_dir=out)
# this profile's scale (config.OWN_MODEL_SCALE): images evaluated and attacked, prototype pool searched, head
# training images and epochs, test images of the second model
SCALE = config.OWN_MODEL_SCALE[profile]
EPS = config.OWN_MODEL_EPS
ATTACKS = config.OWN_MODEL_ATTACKS
T0 = time.perf_counter()
print(f"profile={profile}  model={model}  scale={SCALE}  outputs={rep.out_dir}")


# %% [markdown]
# ## The pipeline, as a student writes it
#
# One function of a ZooModel, pixels at its input size (uint8, `zm.geometry` makes them from photographs)
# with their labels, and prototypes. Attacks run on the correctly classified images; CI vectors of every
# clean and adversarial image are cached on disk (`cache=True`), like everywhere in the package.

# %% [markdown]
# `experiment.run_on_model` is that function, in the library so that this notebook stays narrative; read it
# there (twenty lines). `analysis.tables.model_run_summary` describes a run in one table row, `model_run_rows` its strategies.

# %% [markdown]
# ## A. A zoo model by name
#
# `zoo.get(model)` is already a ZooModel. Its prototypes come from the dataset's prototype pool with
# `prototypes.for_pool` (ImageNet: one image per class; CIFAR-10: the training images), searched over an even
# spread of the pool at the smoke scale; the evaluation images are correctly classified candidates of the
# classes that have a prototype, evenly spread over the evaluation pool.

# %%
zm_a = zoo.get(model)
dataset_a = zm_a.dataset
eval_pool, proto_pool = {"imagenet": ("imagenet_eval", "imagenet_prototypes"),
                         "cifar10": ("cifar10_eval", "cifar10_prototypes")}[dataset_a]
pool = data.pool(eval_pool)
protos_a = prototypes.for_pool(zm_a, data.pool(proto_pool), limit=SCALE["proto_limit"], cache=True)
candidates = np.flatnonzero(np.isin(pool.labels, protos_a.classes))
chosen = candidates[spread.spread(len(candidates), SCALE["eval"])]
pixels_a = zm_a.geometry(pool.load(chosen))
labels_a = pool.labels[chosen]
out_a = experiment.run_on_model(zm_a, pixels_a, labels_a, dataset_a, attacks=ATTACKS, eps=EPS)
acc_a = f"{out_a.correct.mean():.0%} of the images chosen"
rows_a = tables.model_run_rows(out_a, protos_a)
setup_a = tables.model_run_summary(zm_a, out_a, protos_a, "A", acc_a)
rep.record("a/setup", setup_a)
rep.record("a/detection", rows_a)

# %%
display(Markdown(rep.table("table09_setup_a", [setup_a], caption=f"A. {model}: model, images, prototypes, attacks")))
display(Markdown(rep.table("table09_detection_a", rows_a,
                           caption=f"A. {model}: the strategies' paper counts (samples that pass; S1: samples "
                                   f"flagged) and ROC-AUC against the clean images, eps {round(EPS * 255)}/255")))

# %%
fig = plots.attack_example(out_a, protos_a, pool.class_names, f"A. {model}: CI vectors")
if fig is None:
    print("PGD succeeded on no image: no figure")
else:
    rep.figure(fig, "fig09_ci_a")
    plt.close(fig)

# %% [markdown]
# ## B. A `keras.applications` model you build
#
# The usual transfer-learning shape: a `keras.applications` base (here VGG16 at CIFAR-10's 32 x 32, built
# with `weights=None`), global average pooling and a 10-class `Dense` that outputs logits, in a
# `Sequential`. We fit only the head, on the pooled features of CIFAR-10 training images (computed once),
# which takes seconds. `zoo.custom(..., outputs="logits")` then flattens the nested base into its layers (so
# that its last convolution can be the CI layer) and appends a Softmax (whose input, the logits, serves every
# CI definition and the attacks).

# %%
keras.utils.set_random_seed(config.SEED)
base = keras.applications.VGG16(input_shape=(32, 32, 3), include_top=False, weights=None)
head = keras.layers.Dense(10, name="head")
net = keras.Sequential([keras.Input((32, 32, 3)), base, keras.layers.GlobalAveragePooling2D(), head], name="vgg16_cifar_head")
normalize_b = preprocess.to_unit_range   # float pixels in [0, 255] -> [-1, 1], the same map at every pixel


train = data.pool("cifar10_prototypes")
t_idx = spread.spread(len(train), SCALE["train"])
train_images, train_labels = train.load(t_idx), train.labels[t_idx]
features = keras.Sequential([keras.Input((32, 32, 3)), base, keras.layers.GlobalAveragePooling2D()]).predict(
    normalize_b(train_images), batch_size=64, verbose=0)
mu, sd = features.mean(0), features.std(0) + 1e-12
probe = keras.Sequential([keras.Input((features.shape[1],)), keras.layers.Dense(10)])
probe.compile(optimizer=keras.optimizers.Adam(1e-2),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
probe.fit((features - mu) / sd, train_labels, epochs=SCALE["epochs"], batch_size=64, verbose=0)
w, b = probe.layers[-1].get_weights()
head.set_weights([w / sd[:, None], b - (mu / sd) @ w])   # the standardisation folded into the head

zm_b = zoo.custom(net, lambda images: normalize_b(np.asarray(images)), outputs="logits", normalize=normalize_b,
                  class_names=data.CIFAR10_CLASSES, name="vgg16_random_features_cifar10", dataset="cifar10")
print(f"wrapped: CI layer {zm_b.ci_layer!r} (default rule), outputs={zm_b.outputs!r}, "
      f"last layers {[lyr.name for lyr in zm_b.model.layers[-3:]]}")

# %%
protos_b = prototypes.from_images(zm_b, train_images, train_labels, ids=[train.ids[i] for i in t_idx], cache=True)
test = data.pool("cifar10_eval")
e_idx = spread.spread(len(test), SCALE["cifar_eval"])
pixels_b, labels_b = test.load(e_idx), test.labels[e_idx]
out_b = experiment.run_on_model(zm_b, pixels_b, labels_b, "cifar10", attacks=ATTACKS, eps=EPS)
acc_b = f"{out_b.correct.mean():.0%} of {len(labels_b)} test images (chance 10%)"
rows_b = tables.model_run_rows(out_b, protos_b)
setup_b = tables.model_run_summary(zm_b, out_b, protos_b, "B", acc_b)
rep.record("b/setup", setup_b)
rep.record("b/detection", rows_b)
display(Markdown(rep.table("table09_setup_b", [setup_b], caption="B. VGG16 (random features) + fitted head")))
display(Markdown(rep.table("table09_detection_b", rows_b,
                           caption="B. VGG16 (random features) + fitted head: the strategies' paper counts and "
                                   "ROC-AUC (mechanics only: not a trained model)")))

# %%
fig = plots.attack_example(out_b, protos_b, test.class_names, "B. VGG16 (random features) + head: CI vectors")
if fig is None:
    print("PGD succeeded on no image: no figure")
else:
    rep.figure(fig, "fig09_ci_b")
    plt.close(fig)

# %%
best = {part: max((r for r in rows if r["PGD AUC"] is not None), key=lambda r: r["PGD AUC"], default=None)
        for part, rows in (("A", rows_a), ("B", rows_b))}
lines = [f"* **{part}** (`{zm.name}`): {int(out.correct.sum())} of {len(out.correct)} images correctly "
         f"classified; PGD succeeded on {int(out.adversarial['pgd'][2].sum())} of them"
         + (f"; the highest ROC-AUC against PGD is {best[part]['strategy']}'s, {best[part]['PGD AUC']:.3f} "
            "(0.5: chance)" if best[part] else "")
         for part, zm, out in (("A", zm_a, out_a), ("B", zm_b, out_b))]
rep.record("best_pgd_auc", {k: v and {"strategy": v["strategy"], "auc": v["PGD AUC"]} for k, v in best.items()})
display(Markdown("**Measured in this run.**\n\n" + "\n".join(lines) + "\n\n" + (
    "At the smoke scale these are a handful of images, and most ImageNet classes have no prototype (the pool is "
    "searched only in part), so S2 and S4 leave most adversarial examples uncounted: the AUCs estimate nothing. "
    if profile == "smoke" else "") + "Part B's model has random features: its numbers show that the pipeline "
    "runs on a model of your own, not what CausAdv achieves on a trained one."))
print(f"wall time {time.perf_counter() - T0:.1f} s")

# %% [markdown]
# ## The whole paper on your model
#
# Every experiment notebook (02 onwards: Tables 1-4, Figures 2-4, the ROC tables, the defences, the heatmaps and
# the confidence baselines, with the paper's numbers beside yours) runs on a model you name: a zoo name, a
# `.keras` or `.tflite` file (with its dataset and normalisation), into a folder of its own. For part A's model:

# %%
command = experiment.paper_command(model, dataset_a, profile=profile)
rep.record("paper_command", command)
display(Markdown(f"```bash\n{command}\n```\n\nA model file of yours: "
                 f"`{experiment.paper_command('path/to/my_cnn.keras', 'cifar10', normalize='[0,1]')}`"))

# %%
print(f"results: {rep.save()}")
