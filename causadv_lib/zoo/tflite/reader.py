"""Read-only view of a TFLite flatbuffer: subgraph 0's tensors, dequantised constants and operators.

Part of `causadv_lib.zoo.tflite` (see there); read with the public ``tflite`` flatbuffer parser.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tflite

OPNAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
ACTIVATION_NAMES = {v: k for k, v in vars(tflite.ActivationFunctionType).items() if not k.startswith("_")}
_DTYPES = {tflite.TensorType.INT8: np.int8, tflite.TensorType.UINT8: np.uint8, tflite.TensorType.INT16: np.int16,
           tflite.TensorType.INT32: np.int32, tflite.TensorType.INT64: np.int64,
           tflite.TensorType.FLOAT16: np.float16, tflite.TensorType.FLOAT32: np.float32}


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


def read_options(cls, op: Op):
    """The options table of `op` read as the ``tflite`` options class `cls` (e.g. ``tflite.Conv2DOptions``)."""
    if op.table is None:
        raise UnsupportedOperatorError(f"TFLite operator {op.name} (operator {op.index}) has no options table")
    opt = cls()
    opt.Init(op.table.Bytes, op.table.Pos)
    return opt


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


def output_count(path) -> int:
    """Number of outputs (classes, background included) of the TFLite classifier at `path`."""
    g = TFLiteGraph.read(path)
    return int(g.shape(g.outputs[0])[-1])
