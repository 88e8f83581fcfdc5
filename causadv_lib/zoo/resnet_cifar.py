"""Keras port of akamaster's CIFAR-10 ResNet20 / ResNet56 (pytorch_resnet_cifar10, option-A shortcuts).

conv 3x3 (16) -> BN -> ReLU, then three stages of n basic blocks (n = 3: ResNet20, n = 9: ResNet56)
with 16, 32, 64 channels, the first block of stages 2 and 3 with stride 2; global average pooling ->
``logits`` Dense 64 -> 10 (linear) -> ``probs`` Softmax. No convolution has a bias; BN epsilon 1e-5
(PyTorch's). A stride-2 3x3 convolution gets an explicit 1-pixel ``ZeroPadding2D`` and "valid"
padding, as PyTorch pads every side by 1 (Keras "same" would pad only bottom/right).
Basic block ``stage{s}_block{b}``: ``_conv1 -> _bn1 -> _relu1 -> _conv2 -> _bn2``, plus the shortcut
(identity, or ``_shortcut``: option A, `ShortcutA`), ``_add`` -> ``_out`` (ReLU). The CI layer is the
last block's ``_out`` (8x8x64). Weights: the upstream state_dict as plain arrays, conv weights
(out, in, kh, kw) -> Keras (kh, kw, in, out).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

DEPTHS = {"resnet20": 3, "resnet56": 9}
BN_EPS = 1e-5


@keras.saving.register_keras_serializable(package="causadv")
class ShortcutA(keras.layers.Layer):
    """Option-A shortcut: every second pixel (x[:, ::2, ::2, :]), channels zero-padded `pad` on each side."""

    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, x):
        return ops.pad(x[:, ::2, ::2, :], [[0, 0], [0, 0], [0, 0], [self.pad, self.pad]])

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        half = lambda d: None if d is None else (d + 1) // 2  # noqa: E731
        return (n, half(h), half(w), c + 2 * self.pad)

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


def ci_layer(arch: str) -> str:
    """Name of the CI layer of `arch`: the final ReLU of the last block (8x8x64)."""
    return f"stage3_block{DEPTHS[arch] - 1}_out"


def _conv_bn(x, filters, stride, prefix, k):
    if stride == 2:
        x = keras.layers.ZeroPadding2D(1, name=f"{prefix}_pad{k}")(x)
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="valid" if stride == 2 else "same",
                            use_bias=False, name=f"{prefix}_conv{k}")(x)
    return keras.layers.BatchNormalization(epsilon=BN_EPS, momentum=0.9, name=f"{prefix}_bn{k}")(x)


def build_graph(arch: str, name: str | None = None) -> keras.Model:
    """The ResNet graph for `arch` ("resnet20" or "resnet56") with fresh weights."""
    n = DEPTHS[arch]
    inputs = keras.Input((32, 32, 3), name="input", dtype="float32")
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(epsilon=BN_EPS, momentum=0.9, name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    channels = 16
    for s, planes in enumerate((16, 32, 64), start=1):
        for b in range(n):
            stride = 2 if (s > 1 and b == 0) else 1
            prefix = f"stage{s}_block{b}"
            y = _conv_bn(x, planes, stride, prefix, 1)
            y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
            y = _conv_bn(y, planes, 1, prefix, 2)
            if stride != 1 or channels != planes:
                x = ShortcutA(planes // 4, name=f"{prefix}_shortcut")(x)
            x = keras.layers.Add(name=f"{prefix}_add")([y, x])
            x = keras.layers.ReLU(name=f"{prefix}_out")(x)
            channels = planes
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(10, name="logits")(x)
    outputs = keras.layers.Softmax(name="probs")(x)
    return keras.Model(inputs, outputs, name=name or f"{arch}_cifar10")


def _torch_key(layer: str) -> str:
    """Keras layer name -> PyTorch state_dict prefix (stage2_block0_conv1 -> layer2.0.conv1)."""
    if layer.startswith("stage"):
        stage, block, part = layer.split("_")
        return f"layer{stage[5:]}.{block[5:]}.{part}"
    return layer


def build(arch: str, weights_path, name: str | None = None) -> keras.Model:
    """Build `arch` and load the akamaster weights from `weights_path` (npz of the PyTorch state_dict)."""
    model = build_graph(arch, name)
    with np.load(weights_path, allow_pickle=False) as npz:
        w = {k: npz[k].astype(np.float32) for k in npz.files}
    for layer in model.layers:
        key = _torch_key(layer.name)
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([w.pop(f"{key}.weight").transpose(2, 3, 1, 0)])
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([w.pop(f"{key}.{k}") for k in ("weight", "bias", "running_mean", "running_var")])
            w.pop(f"{key}.num_batches_tracked", None)
    model.get_layer("logits").set_weights([w.pop("linear.weight").T, w.pop("linear.bias")])
    if w:
        raise ValueError(f"{weights_path}: unused arrays {sorted(w)}")
    return model
