"""Input checks of the CI API: every bad argument is refused with an error naming it and the fix."""
from __future__ import annotations

import numpy as np

from .. import keras_graph as kg
from .. import runner
from . import engine
from .definitions import DEFINITIONS

#: what a model outputs
OUTPUTS = ("probabilities", "logits")
#: ``method=`` of `counterfactual_information`
METHODS = ("auto", "generic", "naive")


def check_images(images, model_name: str, want: tuple) -> np.ndarray:
    """`images` as contiguous float32 model inputs of shape (N, *want), finite; else a ValueError."""
    arr = np.asarray(images)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"images have dtype {arr.dtype}; expected float model inputs (already preprocessed, e.g. "
                         f"zoo_model.preprocess(uint8_images)): CI of raw pixels would be garbage")
    if arr.ndim != len(want) + 1 or any(w is not None and w != d for w, d in zip(want, arr.shape[1:])):
        raise ValueError(f"images have shape {arr.shape}; model {model_name!r} expects (N, {', '.join(map(str, want))})")
    bad = ~np.isfinite(arr.reshape(len(arr), int(np.prod(arr.shape[1:])))).all(axis=1)
    if bad.any():
        raise ValueError(f"images contain NaN or Inf (image indices {np.flatnonzero(bad)[:5].tolist()}); "
                         "expected finite model inputs")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_target(target, n: int, C: int) -> np.ndarray:
    """`target` (None, one class or n classes in [0, C)) as (n,) int32, -1 for the predicted class."""
    if target is None:
        return np.full(n, -1, np.int32)
    t = np.asarray(target)
    if t.dtype == bool or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"target={target!r}; expected integer class indices in [0, {C}) (an int or {n} ints)")
    if t.ndim > 1 or (t.ndim == 1 and len(t) != n):
        raise ValueError(f"target has shape {t.shape}; expected one class index or {n} of them (one per image)")
    out = np.broadcast_to(t, (n,)).astype(np.int64)
    wrong = (out < 0) | (out >= C)
    if wrong.any():
        raise ValueError(f"target must be class indices in [0, {C}), got {out[wrong][:5].tolist()}")
    return out.astype(np.int32)


def check_probability_output(eng, model, images: np.ndarray, outputs: str) -> None:
    """A model whose output is not a recognised softmax: refuse it unless its rows are probabilities."""
    p = eng.p
    if outputs == "logits":
        n = kg.producer(p.nodes, p.output_tensor)
        if n is not None and kg.softmax_kind(n):
            raise ValueError(f"outputs='logits', but model {model.name!r} ends in a softmax (layer "
                             f"{n.operation.name!r}); expected outputs='probabilities' (the softmax would be "
                             "applied twice)")
        return
    if p.logits.known or not len(images):
        return
    probs = runner.batched(runner.forward(model, outputs, False), images[:runner.MICRO_BATCH], runner.MICRO_BATCH)[0]
    sums = probs.sum(axis=1)
    if probs.min() < -1e-6 or probs.max() > 1 + 1e-6 or np.abs(sums - 1).max() > 1e-3:
        raise ValueError(f"outputs='probabilities', but the output of model {model.name!r} is not a probability "
                         f"vector (row sums {sums[:3].round(4).tolist()}, values in [{probs.min():.3g}, "
                         f"{probs.max():.3g}]); pass outputs='logits' for a model that outputs logits")


def check_arguments(model, images, layer, target, definition, outputs, method, batch_size, n: int | None = None):
    """Every argument checked -> (engine, float32 images, int32 targets); a ValueError naming a bad one.
    n: the number of images when they are not given yet (`images` is then returned as it is, and checked by
    `keyed_images` when made)."""
    if definition not in DEFINITIONS:
        raise ValueError(f"definition={definition!r}; expected one of {DEFINITIONS}")
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs={outputs!r}; expected one of {OUTPUTS}")
    if method not in METHODS:
        raise ValueError(f"method={method!r}; expected one of {METHODS}")
    runner.check_batch_size(batch_size)
    layer = kg.default_ci_layer(model) if layer is None else layer
    eng = engine.engine(model, layer, outputs)
    if definition in ("logit", "log_probability") and not eng.p.logits.known:
        raise ValueError(f"definition={definition!r} needs the logits, but the output of model {model.name!r} "
                         "is not a softmax (layer or Dense activation) whose input could be read; "
                         "pass outputs='logits' if the model outputs logits")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n={n!r}; expected the number of images, an int >= 0")
        return eng, images, check_target(target, int(n), int(eng.p.output_tensor.shape[-1]))
    x = check_images(images, model.name, tuple(eng.p.fmodel.inputs[0].shape[1:]))
    t = check_target(target, len(x), int(eng.p.output_tensor.shape[-1]))
    check_probability_output(eng, model, x, outputs)
    return eng, x, t


def keyed_images(eng, model, images, n: int, outputs: str) -> np.ndarray:
    """The images that a `KeyedInputs` made, checked as `check_arguments` checks given ones, and their number
    against the `n` it promised."""
    x = check_images(images, model.name, tuple(eng.p.fmodel.inputs[0].shape[1:]))
    if len(x) != n:
        raise ValueError(f"KeyedInputs made {len(x)} images; it promised n={n}")
    check_probability_output(eng, model, x, outputs)
    return x
