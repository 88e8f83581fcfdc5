"""Any TFLite CNN image classifier, quantised or float, rebuilt as a float Keras model.

    >>> from causadv_lib import zoo
    >>> zm = zoo.from_tflite("mobilenet_v1_0.75_192_quant.tflite", preprocess_fn,
    ...                      class_names=imagenet_names, name="mobilenet_v1_imagenet")
    >>> zm.model.layers[-2].name, zm.model.layers[-1].name   # ('logits', 'probs')

`build` reads the flatbuffer with the public ``tflite`` parser and walks subgraph 0 generically: the
operator list in execution order, tensors by index, one or two Keras layers per operator. Constant
tensors (weights, biases, shapes) are dequantised, ``value = (q - zero_point) * scale``, per tensor or
per channel (``quantized_dimension``); int8, uint8, int16, int32, float16 and float32 buffers are
read. The Keras model computes in float32 on the *real* values of the TFLite tensors: its input is the
dequantised input of the file (for a quantised input tensor, ``(q - zero_point) * scale``; see
`input_quantization`), and there is no activation quantisation, so a quantised file's float rebuild
agrees with the interpreter to a few quantisation steps (and on the top-1 class almost always).

Operators (`SUPPORTED_OPS`) and their Keras layers:

| TFLite | Keras |
|---|---|
| CONV_2D | ``Conv2D`` (SAME = Keras "same", also at stride 2; dilation; groups), or ``Dense`` on a 1x1 map (below) |
| DEPTHWISE_CONV_2D | ``DepthwiseConv2D`` (depth multiplier = output / input channels) |
| FULLY_CONNECTED | ``Dense`` (a rank-4 input is flattened first, like TFLite does, unless ``keep_num_dims``) |
| ADD, MUL | ``Add``, ``Multiply`` (broadcasting); with a constant operand ``ConstantOperand`` |
| AVERAGE_POOL_2D, MAX_POOL_2D | ``AveragePooling2D``, ``MaxPooling2D``; a window covering the whole map: ``GlobalAveragePooling2D`` / ``GlobalMaxPooling2D`` |
| MEAN over H and W | ``GlobalAveragePooling2D`` (other axes: error) |
| PAD | ``ZeroPadding2D`` (H and W only; a quantised PAD pads with the zero point, i.e. real 0) |
| CONCATENATION | ``Concatenate`` |
| RESHAPE, SQUEEZE | nothing where the Keras shape already matches, else ``Reshape`` |
| SOFTMAX, LOGISTIC, HARD_SWISH, RELU, RELU6 | ``Softmax``, ``Activation("sigmoid")``, ``Activation("hard_swish")``, ``ReLU`` |
| fused RELU / RELU6 | a separate ``ReLU`` layer after the operator's own |
| QUANTIZE, DEQUANTIZE | nothing (a DEQUANTIZE of a constant, e.g. float16 weights, is folded) |

Any other operator, and any unsupported variant of one of these (fused TANH, a MEAN over channels, a
PAD of the batch axis, ...), raises `UnsupportedOperatorError` naming the operator, its index in the
operator list and its output tensor.

Pooled 1x1 maps are kept flat: a global pooling (MEAN over H, W, or a pooling window covering the
map) gives a (N, C) Keras tensor standing for TFLite's (N, 1, 1, C), so a following 1x1 CONV_2D is a
``Dense`` and RESHAPE/SQUEEZE to (N, C) are no-ops. This is how a MobileNet head, MEAN or
AVERAGE_POOL_2D -> CONV_2D 1x1 (1001) -> RESHAPE -> SOFTMAX, becomes ``GlobalAveragePooling2D`` ->
``Dense`` -> ``Softmax`` (the zoo's head, and the CI code's closed form).

The classifier head: from the graph's output back through QUANTIZE/DEQUANTIZE/RESHAPE/SQUEEZE, an
optional SOFTMAX, then the *logits operator*, a FULLY_CONNECTED or a CONV_2D whose output is 1x1
(a 1x1 kernel on a pooled map, or a kernel covering an unpooled map: flattened, then ``Dense``).
It becomes the linear ``Dense`` named ``logits``; the SOFTMAX (its ``beta`` folded into the logits) is
the ``Softmax`` named ``probs``, appended if the file outputs logits. With ``drop_background=True``
output 0 of the logits is dropped (the ``background`` class of the TF-slim 1001-way ImageNet models;
`from_tflite` sets it when there is exactly one more output than class names, 1001 vs 1000), so the
softmax is over the remaining outputs and Keras output i is TFLite output i + 1.

Layer names come from the graph, so they are the same in every process: the first ``;``-separated
part of the operator's output tensor name with every character outside ``[A-Za-z0-9_]`` replaced by
``_`` (``MobilenetV1/MobilenetV1/Conv2d_0/Relu6`` -> ``MobilenetV1_MobilenetV1_Conv2d_0_Relu6``). An
operator with a fused activation gives two layers: the activation takes that name and the operator
the name without its trailing activation part (``..._Conv2d_0``). Repeated names get ``_1``, ``_2``
suffixes in operator order; ``logits`` and ``probs`` are reserved for the head. `build`'s `namer`
overrides names (the MobileNetV2 zoo entry uses it to keep its Keras-applications names).

The default CI layer (`default_ci_layer`): the last convolutional feature map with spatial extent,
i.e. the last layer (convolution, its activation, or an ADD/MUL/CONCATENATION of such maps) with a
rank-4 output of H x W > 1; pooling, padding and reshaping layers are skipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..model import DATASETS, ZooModel
from ..structure import check_structure
from ...keras_graph import default_ci_layer  # the one default-CI-layer rule (re-exported)
from .builder import SUPPORTED_OPS, Namer, sanitize, build
from .interpreter import interpreter_predict
from .layers import ConstantOperand
from .reader import OPNAMES, Op, TFLiteGraph, UnsupportedOperatorError, input_quantization, output_count

__all__ = ["SUPPORTED_OPS", "OPNAMES", "UnsupportedOperatorError", "TFLiteGraph", "Op", "ConstantOperand", "Namer",
           "build", "default_ci_layer", "input_quantization", "output_count", "interpreter_predict", "from_tflite"]

def from_tflite(path, preprocess: Callable[..., np.ndarray], *, class_names=None, name: str | None = None,
                ci_layer: str | None = None, dataset: str | None = None, normalize=None, geometry=None,
                namer: Namer | None = None):
    """A `ZooModel` from a TFLite image classifier (float or quantised): the float Keras rebuild of `build`.

    `preprocess`: uint8 RGB images -> the file's real-valued inputs (for a quantised input tensor,
    ``(q - zero_point) * scale`` of the pixels q the interpreter would take; `input_quantization`).
    `class_names`: default "0", "1", ...; with exactly one name fewer than the file has outputs (1001
    outputs, 1000 ImageNet names) output 0 is taken for the TF-slim "background" class and dropped.
    `ci_layer` defaults to `default_ci_layer`; `name` to the file's stem.
    """
    n_out = output_count(path)
    classes = tuple(str(i) for i in range(n_out)) if class_names is None else tuple(class_names)
    if len(classes) not in (n_out, n_out - 1):
        raise ValueError(f"{path}: {len(classes)} class names for {n_out} outputs (expected {n_out}, or "
                         f"{n_out - 1} when output 0 is a background class)")
    name = name or sanitize(Path(path).stem) or "tflite_model"
    model = build(path, name=name, drop_background=len(classes) == n_out - 1, namer=namer)
    problems = check_structure(model)
    if problems:
        raise RuntimeError(f"{name}: the rebuilt model is malformed: {problems}")
    ci = ci_layer or default_ci_layer(model)
    if ci not in {lyr.name for lyr in model.layers}:
        raise ValueError(f"{name}: no layer named {ci!r} (ci_layer); the rebuilt model's layers: "
                         f"{', '.join(lyr.name for lyr in model.layers[-6:])}, ...")
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"{name}: dataset {dataset!r}; expected one of {DATASETS} or None")
    return ZooModel(name, model, preprocess, classes, ci, tuple(model.input_shape[1:]), dataset, normalize, geometry)
