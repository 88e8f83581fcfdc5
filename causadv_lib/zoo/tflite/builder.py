"""The float Keras rebuild of a TFLite image classifier: one or two Keras layers per TFLite operator.

Part of `causadv_lib.zoo.tflite`, whose docstring documents the operators, the head and the layer names.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tflite

from .layers import ConstantOperand
from .reader import ACTIVATION_NAMES, Op, TFLiteGraph, UnsupportedOperatorError, read_options

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "PAD",
                 "CONCATENATION", "RESHAPE", "SQUEEZE", "FULLY_CONNECTED", "SOFTMAX", "LOGISTIC", "HARD_SWISH",
                 "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE")

_PADDING = {tflite.Padding.SAME: "same", tflite.Padding.VALID: "valid"}
_PASSTHROUGH = ("QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE")
#: trailing tensor-name parts that name an activation (stripped for the operator's own layer name)
_ACT_PARTS = re.compile(r"^(relu6?|Relu6?|RELU6?|clip_by_value|Minimum|Maximum)$")


def sanitize(name: str) -> str:
    """`name` with every character outside ``[A-Za-z0-9_]`` replaced by ``_`` (a Keras layer name)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_")


def _strip_activation(name: str) -> str:
    parts = name.split("/")
    while len(parts) > 1 and _ACT_PARTS.match(parts[-1]):
        parts.pop()
    return "/".join(parts)


#: `build`'s layer namer: (graph, operator, role "layer" or "activation") -> a layer name, or None
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
        return sanitize(self.g.name(op.outputs[0]).split(";")[0]) or f"op{op.index}"

    def name(self, op: Op, role: str = "layer", fused: bool = False) -> str:
        """Layer name for `op` (role "layer" or "activation"), from the namer or the output tensor name."""
        if self.namer is not None:
            chosen = self.namer(self.g, op, role)
            if chosen:
                return self.unique(chosen)
        full = self.g.name(op.outputs[0]).split(";")[0]
        if role == "layer" and fused:
            return self.unique(sanitize(_strip_activation(full)) or f"op{op.index}")
        return self.unique(sanitize(full) or f"op{op.index}_{role}")

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
            x = keras.layers.Reshape((1, 1, c), name=self.unique(sanitize(self.g.name(t).split(";")[0]) + "_4d"))(x)
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
        raise self.fail(op, f"fused activation {ACTIVATION_NAMES.get(fused, fused)} is not supported "
                            "(NONE, RELU, RELU6)")

    @staticmethod
    def _has_act(fused: int) -> bool:
        return fused != tflite.ActivationFunctionType.NONE

    def dense(self, op: Op, x, kernel: np.ndarray, bias: np.ndarray | None, name: str):
        """Dense from (in, out) kernel; for the logits op: background dropped, softmax beta folded."""
        if op is self.logits_op:
            if self.drop_background:
                kernel, bias = kernel[:, 1:], (None if bias is None else bias[1:])
            if self.softmax_op is not None:
                beta = read_options(tflite.SoftmaxOptions, self.softmax_op).Beta()
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
        o = read_options(tflite.Conv2DOptions, op)
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
        o = read_options(tflite.DepthwiseConv2DOptions, op)
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
        o = read_options(tflite.FullyConnectedOptions, op)
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
        fused = read_options(opts, op).FusedActivationFunction() if op.table is not None else 0
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
        o = read_options(tflite.Pool2DOptions, op)
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
        o = read_options(tflite.ConcatenationOptions, op)
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
            beta = read_options(tflite.SoftmaxOptions, op).Beta()
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
        inputs = keras.Input(shape[1:], name=self.unique(sanitize(self.g.name(inp_t)) or "input"), dtype="float32")
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
    name = name or (sanitize(Path(path).stem) or "tflite_model")
    return _Builder(g, namer, drop_background).run(name)
