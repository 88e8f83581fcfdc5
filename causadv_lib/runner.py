"""The one fixed-batch forward pass of the package: every compiled call sees `MICRO_BATCH` images.

TensorFlow runs a different float32 kernel for a different batch shape, and a probability saturated near
1.0 turns those last-bit differences into different zero sets of a CI vector. So a model is run in a
canonical layout: fixed batches of `MICRO_BATCH` images, a short batch padded by repeating its last image
(padding rows are computed and dropped, never returned), whatever the caller's ``batch_size`` and
whichever other images share the call. An image's probabilities, logits and activations are then
bit-identical however they were batched. The CI engine's trunk and head loops (`ci.engine`) and the
heatmaps' Grad-CAM pass run on the same helpers (`fixed_batches`, `pad`).

    >>> probs = runner.probabilities(zm.model, zm.preprocess(images))            # (N, C) float32
    >>> probs, logits = runner.with_logits(zm.model, inputs)                     # logits None if unknown
    >>> acts = runner.activations(zm.model, inputs, zm.ci_layer)                 # (N, h, w, K) float32
    >>> outs = runner.fixed_batches(compiled_fn, [inputs, classes], MICRO_BATCH)  # any aligned arrays
"""
from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from . import keras_graph as kg

__all__ = ["MICRO_BATCH", "check_batch_size", "pad", "round_up", "fixed_batches", "batched", "forward",
           "probabilities", "with_logits", "activations"]

#: images per compiled call (the canonical layout)
MICRO_BATCH = 16

_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def check_batch_size(batch_size, name: str = "batch_size") -> int:
    """`batch_size` as a positive int, or a ValueError naming it and the bad value."""
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{name}={batch_size!r}; expected a positive integer")
    return int(batch_size)


def pad(x: np.ndarray, size: int) -> np.ndarray:
    """Pad the first axis to `size` by repeating the last entry (fixed shapes: no retracing)."""
    if len(x) == size:
        return x
    return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)], axis=0)


def round_up(batch_size: int, size: int) -> int:
    """Images per step of an outer loop: `batch_size` rounded up to whole batches of `size`."""
    return -(-batch_size // size) * size


def fixed_batches(f, arrays: list, size: int) -> list[np.ndarray]:
    """Apply `f` to fixed-size batches of the aligned `arrays` (each sliced alike along its first axis,
    the length of the first one counts): ``f(*batches)`` on tensors of exactly `size` rows, a short
    last batch padded by repeating its last row. Each output of `f` (a tensor, or a tuple or list of
    them) is cut back to the real rows and concatenated; [] for no rows."""
    n, out = len(arrays[0]), []
    for s in range(0, n, size):
        m = min(size, n - s)
        res = f(*[tf.constant(pad(np.asarray(a[s:s + m]), size)) for a in arrays])
        out.append([r.numpy()[:m] for r in tf.nest.flatten(res)])
    return [np.concatenate(parts) for parts in zip(*out)]


def batched(f, images, batch_size: int) -> list[np.ndarray]:
    """Apply `f` to `images` (any sliceable array-like, read `batch_size` images at a time as float32)
    in fixed MICRO_BATCH-image calls (the canonical layout: the result never depends on `batch_size`)."""
    out = []
    step = round_up(batch_size, MICRO_BATCH)
    for s0 in range(0, len(images), step):
        out.append(fixed_batches(f, [np.asarray(images[s0:s0 + step], np.float32)], MICRO_BATCH))
    return [np.concatenate(parts) for parts in zip(*out)]


def forward(model, outputs: str, with_logits: bool):
    """Compiled forward pass: probabilities, or (probabilities, logits or an (N, 0) tensor where they
    cannot be read). Logits from `keras_graph.logits_of`'s rule; made once per model."""
    per_model = _FNS.setdefault(model, {})
    key = ("forward", outputs, with_logits)
    if key not in per_model:
        fm = kg.graph_of(model)
        if not with_logits:
            soft = outputs == "logits"
            f = (lambda x: tf.nn.softmax(fm(x, training=False))) if soft else (lambda x: fm(x, training=False))
        else:
            nodes = kg.nodes(fm)
            if len(fm.inputs) != 1 or len(fm.outputs) != 1:
                raise ValueError(f"model {model.name!r}: expected one input and one output")
            O = fm.outputs[0]
            lg = kg.find_logits(nodes, O, outputs)

            def f(x):
                values = kg.execute(nodes, {id(fm.inputs[0]): x})
                if lg.kind == "dense":      # no hook here: the output slot holds the probabilities
                    logits = kg.dense_logits(lg.node, values)
                else:
                    logits = values[id(lg.tensor)] if lg.known else None
                probs = values[id(O)] if outputs == "probabilities" else tf.nn.softmax(logits)
                return (probs, tf.zeros_like(probs[:, :0]) if logits is None else logits)
        per_model[key] = tf.function(f, autograph=False)
    return per_model[key]


def _check(images, batch_size) -> None:
    check_batch_size(batch_size)
    if len(images) == 0:
        raise ValueError("no images")


def probabilities(model, inputs, *, outputs: str = "probabilities", batch_size: int = 64) -> np.ndarray:
    """Class probabilities (N, C) float32 of model `inputs`: the compiled forward pass in fixed batches.

    With ``outputs="logits"`` the softmax of the model's output. `inputs` may be any sliceable
    array-like (e.g. a memory map): it is read `batch_size` images at a time.
    """
    _check(inputs, batch_size)
    return batched(forward(model, outputs, False), inputs, batch_size)[0]


def with_logits(model, inputs, *, outputs: str = "probabilities", batch_size: int = 64):
    """(probabilities (N, C), logits (N, C) or None where the model's logits cannot be read)."""
    _check(inputs, batch_size)
    probs, logits = batched(forward(model, outputs, True), inputs, batch_size)
    return probs, (logits if logits.shape[1] else None)


def activations(model, inputs, layer: str) -> np.ndarray:
    """(N, h, w, K) float32 output of `layer` (its call in `model`'s own graph, `keras_graph.output_of`)
    for model `inputs`, MICRO_BATCH images per compiled call; made once per (model, layer)."""
    per_model = _FNS.setdefault(model, {})
    key = ("layer", layer)
    if key not in per_model:
        sub = keras.Model(model.inputs[0], kg.output_of(model, layer))

        @tf.function(reduce_retracing=True)
        def f(x):
            return sub(x, training=False)
        per_model[key] = f
    return fixed_batches(per_model[key], [np.asarray(inputs, np.float32)], MICRO_BATCH)[0]
