# %% [markdown]
# # 0 Models and data (paper section 4.1, experiment set-up)
#
# The paper runs CausAdv on ImageNet (VGG16) and CIFAR-10 (a VGG16 variant). This package runs offline
# from a verified data mirror, so its ImageNet model is **MobileNetV2** (a float Keras rebuild of the
# int8 TFLite file; VGG16-ImageNet weights need internet and stay available as `vgg16_imagenet`), and its
# CIFAR-10 models are a **VGG16-BN** trained for this project and two pretrained **ResNets**.
#
# This notebook regenerates:
#
# * **Table 0** (`table00_zoo_accuracy`): top-1 accuracy of every zoo model on its datasets, beside the
#   reference numbers measured when the mirror was made; **Table 0c** (`table00_pools`) says what each
#   image pool named there is.
# * **Table 0b** (`table00_samples`): the committed evaluation samples used by every later notebook.
# * **Figure 0a/0b** (`fig00_samples_imagenet`, `fig00_samples_cifar10`): the first evaluation samples
#   (top row) and an even spread of the whole pool (bottom row), with labels and the model's predictions.
#
# Every file is verified by sha256 before use (`causadv_lib.data`); every model's preprocessing is
# documented in `causadv_lib.preprocess`.

# %% tags=["parameters"]
profile = "paper"
out = None         # output folder (default: $CAUSADV_OUT, else paper_figures/[profile])

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from causadv_lib import config, data, plots, report, samples, spread, zoo
from causadv_lib.zoo import evaluate

P = config.get_profile(profile)
rep = report.Report("00_models_and_data", profile, out_dir=out)
print(f"profile={P.name}  data={data.data_dir()}  outputs={rep.out_dir}")

# %% [markdown]
# ## Table 0: zoo accuracy
#
# Top-1 of each model on each of its datasets. The `paper` profile evaluates whole pools (10 000 CIFAR-10
# JPEG test images, 1000 ImageNet sample images, 1300 ImageNet validation images, 20 + 20 lossless
# images); the `smoke` profile `accuracy_limit` images (200) evenly spread over each pool
# (`spread.spread`: not random; pools are ordered by class, so every part of a pool is represented). The
# CIFAR JPEGs are lossy (about the size of an attack budget), so the accuracies are below those on the
# original CIFAR-10 test set; the lossless PNGs are the artefact-free control. The pools are named as in
# the code; Table 0c below says what each one is.

# %%
rows = []
for name in evaluate.OFFLINE_MODELS:
    zm = zoo.get(name)
    for pool_name in evaluate.CHECK_POOLS[zm.dataset]:
        result = evaluate.top1(zm, pool_name, limit=P.accuracy_limit)
        rows.append({"model": name, "dataset": pool_name, "top1": round(result.top1, 4), "n": result.n,
                     "reference": evaluate.REFERENCE_TOP1.get((name, pool_name))})
display(Markdown(rep.table("table00_zoo_accuracy", rows, caption="Top-1 accuracy of the zoo models")))

# %%
POOL_LEGEND = {
    "imagenet_prototypes": ("ImageNet sample images, one per class", "prototypes (ImageNet)"),
    "imagenet_eval": ("ImageNet validation images with their labels", "evaluation samples (ImageNet)"),
    "cifar10_prototypes": ("CIFAR-10 training images, JPEG", "prototypes (CIFAR-10)"),
    "cifar10_eval": ("CIFAR-10 test images, JPEG", "evaluation samples (CIFAR-10)"),
    "lossless_imagenet": ("ImageNet images stored losslessly (PNG)", "artefact-free accuracy control"),
    "lossless_cifar10": ("CIFAR-10 images stored losslessly (PNG)", "artefact-free accuracy control"),
}
pool_rows = []
for pool_name, (what, use) in POOL_LEGEND.items():
    pool = data.pool(pool_name)
    pool_rows.append({"pool": pool_name, "what": what, "images": len(pool),
                      "classes": len(set(pool.labels.tolist())), "used for": use})
display(Markdown(rep.table("table00_pools", pool_rows, caption="Table 0c: the image pools")))

# %% [markdown]
# ## Evaluation samples
#
# The images every experiment uses were chosen once, seeded, among images the model classifies
# correctly, and committed as plain id lists in `data_manifest/samples/` (the paper samples 6 images x 50
# classes of the ImageNet validation set; the mirror's 1300 validation images hold only 4 classes with 6
# or more images, so we take 2 images x 150 classes). A profile uses a prefix of each list.

# %%
sample_rows = []
chosen = {}
for (model_name, pool_name) in samples.PAPER_LISTS:
    s = samples.for_profile(model_name, pool_name, profile)
    chosen[(model_name, pool_name)] = s
    sample_rows.append({"model": model_name, "pool": pool_name, "images": len(s.ids),
                        "classes": len(set(s.labels)), "first ids": ", ".join(s.ids[:3])})
display(Markdown(rep.table("table00_samples", sample_rows, caption="Evaluation samples of this profile")))

# %% [markdown]
# ## Figure 0: sample images with labels and predictions
#
# Top row: the first 8 evaluation samples of this profile (the images later notebooks use; correctly
# classified by construction). Bottom row: 8 images evenly spread over the whole pool, not filtered, so any
# error shows.
# Green titles: correct predictions; red: errors.

# %%
for model_name, pool_name, fig_name in [("mobilenet_v2_imagenet", "imagenet_eval", "fig00_samples_imagenet"),
                                        ("vgg16_bn_cifar10", "cifar10_eval", "fig00_samples_cifar10")]:
    zm = zoo.get(model_name)
    pool = data.pool(pool_name)
    idx = np.concatenate([pool.index_of(chosen[(model_name, pool_name)].ids[:8]), spread.spread(len(pool), 8)])
    images = pool.load(idx)
    probs = zm.predict(images)
    fig = plots.image_grid(images, [pool.labels[i] for i in idx], probs, pool.class_names, columns=8,
                           title=f"{model_name} on {pool_name}: evaluation samples (top), an even spread of "
                                 "the pool (bottom)")
    rep.figure(fig, fig_name)
    plt.close(fig)

# %%
path = rep.save()
print(f"results: {path}")
