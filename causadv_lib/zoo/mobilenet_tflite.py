"""MobileNetV2 (ImageNet) from the quantised TFLite file: the generic rebuild with Keras-applications names.

The network is rebuilt by `causadv_lib.zoo.tflite.build` (see there: dequantised weights, one Keras
layer per operator, the MEAN -> 1x1 CONV_2D (1001) -> RESHAPE -> SOFTMAX head as
``GlobalAveragePooling2D`` -> ``Dense(1000)`` ``logits`` -> ``Softmax`` ``probs`` with output 0,
"background", dropped, so output i is class i of the 1000 ImageNet classes in ``synset_words`` order).
Only the layer names differ from the generic ones: they follow ``keras.applications.MobileNetV2``
(without its batch-norm layers), as they did before the generic rebuild existed, so that the
architecture fingerprint, and with it every cached CI vector, attack and prototype, stays the same:
``Conv1``, ``Conv1_relu``, ``expanded_conv_depthwise``, ``block_1_expand``, ``block_1_expand_relu``,
..., ``block_16_project``, ``Conv_1``, ``out_relu`` (the CI layer, 7x7x1280), ``avg_pool``,
``logits``, ``probs``. (`tflite.default_ci_layer` finds ``out_relu`` too.)
"""
from __future__ import annotations

import re

import numpy as np

from . import tflite as generic

_SCOPE = re.compile(r"MobileNetV2/(Conv2d_\d+_\d+|expanded_conv_(\d+)/(expand|depthwise|project|add)|top)\b")
CI_LAYER = "out_relu"


def _keras_name(tensor_name: str) -> str:
    """Keras-applications layer name for the TFLite scope that `tensor_name` starts with."""
    m = _SCOPE.search(tensor_name.split(";")[0])
    if m is None:
        raise ValueError(f"unexpected tensor name in the MobileNetV2 TFLite file: {tensor_name[:120]!r}")
    scope, block, part = m.groups()
    if scope == "Conv2d_0_0":
        return "Conv1"
    if scope.startswith("Conv2d_"):
        return "Conv_1"
    if scope == "top":
        return "logits"
    prefix = "expanded_conv_" if int(block) == 1 else f"block_{int(block) - 1}_"
    return prefix + part


def keras_applications_names(graph: generic.TFLiteGraph, op: generic.Op, role: str) -> str | None:
    """`tflite.build` namer: the Keras-applications MobileNetV2 names of the operators of the V2 file."""
    if op.name == "MEAN":
        return "avg_pool"
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        name = _keras_name(graph.name(op.inputs[1]))  # the weights' scope names the convolution
    elif op.name == "ADD":
        name = _keras_name(graph.name(op.outputs[0]))
    else:
        return None
    if role == "activation":
        return "out_relu" if name == "Conv_1" else name + "_relu"
    return name


def build(tflite_path, name: str = "mobilenet_v2_imagenet"):
    """The float Keras MobileNetV2 from the TFLite file at `tflite_path` (see the module docstring)."""
    return generic.build(tflite_path, name=name, drop_background=True, namer=keras_applications_names)


def interpreter_predict(tflite_path, images224: np.ndarray) -> np.ndarray:
    """Reference: the TFLite interpreter's probabilities for uint8 (N, 224, 224, 3) images, (N, 1000) float32.

    The quantised output (uint8, scale 1/256) is dequantised and its index 0 ("background") dropped,
    so index i is ImageNet class i (not renormalised). For checking the float rebuild only.
    """
    images224 = np.asarray(images224)
    if images224.dtype != np.uint8 or images224.ndim != 4 or images224.shape[1:] != (224, 224, 3):
        raise ValueError(f"expected uint8 images of shape (N, 224, 224, 3), got {images224.dtype} {images224.shape}")
    return generic.interpreter_predict(tflite_path, images224, drop_background=True)
