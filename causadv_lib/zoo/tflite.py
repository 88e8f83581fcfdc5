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

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tflite

from .model import DATASETS, ZooModel
from .structure import check_structure

__all__ = ["SUPPORTED_OPS", "UnsupportedOperatorError", "TFLiteGraph", "Op", "ConstantOperand", "build",
           "default_ci_layer", "input_quantization", "interpreter_predict", "from_tflite"]

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "PAD",
                 "CONCATENATION", "RESHAPE", "SQUEEZE", "FULLY_CONNECTED", "SOFTMAX", "LOGISTIC", "HARD_SWISH",
                 "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE")

OPNAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_ACTIVATIONS = {v: k for k, v in vars(tflite.ActivationFunctionType).items() if not k.startswith("_")}
_DTYPES = {tflite.TensorType.INT8: np.int8, tflite.TensorType.UINT8: np.uint8, tflite.TensorType.INT16: np.int16,
           tflite.TensorType.INT32: np.int32, tflite.TensorType.INT64: np.int64,
           tflite.TensorType.FLOAT16: np.float16, tflite.TensorType.FLOAT32: np.float32}
_PADDING = {tflite.Padding.SAME: "same", tflite.Padding.VALID: "valid"}
_PASSTHROUGH = ("QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE")
#: trailing tensor-name parts that name an activation (stripped for the operator's own layer name)
_ACT_PARTS = re.compile(r"^(relu6?|Relu6?|RELU6?|clip_by_value|Minimum|Maximum)$")


class UnsupportedOperatorError(ValueError):
    """The TFLite file uses an operator (or a variant of one) that `build` cannot rebuild."""


@dataclass(frozen=True)
class Op:
    """One TFLite operator: position in the operator list, builtin name, tensor indices, options table."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    table: object = None
    custom_code: str = ""


class TFLiteGraph:
    """Read-only view of subgraph 0 of a TFLite model: tensors, constants and operators."""

    def __init__(self, buf: bytes):
        self.buf = buf
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        if self.model.SubgraphsLength() < 1:
            raise ValueError("the TFLite file has no subgraph")
        self.sg = self.model.Subgraphs(0)
        self.ops = [self._op(k) for k in range(self.sg.OperatorsLength())]
        self.inputs = tuple(int(i) for i in self.sg.InputsAsNumpy())
        self.outputs = tuple(int(i) for i in self.sg.OutputsAsNumpy())
        self.producer = {t: op for op in self.ops for t in op.outputs}

    @classmethod
    def read(cls, path) -> TFLiteGraph:
        return cls(Path(path).read_bytes())

    def _op(self, k: int) -> Op:
        op = self.sg.Operators(k)
        code = self.model.OperatorCodes(op.OpcodeIndex())
        name = OPNAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), f"BUILTIN_{code.BuiltinCode()}")
        custom = code.CustomCode().decode(errors="replace") if name == "CUSTOM" and code.CustomCode() else ""
        ins = tuple(int(i) for i in op.InputsAsNumpy()) if op.InputsLength() else ()
        outs = tuple(int(i) for i in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        return Op(k, name, ins, outs, op.BuiltinOptions(), custom)

    def name(self, t: int) -> str:
        return self.sg.Tensors(t).Name().decode(errors="replace")

    def shape(self, t: int) -> tuple[int, ...]:
        tensor = self.sg.Tensors(t)
        return tuple(int(s) for s in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()

    def dtype(self, t: int):
        return _DTYPES.get(self.sg.Tensors(t).Type())

    def quantization(self, t: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(scales, zero points, quantised dimension) of tensor t, or None if it is not quantised."""
        qp = self.sg.Tensors(t).Quantization()
        if qp is None or qp.ScaleLength() == 0:
            return None
        zero = qp.ZeroPointAsNumpy() if qp.ZeroPointLength() else np.zeros(qp.ScaleLength(), np.int64)
        return qp.ScaleAsNumpy().astype(np.float64), np.asarray(zero).astype(np.float64), qp.QuantizedDimension()

    def _raw(self, t: int) -> np.ndarray | None:
        tensor = self.sg.Tensors(t)
        if tensor.Buffer() == 0:
            return None
        buffer = self.model.Buffers(tensor.Buffer())
        if buffer.DataLength():
            raw = buffer.DataAsNumpy()
        elif buffer.Offset() > 1:  # large models keep buffers after the flatbuffer
            raw = np.frombuffer(self.buf, np.uint8, buffer.Size(), buffer.Offset())
        else:
            return None
        dtype = self.dtype(t)
        if dtype is None:
            raise UnsupportedOperatorError(f"tensor {t} {self.name(t)!r}: unsupported TFLite tensor type "
                                           f"{self.sg.Tensors(t).Type()}")
        return np.asarray(raw).view(dtype).reshape(self.shape(t))

    def is_constant(self, t: int) -> bool:
        return t >= 0 and self._raw(t) is not None

    def dequantize(self, t: int) -> np.ndarray:
        """The constant tensor t as float32: (q - zero_point) * scale, per channel where quantised so."""
        raw = self._raw(t)
        if raw is None:
            raise ValueError(f"tensor {t} {self.name(t)!r} is not a constant")
        q = raw.astype(np.float64)
        quant = self.quantization(t)
        if quant is None or raw.dtype.kind == "f":
            return q.astype(np.float32)
        scale, zero, dim = quant
        bshape = [1] * q.ndim
        if scale.size > 1:
            bshape[dim] = scale.size
        return ((q - zero.reshape(bshape)) * scale.reshape(bshape)).astype(np.float32)

    def integers(self, t: int) -> np.ndarray:
        """A constant integer tensor (axes, shapes, paddings) as int64."""
        raw = self._raw(t)
        if raw is None:
            raise ValueError(f"tensor {t} {self.name(t)!r} is not a constant")
        return raw.astype(np.int64)


def _options(cls, op: Op):
    if op.table is None:
        raise UnsupportedOperatorError(f"TFLite operator {op.name} (operator {op.index}) has no options table")
    opt = cls()
    opt.Init(op.table.Bytes, op.table.Pos)
    return opt


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_")


def _strip_activation(name: str) -> str:
    parts = name.split("/")
    while len(parts) > 1 and _ACT_PARTS.match(parts[-1]):
        parts.pop()
    return "/".join(parts)


def input_quantization(path) -> tuple[float, int] | None:
    """(scale, zero point) of the TFLite file's input tensor, or None for a float input.

    The float rebuild takes ``(q - zero_point) * scale`` where the interpreter takes the integer q:
    e.g. scale 1/128, zero point 128 means model input = x / 128 - 1 for uint8 pixels x.
    """
    g = TFLiteGraph.read(path)
    quant = g.quantization(g.inputs[0])
    if quant is None or g.dtype(g.inputs[0]) == np.float32:
        return None
    return float(quant[0][0]), int(quant[1][0])


# ------------------------------------------------------------------------------------- layers
@keras.saving.register_keras_serializable(package="causadv")
class ConstantOperand(keras.layers.Layer):
    """x + c or x * c for a constant c stored as a (non-trainable) weight; `op` is "add" or "mul"."""

    def __init__(self, op: str, value_shape, **kwargs):
        super().__init__(**kwargs)
        if op not in ("add", "mul"):
            raise ValueError(f"ConstantOperand: op must be 'add' or 'mul', got {op!r}")
        self.op, self.value_shape = op, tuple(int(s) for s in value_shape)

    def build(self, input_shape):
        self.value = self.add_weight(name="value", shape=self.value_shape, initializer="zeros", trainable=False)

    def call(self, x):
        return x + self.value if self.op == "add" else x * self.value

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "op": self.op, "value_shape": list(self.value_shape)}


# ------------------------------------------------------------------------------------ builder
Namer = Callable[[TFLiteGraph, Op, str], "str | None"]


class _Builder:
    def __init__(self, g: TFLiteGraph, namer: Namer | None, drop_background: bool):
        self.g, self.namer, self.drop_background = g, namer, drop_background
        self.k: dict[int, object] = {}      # TFLite tensor index -> Keras tensor
        self.flat: set[int] = set()         # tensors whose Keras (N, C) stands for TFLite (N, 1, 1, C)
        self.const: dict[int, np.ndarray] = {}  # folded constants (DEQUANTIZE of a constant)
        self.taken = {"logits", "probs"}
        self.logits_op, self.softmax_op, self.passthrough = self._head()

    # -- errors, names
    def fail(self, op: Op, why: str = "") -> UnsupportedOperatorError:
        out = op.outputs[0] if op.outputs else -1
        what = f"TFLite operator {op.name}" + (f" ({op.custom_code!r})" if op.custom_code else "")
        where = f"operator {op.index}" + (f", output tensor {out} {self.g.name(out)[:100]!r}" if out >= 0 else "")
        msg = f"{what} ({where})"
        if why:
            return UnsupportedOperatorError(f"{msg}: {why}")
        return UnsupportedOperatorError(f"{msg} is not supported by the TFLite rebuild; supported operators: "
                                        f"{', '.join(SUPPORTED_OPS)}")

    def unique(self, name: str) -> str:
        base = name or "layer"
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name

    def base(self, op: Op) -> str:
        """The sanitised output tensor name of `op` (not reserved)."""
        return _sanitize(self.g.name(op.outputs[0]).split(";")[0]) or f"op{op.index}"

    def name(self, op: Op, role: str = "layer", fused: bool = False) -> str:
        """Layer name for `op` (role "layer" or "activation"), from the namer or the output tensor name."""
        if self.namer is not None:
            chosen = self.namer(self.g, op, role)
            if chosen:
                return self.unique(chosen)
        full = self.g.name(op.outputs[0]).split(";")[0]
        if role == "layer" and fused:
            return self.unique(_sanitize(_strip_activation(full)) or f"op{op.index}")
        return self.unique(_sanitize(full) or f"op{op.index}_{role}")

    # -- head
    def _head(self):
        """(logits op, softmax op or None, passthrough op indices between them and the output)."""
        if len(self.g.outputs) != 1 or len(self.g.inputs) != 1:
            raise UnsupportedOperatorError(f"expected a classifier with one input and one output, got "
                                           f"{len(self.g.inputs)} inputs and {len(self.g.outputs)} outputs")
        t, softmax, passthrough = self.g.outputs[0], None, set()
        while True:
            op = self.g.producer.get(t)
            if op is None:
                raise UnsupportedOperatorError("the graph's output is not computed by any operator")
            if op.name in _PASSTHROUGH and not self.g.is_constant(op.inputs[0]):
                passthrough.add(op.index)
            elif op.name == "SOFTMAX" and softmax is None:
                softmax = op
            elif op.name in ("FULLY_CONNECTED", "CONV_2D"):
                return op, softmax, passthrough
            else:
                raise UnsupportedOperatorError(
                    f"the classifier head must end in FULLY_CONNECTED or CONV_2D (logits), then optionally "
                    f"SOFTMAX, RESHAPE, SQUEEZE, QUANTIZE, DEQUANTIZE; found {op.name} (operator {op.index}, "
                    f"output tensor {op.outputs[0]} {self.g.name(op.outputs[0])[:100]!r})")
            t = op.inputs[0]

    # -- tensors
    def constant(self, t: int) -> np.ndarray | None:
        if t in self.const:
            return self.const[t]
        return self.g.dequantize(t) if self.g.is_constant(t) else None

    def get(self, t: int, rank4: bool = False):
        x = self.k[t]
        if rank4 and t in self.flat:
            c = int(x.shape[-1])
            x = keras.layers.Reshape((1, 1, c), name=self.unique(_sanitize(self.g.name(t).split(";")[0]) + "_4d"))(x)
        return x

    def put(self, t: int, x, flat: bool = False):
        self.k[t] = x
        if flat:
            self.flat.add(t)

    def activation(self, op: Op, fused: int, x):
        if fused == tflite.ActivationFunctionType.NONE:
            return x
        if fused == tflite.ActivationFunctionType.RELU:
            return keras.layers.ReLU(name=self.name(op, "activation"))(x)
        if fused == tflite.ActivationFunctionType.RELU6:
            return keras.layers.ReLU(max_value=6.0, name=self.name(op, "activation"))(x)
        raise self.fail(op, f"fused activation {_ACTIVATIONS.get(fused, fused)} is not supported (NONE, RELU, RELU6)")

    @staticmethod
    def _has_act(fused: int) -> bool:
        return fused != tflite.ActivationFunctionType.NONE

    def dense(self, op: Op, x, kernel: np.ndarray, bias: np.ndarray | None, name: str):
        """Dense from (in, out) kernel; for the logits op: background dropped, softmax beta folded."""
        if op is self.logits_op:
            if self.drop_background:
                kernel, bias = kernel[:, 1:], (None if bias is None else bias[1:])
            if self.softmax_op is not None:
                beta = _options(tflite.SoftmaxOptions, self.softmax_op).Beta()
                if beta != 1.0:
                    kernel, bias = kernel * np.float32(beta), (None if bias is None else bias * np.float32(beta))
        layer = keras.layers.Dense(kernel.shape[1], use_bias=bias is not None, name=name)
        y = layer(x)
        layer.set_weights([kernel.astype(np.float32)] + ([] if bias is None else [bias.astype(np.float32)]))
        return y

    def bias(self, op: Op, n: int) -> np.ndarray | None:
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return None
        b = self.constant(op.inputs[2])
        if b is None or b.size != n:
            raise self.fail(op, "the bias is not a constant of one value per output channel")
        return b.reshape(n)

    def weights(self, op: Op) -> np.ndarray:
        w = self.constant(op.inputs[1])
        if w is None:
            raise self.fail(op, "the weights are not a constant tensor")
        return w

    # -- operators
    def conv(self, op: Op):
        o = _options(tflite.Conv2DOptions, op)
        fused, w = o.FusedActivationFunction(), self.weights(op)  # (out, kh, kw, in)
        b = self.bias(op, w.shape[0])
        strides, dil = (o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor())
        t = op.inputs[0]
        out_hw = self.g.shape(op.outputs[0])[1:3]
        if t in self.flat and w.shape[1:3] == (1, 1):  # 1x1 convolution of a pooled 1x1 map
            if op is self.logits_op and self._has_act(fused):
                raise self.fail(op, "the logits convolution must be linear")
            name = "logits" if op is self.logits_op else self.name(op, "layer", self._has_act(fused))
            y = self.dense(op, self.k[t], w[:, 0, 0, :].T, b, name)
            return self.put(op.outputs[0], self.activation(op, fused, y), flat=True)
        x = self.get(t, rank4=True)
        if op is self.logits_op:  # a kernel covering the whole map (VALID) -> flatten + Dense
            if self._has_act(fused) or tuple(out_hw) != (1, 1) or tuple(x.shape[1:3]) != w.shape[1:3] \
                    or w.shape[3] != x.shape[3]:
                raise self.fail(op, "the logits convolution must be linear, with a kernel covering its input map")
            flat = keras.layers.Flatten(name=self.unique(self.base(op) + "_flatten"))(x)
            y = self.dense(op, flat, w.reshape(w.shape[0], -1).T, b, "logits")
            return self.put(op.outputs[0], y, flat=True)
        cin = int(x.shape[-1])
        if cin % w.shape[3]:
            raise self.fail(op, f"{cin} input channels for a kernel of {w.shape[3]}")
        layer = keras.layers.Conv2D(w.shape[0], w.shape[1:3], strides=strides, padding=_PADDING[o.Padding()],
                                    dilation_rate=dil, groups=cin // w.shape[3], use_bias=b is not None,
                                    name=self.name(op, "layer", self._has_act(fused)))
        y = layer(x)
        layer.set_weights([w.transpose(1, 2, 3, 0)] + ([] if b is None else [b]))  # -> (kh, kw, in, out)
        self.put(op.outputs[0], self.activation(op, fused, y))

    def depthwise(self, op: Op):
        o = _options(tflite.DepthwiseConv2DOptions, op)
        fused, w = o.FusedActivationFunction(), self.weights(op)  # (1, kh, kw, C * M)
        x = self.get(op.inputs[0], rank4=True)
        cin = int(x.shape[-1])
        if w.shape[0] != 1 or w.shape[3] % cin:
            raise self.fail(op, f"depthwise kernel of shape {w.shape} for {cin} input channels")
        mult = w.shape[3] // cin
        b = self.bias(op, w.shape[3])
        layer = keras.layers.DepthwiseConv2D(w.shape[1:3], strides=(o.StrideH(), o.StrideW()),
                                             padding=_PADDING[o.Padding()], depth_multiplier=mult,
                                             dilation_rate=(o.DilationHFactor(), o.DilationWFactor()),
                                             use_bias=b is not None, name=self.name(op, "layer", self._has_act(fused)))
        y = layer(x)
        layer.set_weights([w[0].reshape(*w.shape[1:3], cin, mult)] + ([] if b is None else [b]))
        self.put(op.outputs[0], self.activation(op, fused, y))

    def fully_connected(self, op: Op):
        o = _options(tflite.FullyConnectedOptions, op)
        if o.WeightsFormat() != 0:
            raise self.fail(op, "shuffled FULLY_CONNECTED weights are not supported")
        fused, w = o.FusedActivationFunction(), self.weights(op)  # (out, in)
        if op is self.logits_op and self._has_act(fused):
            raise self.fail(op, "the logits FULLY_CONNECTED must be linear")
        b = self.bias(op, w.shape[0])
        t = op.inputs[0]
        x, flat = self.k[t], t in self.flat
        name = "logits" if op is self.logits_op else self.name(op, "layer", self._has_act(fused))
        if len(x.shape) > 2 and not o.KeepNumDims():
            if int(np.prod(x.shape[1:])) != w.shape[1]:
                raise self.fail(op, f"input of shape {tuple(x.shape)} for {w.shape[1]} weights per output")
            x = keras.layers.Flatten(name=self.unique(self.base(op) + "_flatten"))(x)
            flat = False
        y = self.dense(op, x, w.T, b, name)
        self.put(op.outputs[0], self.activation(op, fused, y), flat=flat)

    def binary(self, op: Op):
        cls, kind, opts = ((keras.layers.Add, "add", tflite.AddOptions) if op.name == "ADD"
                           else (keras.layers.Multiply, "mul", tflite.MulOptions))
        fused = _options(opts, op).FusedActivationFunction() if op.table is not None else 0
        consts = [self.constant(t) for t in op.inputs[:2]]
        name = self.name(op, "layer", self._has_act(fused))
        if all(c is None for c in consts):
            a, b = op.inputs[:2]
            flat = a in self.flat and b in self.flat
            y = cls(name=name)([self.get(a, rank4=not flat), self.get(b, rank4=not flat)])
        elif any(c is None for c in consts):
            t = op.inputs[0] if consts[0] is None else op.inputs[1]
            c = consts[1] if consts[0] is None else consts[0]
            flat = t in self.flat
            x = self.k[t]
            value = c.reshape((1,) * max(0, len(self.g.shape(t)) - c.ndim) + c.shape)
            if flat:  # (1, [1, 1,] C) or a scalar on a pooled (N, C) vector
                if value.ndim < 2 or any(d != 1 for d in value.shape[1:-1]):
                    raise self.fail(op, f"constant operand of shape {c.shape} on a pooled map")
                value = value.reshape(value.shape[0], value.shape[-1])
            if value.shape[0] != 1:
                raise self.fail(op, f"constant operand of shape {c.shape} varies over the batch axis")
            layer = ConstantOperand(kind, value.shape[1:], name=name)
            y = layer(x)
            layer.set_weights([value[0].astype(np.float32)])
        else:
            raise self.fail(op, "both operands are constants")
        self.put(op.outputs[0], self.activation(op, fused, y), flat=flat)

    def pool(self, op: Op):
        o = _options(tflite.Pool2DOptions, op)
        fused = o.FusedActivationFunction()
        x = self.get(op.inputs[0], rank4=True)
        h, w = x.shape[1:3]
        fh, fw = o.FilterHeight(), o.FilterWidth()
        name = self.name(op, "layer", self._has_act(fused))
        avg = op.name == "AVERAGE_POOL_2D"
        if tuple(self.g.shape(op.outputs[0])[1:3]) == (1, 1) and fh >= h and fw >= w:  # the window covers the map
            y = (keras.layers.GlobalAveragePooling2D if avg else keras.layers.GlobalMaxPooling2D)(name=name)(x)
            return self.put(op.outputs[0], self.activation(op, fused, y), flat=True)
        cls = keras.layers.AveragePooling2D if avg else keras.layers.MaxPooling2D
        y = cls((fh, fw), strides=(o.StrideH(), o.StrideW()), padding=_PADDING[o.Padding()], name=name)(x)
        self.put(op.outputs[0], self.activation(op, fused, y))

    def mean(self, op: Op):
        t = op.inputs[0]
        rank = len(self.g.shape(t))
        axes = tuple(sorted({int(a) % rank for a in np.atleast_1d(self.g.integers(op.inputs[1]))}))
        if t in self.flat and axes in ((1, 2), (1,), (2,)):  # mean of a 1x1 map: nothing to do
            return self.put(op.outputs[0], self.k[t], flat=True)
        if rank != 4 or axes != (1, 2):
            raise self.fail(op, f"MEAN over axes {axes} of a rank-{rank} tensor (only the spatial axes (1, 2) of "
                                "an NHWC map are supported)")
        self.put(op.outputs[0], keras.layers.GlobalAveragePooling2D(name=self.name(op))(self.k[t]), flat=True)

    def pad(self, op: Op):
        p = self.g.integers(op.inputs[1])
        if p.shape != (4, 2) or p[0].any() or p[3].any():
            raise self.fail(op, f"paddings {p.tolist()}: only the H and W axes of an NHWC map can be padded")
        x = self.get(op.inputs[0], rank4=True)
        y = keras.layers.ZeroPadding2D(((int(p[1, 0]), int(p[1, 1])), (int(p[2, 0]), int(p[2, 1]))),
                                       name=self.name(op))(x)
        self.put(op.outputs[0], y)

    def concat(self, op: Op):
        o = _options(tflite.ConcatenationOptions, op)
        fused = o.FusedActivationFunction()
        if any(self.constant(t) is not None for t in op.inputs):
            raise self.fail(op, "concatenation with a constant tensor")
        rank = len(self.g.shape(op.outputs[0]))
        axis = o.Axis() % rank
        flat = all(t in self.flat for t in op.inputs) and axis == rank - 1
        xs = [self.get(t, rank4=not flat) for t in op.inputs]
        y = keras.layers.Concatenate(axis=-1 if flat else axis, name=self.name(op, "layer", self._has_act(fused)))(xs)
        self.put(op.outputs[0], self.activation(op, fused, y), flat=flat)

    def reshape(self, op: Op):
        t = op.inputs[0]
        x, target = self.k[t], self.g.shape(op.outputs[0])
        if op.index in self.passthrough:
            return self.put(op.outputs[0], x, flat=t in self.flat)
        if not target or target[0] != 1:
            raise self.fail(op, f"reshape to {target}: the batch axis must stay first")
        if tuple(x.shape[1:]) == tuple(target[1:]):
            return self.put(op.outputs[0], x)
        if t in self.flat and len(target) == 4 and tuple(target[1:3]) == (1, 1) and target[3] == x.shape[-1]:
            return self.put(op.outputs[0], x, flat=True)
        self.put(op.outputs[0], keras.layers.Reshape(tuple(target[1:]), name=self.name(op))(x))

    def unary(self, op: Op):
        t = op.inputs[0]
        if op.name in ("QUANTIZE", "DEQUANTIZE"):
            c = self.constant(t)
            if c is not None:
                self.const[op.outputs[0]] = c
                return
            return self.put(op.outputs[0], self.k[t], flat=t in self.flat)
        if op.name == "SOFTMAX":
            if op is self.softmax_op:
                return self.put(op.outputs[0], keras.layers.Softmax(name="probs")(self.k[t]), flat=t in self.flat)
            beta = _options(tflite.SoftmaxOptions, op).Beta()
            if beta != 1.0:
                raise self.fail(op, f"SOFTMAX with beta {beta} inside the network")
            layer = keras.layers.Softmax(name=self.name(op))
        elif op.name == "LOGISTIC":
            layer = keras.layers.Activation("sigmoid", name=self.name(op))
        elif op.name == "HARD_SWISH":
            layer = keras.layers.Activation("hard_swish", name=self.name(op))
        elif op.name == "RELU":
            layer = keras.layers.ReLU(name=self.name(op))
        else:  # RELU6
            layer = keras.layers.ReLU(max_value=6.0, name=self.name(op))
        self.put(op.outputs[0], layer(self.k[t]), flat=t in self.flat)

    HANDLERS = {"CONV_2D": conv, "DEPTHWISE_CONV_2D": depthwise, "FULLY_CONNECTED": fully_connected,
                "ADD": binary, "MUL": binary, "AVERAGE_POOL_2D": pool, "MAX_POOL_2D": pool, "MEAN": mean,
                "PAD": pad, "CONCATENATION": concat, "RESHAPE": reshape, "SQUEEZE": reshape,
                "SOFTMAX": unary, "LOGISTIC": unary, "HARD_SWISH": unary, "RELU": unary, "RELU6": unary,
                "QUANTIZE": unary, "DEQUANTIZE": unary}

    def run(self, name: str) -> keras.Model:
        for op in self.g.ops:  # every operator is checked first, so an unsupported one is named up front
            if op.name not in self.HANDLERS:
                raise self.fail(op)
        (inp_t,) = self.g.inputs
        shape = self.g.shape(inp_t)
        if len(shape) != 4:
            raise UnsupportedOperatorError(f"expected an NHWC image input, got input shape {shape}")
        inputs = keras.Input(shape[1:], name=self.unique(_sanitize(self.g.name(inp_t)) or "input"), dtype="float32")
        self.put(inp_t, inputs)
        for op in self.g.ops:
            missing = [t for t in op.inputs if t >= 0 and t not in self.k and self.constant(t) is None]
            if missing:
                raise self.fail(op, f"input tensor {missing[0]} {self.g.name(missing[0])[:100]!r} is not computed "
                                    "by an earlier operator")
            if op.name not in ("QUANTIZE", "DEQUANTIZE", "ADD", "MUL") and op.inputs[0] not in self.k:
                raise self.fail(op, "its first input is a constant")
            self.HANDLERS[op.name](self, op)
        out = self.k[self.g.outputs[0]]
        if self.softmax_op is None:
            out = keras.layers.Softmax(name="probs")(out)
        if len(out.shape) != 2:
            raise UnsupportedOperatorError(f"the classifier output has shape {tuple(out.shape)}; expected (N, classes)")
        return keras.Model(inputs, out, name=name)


def build(path, *, name: str | None = None, drop_background: bool = False, namer: Namer | None = None) -> keras.Model:
    """Float Keras rebuild of the TFLite image classifier at `path` (see the module docstring).

    The model maps the file's real-valued input (N, H, W, C) to probabilities and ends in a linear
    ``Dense`` ``logits`` and a ``Softmax`` ``probs``. `drop_background`: drop logit 0 (the 1001-way
    ImageNet background class). `namer(graph, op, role)` may return a layer name for an operator
    (role ``"layer"`` or ``"activation"``) or None for the default name.
    """
    g = TFLiteGraph.read(path)
    name = name or (_sanitize(Path(path).stem) or "tflite_model")
    return _Builder(g, namer, drop_background).run(name)


def output_count(path) -> int:
    """Number of outputs (classes, background included) of the TFLite classifier at `path`."""
    g = TFLiteGraph.read(path)
    return int(g.shape(g.outputs[0])[-1])


#: layer types that are not a feature map of their own (skipped by `default_ci_layer`)
_NOT_FEATURES = (keras.layers.InputLayer, keras.layers.ZeroPadding2D, keras.layers.Reshape, keras.layers.Flatten,
                 keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.GlobalAveragePooling2D,
                 keras.layers.GlobalMaxPooling2D)


def default_ci_layer(model: keras.Model) -> str:
    """The last layer whose output is a rank-4 feature map with H x W > 1 (not pooling/padding/reshaping)."""
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        shape = None if shape is None or isinstance(shape, (list, tuple)) else shape.shape
        if (shape is not None and len(shape) == 4 and shape[1] * shape[2] > 1
                and not isinstance(layer, _NOT_FEATURES)):
            return layer.name
    raise ValueError(f"model {model.name!r} has no feature map with spatial extent")


# -------------------------------------------------------------------------------- interpreter
def interpreter_predict(path, inputs: np.ndarray, *, drop_background: bool = False, num_threads: int = 2) -> np.ndarray:
    """Reference: the TFLite interpreter's outputs for `inputs` (N, H, W, C), dequantised, (N, K) float32.

    `inputs` are fed as they are when their dtype is the input tensor's (uint8 pixels for a uint8
    input); float inputs to an integer input tensor are quantised with its scale and zero point
    (rounded, clipped). With `drop_background` output 0 is dropped (not renormalised).
    """
    import tensorflow as tf

    inputs = np.asarray(inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter is deprecated (LiteRT) but present in TF 2.21
        interp = tf.lite.Interpreter(model_path=str(path), num_threads=num_threads)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    if inputs.ndim != 4 or inputs.shape[1:] != tuple(inp["shape"][1:]):
        raise ValueError(f"expected inputs of shape (N, {', '.join(map(str, inp['shape'][1:]))}), got {inputs.shape}")
    if inputs.dtype != inp["dtype"]:
        scale, zero = inp["quantization"]
        if np.issubdtype(inp["dtype"], np.integer) and scale:
            info = np.iinfo(inp["dtype"])
            inputs = np.clip(np.round(inputs.astype(np.float64) / scale + zero), info.min, info.max)
        inputs = inputs.astype(inp["dtype"])
    scale, zero = out["quantization"]
    res = []
    for x in inputs:
        interp.set_tensor(inp["index"], x[None])
        interp.invoke()
        y = interp.get_tensor(out["index"])[0].astype(np.float32)
        res.append((y - zero) * scale if scale else y)
    res = np.stack(res) if res else np.zeros((0, int(out["shape"][-1])), np.float32)
    return (res[:, 1:] if drop_background else res).astype(np.float32)


# ---------------------------------------------------------------------------------------- zoo
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
    name = name or _sanitize(Path(path).stem) or "tflite_model"
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
