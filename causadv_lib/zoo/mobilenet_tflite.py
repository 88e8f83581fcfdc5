"""MobileNetV2 (ImageNet) rebuilt as a float Keras model from the quantised TFLite file.

The TFLite flatbuffer is read with the public ``tflite`` parser and its operator graph is walked in
order, one Keras layer per operator:

- CONV_2D / DEPTHWISE_CONV_2D -> ``Conv2D`` / ``DepthwiseConv2D`` (padding and strides from the op's
  options; TFLite SAME = Keras "same", also for stride 2) with the dequantised weights and biases,
  ``value = (q - zero_point) * scale`` per output channel. Batch norm is already folded into each
  convolution (hence the biases). A fused RELU6 becomes a separate ``ReLU(max_value=6)`` layer.
- ADD -> ``Add``; the input QUANTIZE is dropped (the Keras input is the float image, see
  `causadv_lib.preprocess`).
- The head MEAN(H, W) -> 1x1 CONV_2D (1001 logits) -> RESHAPE -> SOFTMAX becomes
  ``GlobalAveragePooling2D`` -> ``Dense(1000, linear)`` -> ``Softmax``. The Dense keeps the 1x1
  convolution's outputs 1..1000 and drops output 0 ("background"), so output i is class i of the
  1000 ImageNet classes in ``synset_words`` order. The softmax is therefore over 1000 logits, not 1001.

Layer names follow ``keras.applications.MobileNetV2`` (without its batch-norm layers): ``Conv1``,
``Conv1_relu``, ``expanded_conv_depthwise``, ``block_1_expand``, ``block_1_expand_relu``, ...,
``block_16_project``, ``Conv_1``, ``out_relu`` (the CI layer, 7x7x1280), ``avg_pool``, ``logits``,
``probs``.
"""
from __future__ import annotations

from pathlib import Path

import re

import keras
import numpy as np
import tflite

OPNAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_DTYPES = {tflite.TensorType.INT8: np.int8, tflite.TensorType.UINT8: np.uint8,
           tflite.TensorType.INT32: np.int32, tflite.TensorType.FLOAT32: np.float32}
_PADDING = {tflite.Padding.SAME: "same", tflite.Padding.VALID: "valid"}
_SCOPE = re.compile(r"MobileNetV2/(Conv2d_\d+_\d+|expanded_conv_(\d+)/(expand|depthwise|project|add)|top)\b")
CI_LAYER = "out_relu"


class _Graph:
    """Read-only view of subgraph 0 of a TFLite model: tensors, weights and operators."""

    def __init__(self, buf: bytes):
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        self.sg = self.model.Subgraphs(0)

    def name(self, t: int) -> str:
        return self.sg.Tensors(t).Name().decode()

    def shape(self, t: int) -> tuple[int, ...]:
        return tuple(int(s) for s in self.sg.Tensors(t).ShapeAsNumpy())

    def dequantize(self, t: int) -> np.ndarray:
        """The constant tensor t as float32: (q - zero_point) * scale, per channel where quantised so."""
        tensor = self.sg.Tensors(t)
        raw = self.model.Buffers(tensor.Buffer()).DataAsNumpy()
        q = raw.view(_DTYPES[tensor.Type()]).reshape(self.shape(t)).astype(np.float64)
        qp = tensor.Quantization()
        if qp is None or qp.ScaleLength() == 0:
            return q.astype(np.float32)
        scale, zero = qp.ScaleAsNumpy().astype(np.float64), qp.ZeroPointAsNumpy().astype(np.float64)
        bshape = [1] * q.ndim
        if scale.size > 1:
            bshape[qp.QuantizedDimension()] = scale.size
        return ((q - zero.reshape(bshape)) * scale.reshape(bshape)).astype(np.float32)

    def ops(self):
        """Yield (opname, inputs, outputs, options table) for every operator in execution order."""
        for k in range(self.sg.OperatorsLength()):
            op = self.sg.Operators(k)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            name = OPNAMES[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
            yield (name, [int(i) for i in op.InputsAsNumpy()], [int(i) for i in op.OutputsAsNumpy()],
                   op.BuiltinOptions())


def _options(cls, table):
    opt = cls()
    opt.Init(table.Bytes, table.Pos)
    return opt


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


def _relu_name(conv_name: str) -> str:
    return "out_relu" if conv_name == "Conv_1" else conv_name + "_relu"


def _activation(fused: int, name: str, x):
    if fused == tflite.ActivationFunctionType.NONE:
        return x
    if fused != tflite.ActivationFunctionType.RELU6:
        raise ValueError(f"{name}: unsupported fused activation {fused} (expected NONE or RELU6)")
    return keras.layers.ReLU(max_value=6.0, name=_relu_name(name))(x)


def build(tflite_path, name: str = "mobilenet_v2_imagenet") -> keras.Model:
    """Build the float Keras MobileNetV2 from the TFLite file at `tflite_path` (see module docstring)."""
    g = _Graph(Path(tflite_path).read_bytes())
    (inp_t,) = g.sg.InputsAsNumpy()
    size = g.shape(inp_t)[1:]
    inputs = keras.Input(size, name="input", dtype="float32")
    t2k = {int(inp_t): inputs}  # TFLite tensor index -> Keras tensor
    weights = []  # (layer name, [kernel, bias]) set after the model is built
    for op, ins, outs, table in g.ops():
        x = t2k.get(ins[0])
        if op == "QUANTIZE":  # uint8 input -> int8, or int8 softmax -> uint8 output: no float op
            t2k[outs[0]] = x
        elif op in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(x.shape) == 4:
            lname = _keras_name(g.name(ins[1]))
            w, b = g.dequantize(ins[1]), g.dequantize(ins[2])
            if op == "CONV_2D":
                o = _options(tflite.Conv2DOptions, table)
                layer = keras.layers.Conv2D(w.shape[0], w.shape[1:3], strides=(o.StrideH(), o.StrideW()),
                                            padding=_PADDING[o.Padding()], name=lname)
                kernel = w.transpose(1, 2, 3, 0)  # (out, kh, kw, in) -> (kh, kw, in, out)
            else:
                o = _options(tflite.DepthwiseConv2DOptions, table)
                if o.DepthMultiplier() != 1 or w.shape[0] != 1:
                    raise ValueError(f"{lname}: expected depth multiplier 1, got {o.DepthMultiplier()}")
                layer = keras.layers.DepthwiseConv2D(w.shape[1:3], strides=(o.StrideH(), o.StrideW()),
                                                     padding=_PADDING[o.Padding()], name=lname)
                kernel = w[0][..., None]  # (1, kh, kw, C) -> (kh, kw, C, 1)
            if (o.DilationHFactor(), o.DilationWFactor()) != (1, 1):
                raise ValueError(f"{lname}: dilated convolutions are not supported")
            weights.append((lname, [kernel, b]))
            t2k[outs[0]] = _activation(o.FusedActivationFunction(), lname, layer(x))
        elif op == "ADD":
            o = _options(tflite.AddOptions, table)
            lname = _keras_name(g.name(outs[0]))
            y = keras.layers.Add(name=lname)([x, t2k[ins[1]]])
            t2k[outs[0]] = _activation(o.FusedActivationFunction(), lname, y)
        elif op == "MEAN":
            axes = tuple(g.dequantize(ins[1]).astype(int))
            if axes != (1, 2):
                raise ValueError(f"MEAN over axes {axes}; expected the spatial axes (1, 2)")
            t2k[outs[0]] = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        elif op == "CONV_2D":  # the 1x1 convolution on the pooled 1x1 map: 1001 logits, 0 = background
            o = _options(tflite.Conv2DOptions, table)
            if o.FusedActivationFunction() != tflite.ActivationFunctionType.NONE:
                raise ValueError("the classifier convolution must be linear")
            w, b = g.dequantize(ins[1]), g.dequantize(ins[2])
            if w.shape[1:3] != (1, 1) or w.shape[0] != 1001:
                raise ValueError(f"classifier kernel of shape {w.shape}; expected (1001, 1, 1, C)")
            weights.append(("logits", [w[1:, 0, 0, :].T, b[1:]]))
            t2k[outs[0]] = keras.layers.Dense(1000, name="logits")(x)
        elif op == "RESHAPE":  # (N, 1, 1, 1001) -> (N, 1001): the pooled path is already flat
            if len(x.shape) != 2:
                raise ValueError(f"RESHAPE of a rank-{len(x.shape)} tensor is not supported")
            t2k[outs[0]] = x
        elif op == "SOFTMAX":
            t2k[outs[0]] = keras.layers.Softmax(name="probs")(x)
        else:
            raise ValueError(f"TFLite operator {op} is not supported by this MobileNetV2 rebuild")
    (out_t,) = g.sg.OutputsAsNumpy()
    model = keras.Model(inputs, t2k[int(out_t)], name=name)
    for lname, w in weights:
        model.get_layer(lname).set_weights(w)
    return model


def interpreter_predict(tflite_path, images224: np.ndarray) -> np.ndarray:
    """Reference: the TFLite interpreter's probabilities for uint8 (N, 224, 224, 3) images, (N, 1000) float32.

    The quantised output (uint8, scale 1/256) is dequantised and its index 0 ("background") dropped,
    so index i is ImageNet class i (not renormalised). For checking the float rebuild only.
    """
    import warnings

    import tensorflow as tf

    images224 = np.asarray(images224)
    if images224.dtype != np.uint8 or images224.ndim != 4 or images224.shape[1:] != (224, 224, 3):
        raise ValueError(f"expected uint8 images of shape (N, 224, 224, 3), got {images224.dtype} {images224.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter is deprecated (LiteRT) but present in TF 2.21
        interp = tf.lite.Interpreter(model_path=str(tflite_path), num_threads=2)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zero = out["quantization"]
    probs = np.empty((len(images224), 1000), np.float32)
    for k, img in enumerate(images224):
        interp.set_tensor(inp["index"], img[None])
        interp.invoke()
        probs[k] = (interp.get_tensor(out["index"])[0, 1:].astype(np.float32) - zero) * scale
    return probs
