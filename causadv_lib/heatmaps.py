"""Causal heatmaps (paper section 5, Figure 4), Grad-CAM on the same layer, and a heatmap-consistency score.

For a sample x predicted as class c, with activation maps A_k(x) (h x w, one per filter k) at the CI layer:

=========== =======================================================================================
method      map at the layer's resolution, before normalisation
=========== =======================================================================================
``causal``  ReLU(sum_k w_k A_k(x)), w_k = max(CI_k of c's prototype, 0): the paper's idea, the
            prototype's causal filters (CI > 0) weighted by their CI
``authors`` ReLU(mean_k m_k A_k(x)), m_k = 1 where CI_k of c's prototype > 0: what the authors' code
            drew (a binary mask of the causal filters and the channel mean; the CI is not used)
``gradcam`` ReLU(sum_k a_k A_k(x)), a_k = spatial mean of d z_c / d A_k: Grad-CAM of the logit z_c
            (the input of the model's final Softmax) on the same layer
=========== =======================================================================================

Each map is divided by its maximum (so it lies in [0, 1]; a map that is zero everywhere stays zero: no
causal filter is active on x) and upsampled bilinearly to the image size (`maps`, `gradcam`).
A class without a prototype has no causal heatmap: its map is NaN.

The paper only shows pictures. `consistency` turns the idea into a number: the agreement between the
sample's *own* CI-weighted map (weights: the sample's own CI of its predicted class, causal filters only)
and the map built from the predicted class's prototype CI, both from the sample's activations, as the
cosine (or Pearson correlation) over the h x w positions. A clean sample should use its class's causal
filters where its prototype does; ``1 - agreement`` is the detection score (larger = more suspicious).
An all-zero or constant map (e.g. no causal filter at all) has agreement 0.

Inputs: float pixel values in [0, 255] at the model's input size (``zoo_model.normalize`` is applied
here), like `causadv_lib.attacks`. Activations are computed in fixed batches of `BATCH` images (short
batches are padded), so a map does not depend on which images share the call. A model, layer, CI vector
or image that does not fit stops with an error naming it (the image by its index and shape).
"""
from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from . import keras_graph as kg
from . import runner, strategies, zoo
from .pixels import check_images

__all__ = ["METHODS", "MEASURES", "BATCH", "check_layer", "layer_shape", "activations", "layer_maps", "normalise", "upsample",
           "maps", "gradcam", "agreement", "consistency"]

METHODS = ("causal", "authors", "gradcam")
MEASURES = ("cosine", "pearson")
#: images per compiled call: `runner.MICRO_BATCH` (fixed layout: short batches are padded)
BATCH = runner.MICRO_BATCH


# ------------------------------------------------------------------------------------------ checks
def _name(zm) -> str:
    return zoo.name_of(zm)


def _resolve(zm):
    return zoo.for_pixels(zm)


def _layer_output(zm, layer: str):
    """The layer's output tensor in the model's own graph (`keras_graph.output_of`), or ValueError naming both."""
    try:
        return kg.output_of(zm.model, layer)
    except (ValueError, TypeError) as e:
        raise ValueError(f"model {_name(zm)}: no usable layer {layer!r} (its CI layer is {zm.ci_layer!r}): {e}") from None


def check_layer(zm, layer: str | None = None) -> str:
    """The layer's name (default: the model's CI layer) after checking it exists with an (h, w, K) output."""
    zm = _resolve(zm)
    layer = zm.ci_layer if layer is None else layer
    shape = tuple(_layer_output(zm, layer).shape)
    if len(shape) != 4:
        raise ValueError(f"model {_name(zm)}: layer {layer!r} has output shape {shape}; a heatmap needs a "
                         "convolutional (batch, h, w, filters) output")
    return layer


def layer_shape(zm, layer: str | None = None) -> tuple[int, int, int]:
    """(h, w, K) of the layer's output (default: the model's CI layer)."""
    zm = _resolve(zm)
    return tuple(int(d) for d in _layer_output(zm, check_layer(zm, layer)).shape[1:])


def _pixels(zm, images, what: str) -> np.ndarray:
    return check_images(images, zm.input_shape, what=f"{what} (model {_name(zm)})")


def _filters(zm, layer) -> int:
    return int(_layer_output(zm, layer).shape[-1])


def _check_vectors(zm, layer, ci, n: int, what: str) -> np.ndarray:
    v = np.asarray(ci, np.float32)
    K = _filters(zm, layer)
    if v.ndim != 2 or v.shape[1] != K or v.shape[0] != n:
        raise ValueError(f"{what}: expected ({n}, {K}) CI vectors (one per image, one value per filter of layer "
                         f"{layer!r} of model {_name(zm)}), got shape {v.shape}")
    if n:
        try:
            strategies.check_ci(v)            # finite CI values: the strategies' rule, the one home
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
    return v


def _check_prototypes(zm, layer, prototypes):
    K = _filters(zm, layer)
    ci = np.asarray(prototypes.ci, np.float32)
    player = getattr(prototypes, "layer", None)
    if player is not None and player != layer:
        raise ValueError(f"model {_name(zm)}: the prototypes' CI vectors are of layer {player!r}, the heatmap's "
                         f"layer is {layer!r}")
    if ci.ndim != 2 or ci.shape[1] != K or ci.shape[0] != len(zm.class_names):
        raise ValueError(f"model {_name(zm)}: prototypes of shape {ci.shape} do not fit layer {layer!r} "
                         f"({len(zm.class_names)} classes x {K} filters)")
    try:
        strategies.check_proto(ci, K)         # rows finite, or all NaN (no prototype): the strategies' rule
    except ValueError as e:
        raise ValueError(f"model {_name(zm)}: prototypes: {e}") from None
    return ci


def _check_classes(zm, classes, n: int) -> np.ndarray:
    c = np.asarray(classes)
    C = len(zm.class_names)
    if c.shape != (n,) or (n and not np.issubdtype(c.dtype, np.integer)):
        raise ValueError(f"classes: expected {n} integer class indices (one per image), got {c.dtype} {c.shape}")
    bad = (c < 0) | (c >= C)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"classes: image {i} has class {int(c[i])}, outside 0..{C - 1} of model {_name(zm)}")
    return c.astype(np.int64)


# -------------------------------------------------------------------------------- compiled passes
_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _logits_tensor(model):
    """The input of the model's final softmax layer (`keras_graph.logits_of`), or ValueError naming the model."""
    lg = kg.logits_of(model)
    if lg.kind != "softmax_input":
        raise ValueError(f"model {model.name}: Grad-CAM needs a model ending in a Softmax layer over the logits "
                         "(zoo models do; see zoo.custom)")
    return lg.tensor


def _gradcam_fn(model, layer: str):
    """Compiled (acts, Grad-CAM map) function of (inputs, classes), one per (model, layer)."""
    per_model = _FNS.setdefault(model, {})
    if layer in per_model:
        return per_model[layer]
    sub = keras.Model(model.inputs[0], [kg.output_of(model, layer), _logits_tensor(model)])

    @tf.function(reduce_retracing=True)
    def f(x, c):
        with tf.GradientTape() as tape:
            acts, logits = sub(x, training=False)
            z = tf.gather(logits, c, batch_dims=1)
        grads = tape.gradient(z, acts)
        alpha = tf.reduce_mean(grads, axis=(1, 2))
        return acts, tf.nn.relu(tf.einsum("nhwk,nk->nhw", acts, alpha))
    per_model[layer] = f
    return f


def activations(zm, images, layer: str | None = None) -> np.ndarray:
    """(N, h, w, K) float32 activation maps of float pixels `images` at `layer` (default: the CI layer)."""
    zm = _resolve(zm)
    layer = check_layer(zm, layer)
    x = _pixels(zm, images, "activations")
    if len(x) == 0:
        return np.zeros((0, *_layer_output(zm, layer).shape[1:]), np.float32)
    return runner.activations(zm.model, zm.normalize(x), layer)


# ------------------------------------------------------------------------------------------- maps
def layer_maps(acts: np.ndarray, weights: np.ndarray, reduce: str = "sum") -> np.ndarray:
    """ReLU(sum_k weights[n, k] * acts[n, :, :, k]) (``reduce="mean"``: divided by K): (N, h, w) float32."""
    acts = np.asarray(acts, np.float32)
    w = np.asarray(weights, np.float32)
    m = np.einsum("nhwk,nk->nhw", acts, w, optimize=True)
    if reduce == "mean":
        m = m / acts.shape[-1]
    return np.maximum(m, 0.0).astype(np.float32)


def normalise(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum (in [0, 1]); all-zero maps stay zero, NaN maps stay NaN."""
    m = np.asarray(maps, np.float32)
    peak = m.reshape(len(m), -1).max(axis=1) if m.size else np.zeros(len(m), np.float32)
    scale = np.where(peak > 0, peak, 1.0).astype(np.float32)
    return (m / scale.reshape(-1, *([1] * (m.ndim - 1)))).astype(np.float32)


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) maps resized bilinearly (half-pixel centres) to (N, H, W), float32."""
    m = np.asarray(maps, np.float32)
    if len(m) == 0:
        return np.zeros((0, *size), np.float32)
    out = tf.image.resize(m[..., None], tuple(int(s) for s in size), method="bilinear")
    return np.asarray(out[..., 0], np.float32)


def _prototype_weights(proto_ci: np.ndarray, classes: np.ndarray, method: str) -> np.ndarray:
    w = proto_ci[classes]                                    # NaN rows: no prototype
    if method == "authors":
        return np.where(np.isnan(w), np.nan, (w > 0).astype(np.float32))
    return np.where(np.isnan(w), np.nan, np.maximum(w, 0.0))


def maps(zm, images, prototypes, classes, *, method: str = "causal", layer: str | None = None,
         upsampled: bool = True) -> np.ndarray:
    """Heatmaps of `images` for `classes` by `method` (``causal``, ``authors``, ``gradcam``), in [0, 1].

    `prototypes`: `prototypes.Prototypes` of the same layer (ignored by Grad-CAM). Returns (N, H, W) at
    the image size (``upsampled=False``: (N, h, w) at the layer's size). NaN maps: no prototype of the class.
    """
    zm = _resolve(zm)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    layer = check_layer(zm, layer)
    x = _pixels(zm, images, f"{method} heatmap")
    c = _check_classes(zm, classes, len(x))
    if method == "gradcam":
        maps = _gradcam(zm, x, c, layer)
    else:
        proto = _check_prototypes(zm, layer, prototypes)
        w = _prototype_weights(proto, c, method)
        acts = activations(zm, x, layer)
        maps = layer_maps(acts, np.nan_to_num(w), reduce="mean" if method == "authors" else "sum")
        maps[np.isnan(w).any(axis=1)] = np.nan
    maps = normalise(maps)
    return upsample(maps, zm.input_shape[:2]) if upsampled else maps


def _gradcam(zm, x, c, layer) -> np.ndarray:
    if len(x) == 0:
        return np.zeros((0, *_layer_output(zm, layer).shape[1:3]), np.float32)
    f = _gradcam_fn(zm.model, layer)
    return runner.fixed_batches(f, [np.asarray(zm.normalize(x), np.float32), c.astype(np.int32)], BATCH)[1]


def gradcam(zm, images, classes=None, *, layer: str | None = None, upsampled: bool = True) -> np.ndarray:
    """Grad-CAM of the logit of `classes` (default: the predicted class) w.r.t. `layer`, in [0, 1]."""
    zm = _resolve(zm)
    layer = check_layer(zm, layer)
    x = _pixels(zm, images, "Grad-CAM")
    if classes is None:
        classes = runner.probabilities(zm.model, zm.normalize(x)).argmax(axis=1) if len(x) else np.zeros(0, int)
    c = _check_classes(zm, classes, len(x))
    maps = normalise(_gradcam(zm, x, c, layer))
    return upsample(maps, zm.input_shape[:2]) if upsampled else maps


# ------------------------------------------------------------------------------------ consistency
def agreement(a: np.ndarray, b: np.ndarray, measure: str = "cosine") -> np.ndarray:
    """Per pair of maps (N, ...): cosine or Pearson over positions; 0 where a map is zero/constant; NaN kept."""
    if measure not in MEASURES:
        raise ValueError(f"measure: expected one of {MEASURES}, got {measure!r}")
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"agreement: maps of shapes {a.shape} and {b.shape} differ")
    if measure == "pearson":
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    eps = 1e-12
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where((na > eps) & (nb > eps), dot / (na * nb), 0.0)
    return np.clip(np.where(np.isnan(na) | np.isnan(nb), np.nan, out), -1.0, 1.0)


def consistency(zm, images, own_ci, classes, prototypes, *, measures=MEASURES, layer: str | None = None) -> dict:
    """{measure: (N,) agreement} between each image's own CI-weighted map and its class prototype's map.

    `own_ci` (N, K): the image's own CI vector of its predicted class `classes` (as `ci.CIResult.ci`).
    NaN where the class has no prototype. One activation pass serves every measure.
    """
    zm = _resolve(zm)
    layer = check_layer(zm, layer)
    x = _pixels(zm, images, "consistency")
    own = _check_vectors(zm, layer, own_ci, len(x), "own_ci")
    c = _check_classes(zm, classes, len(x))
    proto = _check_prototypes(zm, layer, prototypes)
    for m in measures:
        if m not in MEASURES:
            raise ValueError(f"measure: expected one of {MEASURES}, got {m!r}")
    if len(x) == 0:
        return {m: np.zeros(0) for m in measures}
    w_proto = _prototype_weights(proto, c, "causal")
    acts = activations(zm, x, layer)
    own_map = layer_maps(acts, np.maximum(own, 0.0))
    proto_map = layer_maps(acts, np.nan_to_num(w_proto))
    missing = np.isnan(w_proto).any(axis=1)
    out = {}
    for m in measures:
        a = agreement(own_map, proto_map, m)
        a[missing] = np.nan
        out[m] = a
    return out
