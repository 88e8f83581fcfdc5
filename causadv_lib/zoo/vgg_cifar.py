"""VGG16 with batch norm for CIFAR-10 (this project's weights, trained by shared/recipes/train_vgg16_cifar.py).

Architecture (the weights' JSON): 13 blocks conv 3x3 "same" without bias -> BatchNorm (epsilon 1e-3)
-> ReLU, 2x2 max pooling after blocks 2, 4, 7, 10 and 13; flatten (1x1x512) -> ``fc1`` Dense 512
ReLU -> dropout 0.5 -> ``logits`` Dense 10 (linear) -> ``probs`` Softmax.
Layer names: ``conv1``..``conv13``, ``bn1``.., ``relu1``..``relu13`` (``relu13``, 2x2x512, is the
CI layer), ``pool1``..``pool5``, ``flatten``, ``fc1``, ``dropout``, ``logits``, ``probs``.
The npz holds float16 arrays in Keras layout; they are cast to float32.
"""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
CI_LAYER = "relu13"


def build(weights_path, json_path, name: str = "vgg16_bn_cifar10") -> keras.Model:
    """Build the Keras VGG16-BN from its npz weights (Keras layout) and JSON description."""
    meta = json.loads(Path(json_path).read_text())
    cfg = tuple(meta["cfg"])
    if cfg != CFG:
        raise ValueError(f"{json_path}: cfg {cfg} differs from the VGG16 layout {CFG}")
    eps = float(meta["bn_epsilon"])
    inputs = keras.Input((32, 32, 3), name="input", dtype="float32")
    x, i, p = inputs, 0, 0
    for v in cfg:
        if v == "M":
            p += 1
            x = keras.layers.MaxPooling2D(2, name=f"pool{p}")(x)
            continue
        i += 1
        x = keras.layers.Conv2D(v, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(epsilon=eps, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(512, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    x = keras.layers.Dense(10, name="logits")(x)
    outputs = keras.layers.Softmax(name="probs")(x)
    model = keras.Model(inputs, outputs, name=name)

    with np.load(weights_path, allow_pickle=False) as npz:
        w = {k: npz[k].astype(np.float32) for k in npz.files}
    for j in range(1, i + 1):
        model.get_layer(f"conv{j}").set_weights([w.pop(f"conv{j}/kernel")])
        model.get_layer(f"bn{j}").set_weights([w.pop(f"bn{j}/{k}") for k in
                                              ("gamma", "beta", "moving_mean", "moving_variance")])
    for lname, src in (("fc1", "fc1"), ("logits", "fc2")):
        model.get_layer(lname).set_weights([w.pop(f"{src}/kernel"), w.pop(f"{src}/bias")])
    if w:
        raise ValueError(f"{weights_path}: unused arrays {sorted(w)}")
    return model
