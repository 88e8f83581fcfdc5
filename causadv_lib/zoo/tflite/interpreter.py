"""The reference the float rebuild is checked against: TensorFlow's TFLite interpreter on the same file."""
from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf


def interpreter_predict(path, inputs: np.ndarray, *, drop_background: bool = False, num_threads: int = 2) -> np.ndarray:
    """Reference: the TFLite interpreter's outputs for `inputs` (N, H, W, C), dequantised, (N, K) float32.

    `inputs` are fed as they are when their dtype is the input tensor's (uint8 pixels for a uint8
    input); float inputs to an integer input tensor are quantised with its scale and zero point
    (rounded, clipped). With `drop_background` output 0 is dropped (not renormalised).
    """
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
