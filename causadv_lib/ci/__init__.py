"""Counterfactual information (CI) of every filter of one layer (paper section 3.1), exact and fast.

For an input x predicted as class c, removing filter k of a layer means multiplying channel k of that
layer's output (after its activation) by 0 and keeping everything else intact; every consumer of the
layer (e.g. a ResNet skip) sees the ablated tensor. The CI of filter k is, by ``definition``:

==================== =================================================================================
``probability``      p_c(x) - p_c(x with k removed): the paper's definition (the default)
``log_probability``  log p_c(x) - log p_c(x with k removed), from the logits as
                     log p_c = -log1p(sum_{j != c} exp(z_j - z_c)): exact and non-zero where p_c rounds
                     to 1.0 in float32 (``z - logsumexp(z)`` loses exactly these differences)
``logit``            z_c(x) - z_c(x with k removed); the logits are the input of the final softmax
``authors``          p_c(x) - max_j p_j(x with k removed): what the authors' code computed (it differs
                     from the paper whenever a removal flips the prediction); kept to document it
==================== =================================================================================

Every definition goes through the same paths, all exact in float32 (they agree with one full forward
pass per removed filter to ~1e-6):

- ``generic``: run the network to the layer once, then the rest of the network on memory-bounded
  batches of ablated copies (any Keras functional model, any layer with an (H, W, K) output).
- ``closed_form_flatten_dense``: the layer is followed only by per-channel layers (activations,
  inference batchnorm, dropout, 2-D pooling), ``Flatten`` and a ``Dense`` (VGG heads). The first dense
  pre-activation of removal k is ``z + W1[rows of channel k] . (f(0)_k - f(a)_k)`` (``f`` = the
  per-channel layers, ``f(0)_k = 0`` without batchnorm), so only the layers after that Dense see the
  batch of K removals.
- ``closed_form_gap``: the same with ``GlobalAveragePooling2D`` instead of ``Flatten`` (MobileNet and
  ResNet heads): when the Dense produces the logits, all K logit vectors come from one forward pass,
  ``logits - mean_k * W[k]``.
- ``naive`` (``method="naive"``, the reference for tests and the benchmark): a copy of the model with a
  multiplicative channel mask after the layer, one full forward pass per removed filter.

Same answer every time. TensorFlow runs a different float32 kernel for a different batch shape, and
a saturated probability turns those last-bit differences into different zero sets. Every compiled call
therefore has a fixed layout (`MICRO_BATCH` images for the network up to the layer, a fixed divisor of
it for the closed-form head, `NAIVE_BATCH` for the naive reference; short batches are padded:
`causadv_lib.runner`), so an image's CI vector is bit-identical whatever ``batch_size`` is and
whichever images share the call.
Between paths the arithmetic differs, and on a saturated prediction a CI can be exactly 0 on one path
and one float32 step of p_c on another (notebook 01 counts them).

Exact zeros (strategy 3 counts CI == 0). The unablated row is computed in the same batch and the
same arithmetic as the removals, and two float32 effects that would turn a 0 into one ulp are removed:
a row's matrix products round differently depending on its position in the batch, so a removal that
leaves the tensor entering the rest of the network bit-identical (a dead channel) gets exactly 0.0;
and TensorFlow's softmax multiplies by an approximate reciprocal (0.99999994 or 1.0 for the same
logits, by position), so where the logits are known the probabilities are computed from them as
``exp(-log(sum_j exp(z_j - z_c)))``, exactly 1.0 wherever p_c rounds to 1: a removal from a saturated
prediction gets exactly 0.0, as with separate forward passes.

The package, one concept per module: `plan` (the graph around the layer, where the logits are read,
the closed-form match), `definitions` (the score formulas, one copy for every path), `engine` (the
compiled engine and the closed-form and generic loops), `naive` (the one-pass-per-filter reference),
`checks` (input checks), `differentiable` (`ci_function`: the CI as a TensorFlow function of the
inputs, differentiable, for gradient-based attacks). The fixed-batch forward pass is `causadv_lib.runner`;
the default CI layer
and the logits rule are `causadv_lib.keras_graph`'s (`default_ci_layer`, `logits_of`).

Example::

    res = counterfactual_information(zm.model, zm.preprocess(images), zm.ci_layer)
    res.ci            # (N, K) float32
    res.path          # "closed_form_flatten_dense"
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import __version__
from .. import cache as ccache
from .. import keras_graph as kg
from .. import runner
from ..runner import MICRO_BATCH, check_batch_size
from . import checks, engine, naive, plan
from .differentiable import CIFunction, ci_function
from .checks import METHODS, OUTPUTS
from .definitions import DEFINITIONS
from .engine import ELEMENT_BUDGET, HEAD_BUDGET
from .naive import NAIVE_BATCH
from .plan import PATHS

__all__ = ["counterfactual_information", "reference_ablation", "CIResult", "KeyedInputs", "DEFINITIONS", "OUTPUTS", "METHODS",
           "PATHS", "default_layer", "num_filters", "closed_form_pattern", "images_per_call", "layout_key",
           "check_batch_size", "MICRO_BATCH", "NAIVE_BATCH", "ELEMENT_BUDGET", "HEAD_BUDGET",
           "ci_function", "CIFunction"]

#: The default CI layer: `keras_graph.default_ci_layer` (the last convolutional feature map with H x W > 1)
default_layer = kg.default_ci_layer


@dataclass(frozen=True)
class CIResult:
    """CI vectors of N inputs: ``ci`` (N, K) float32, the predicted class, its probability, and provenance."""

    ci: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray
    target: np.ndarray
    definition: str
    layer: str
    path: str
    filters: np.ndarray = field(default=None)  # the filter index of each column (all K unless a subset)


@dataclass(frozen=True)
class KeyedInputs:
    """`n` model inputs known by a cache-key part and made only if needed: the ``images`` of a cached
    `counterfactual_information` whose key holds `key` in place of the input bytes, and which calls `make()`
    (returning the (n, ...) float inputs) only on a cache miss. The caller's promise: inputs with equal keys are
    equal, e.g. the key of the cache entry of an attack's adversarial pixels and the name of the
    normalisation (`experiment`). Hashing and checking 180 MB of ImageNet inputs to find CI vectors that are
    already on disk took longer than reading them."""

    n: int
    key: object
    make: Callable[[], np.ndarray]


def layout_key() -> tuple:
    """Everything about the canonical layout that can change a CI bit (part of every cache key)."""
    return ("layout", runner.MICRO_BATCH, naive.NAIVE_BATCH, engine.ELEMENT_BUDGET, engine.HEAD_BUDGET)


def counterfactual_information(model, images, layer=None, *, target=None, definition: str = "probability",
                               outputs: str = "probabilities", method: str = "auto", batch_size: int = 32,
                               cache: bool = False, progress: bool | None = None) -> CIResult:
    """CI of every filter of `layer` for each of `images` (already-preprocessed float model inputs, or a
    `KeyedInputs` that makes them).

    layer: name or Layer with an (H, W, K) output; None = `default_layer(model)`.
    target: class (int or (N,) ints) whose CI is computed; None = the predicted class.
    definition: one of DEFINITIONS (module docstring); outputs: "probabilities" (the model ends in a
    softmax) or "logits" (it outputs logits). method: "auto" (closed form where the graph allows it,
    else generic), "generic", or "naive" (the reference: one full forward pass per filter).
    batch_size: images per step of the loop (progress bar and memory); it never changes a result: every
    compiled call runs the canonical layout (MICRO_BATCH), so an image's CI vector is bit-identical
    whatever the batch size and whichever images share the call.
    cache: reuse CI vectors stored under `config.cache_dir()/ci`, keyed by the model (architecture and
    weights), the layer, the input bytes (or the key of a `KeyedInputs` given as `images`, made only on a
    miss), the target, the definition, outputs, method, the layout and the library version and the source
    code of the ci package, keras_graph and runner (`cache.cached`): a hit is bit-identical to recomputing. Off by default; notebooks turn it on.
    progress: a progress bar over batches (None: only for runs longer than 2 s).
    An empty batch gives an empty result of the right shape.
    """
    keyed = images if isinstance(images, KeyedInputs) else None
    if keyed is not None and not cache:
        images, keyed = keyed.make(), None
    eng, images, target = checks.check_arguments(model, images, layer, target, definition, outputs, method,
                                                 batch_size, n=None if keyed is None else keyed.n)
    p = eng.p
    path = "naive" if method == "naive" else (
        plan.closed_path(p) if method == "auto" and p.closed else "generic")
    n = len(target)
    if not n:
        return _empty(p, definition, path)
    def compute():
        x = images if keyed is None else checks.keyed_images(eng, model, keyed.make(), n, outputs)
        step = runner.round_up(batch_size, runner.MICRO_BATCH)
        if path == "naive":
            out = naive.run_naive(eng, definition, x, target, list(range(p.K)),
                                  runner.round_up(batch_size, naive.NAIVE_BATCH), progress)
        elif path == "generic":
            out = engine.run_generic(eng, definition, x, target, step, progress)
        else:
            out = engine.run_closed(eng, definition, x, target, step, progress)
        return dict(zip(("ci", "predicted", "probability", "target"), out)) | {"path": np.array(path)}

    def wrong(a):
        want = {"ci": (n, p.K), "predicted": (n,), "probability": (n,), "target": (n,), "path": ()}
        bad = {k: a[k].shape for k in want if a[k].shape != want[k]}
        return f"shapes {bad}, expected {want}" if bad else None

    if cache:
        inputs = images if keyed is None else ["keyed inputs", keyed.key]
        got = ccache.cached("ci", [ccache.model_fingerprint(model), p.layer_name, inputs, target, definition,
                                   outputs, method, layout_key(), __version__],
                            compute, required=("ci", "predicted", "probability", "target", "path"), validate=wrong,
                            code=("causadv_lib.ci", "causadv_lib.keras_graph", "causadv_lib.runner"))
    else:
        got = compute()
    return _result(got["ci"], got["predicted"], got["probability"], got["target"], definition, p.layer_name,
                   str(got["path"]))


def _empty(p: plan.Plan, definition: str, path: str, filters=None) -> CIResult:
    K = p.K if filters is None else len(filters)
    e = np.zeros(0, np.int64)
    return _result(np.zeros((0, K), np.float32), e, np.zeros(0, np.float32), e, definition, p.layer_name, path,
                   filters)


def reference_ablation(model, images, layer=None, *, filters=None, target=None, definition: str = "probability",
                       outputs: str = "probabilities", batch_size: int = 32, progress: bool | None = None
                       ) -> CIResult:
    """The reference: CI of `filters` (default all) by one full forward pass of a masked model per filter."""
    eng, images, target = checks.check_arguments(model, images, layer, target, definition, outputs, "naive",
                                                 batch_size)
    ks = list(range(eng.p.K)) if filters is None else [int(k) for k in filters]
    if any(not 0 <= k < eng.p.K for k in ks):
        raise ValueError(f"filters must be in [0, {eng.p.K}), got {ks}")
    if not len(images):
        return _empty(eng.p, definition, "naive", np.asarray(ks))
    ci, pred, prob, c = naive.run_naive(eng, definition, images, target, ks,
                                        runner.round_up(batch_size, naive.NAIVE_BATCH), progress)
    return _result(ci, pred, prob, c, definition, eng.p.layer_name, "naive", np.asarray(ks))


def _result(ci, pred, prob, c, definition, layer, path, filters=None) -> CIResult:
    ci = np.asarray(ci, np.float32)
    return CIResult(ci=ci, predicted=np.asarray(pred, np.int64), probability=np.asarray(prob, np.float32),
                    target=np.asarray(c, np.int64), definition=definition, layer=layer, path=path,
                    filters=np.arange(ci.shape[1]) if filters is None else filters)


def num_filters(model, layer=None) -> int:
    """K, the number of channels of `layer`'s output (default `default_layer(model)`)."""
    return engine.engine(model, default_layer(model) if layer is None else layer, "probabilities").p.K


def closed_form_pattern(model, layer=None, outputs: str = "probabilities", *, reason: bool = False):
    """The closed-form path `method="auto"` takes for (model, layer), or None (the generic path).

    reason=True: (path or None, why the closed form was refused or "").
    """
    p = engine.engine(model, default_layer(model) if layer is None else layer, outputs).p
    path = None if p.closed is None else plan.closed_path(p)
    return (path, p.closed_refusal) if reason else path


def images_per_call(model, layer=None, *, outputs: str = "probabilities") -> int:
    """Images per compiled head call of `counterfactual_information` (method="auto"): MICRO_BATCH, or on
    the closed-form paths a divisor of it that keeps the head's (K+1) x images rows within HEAD_BUDGET.
    Fixed by (model, layer) alone: the caller's `batch_size` never changes the layout."""
    p = engine.engine(model, default_layer(model) if layer is None else layer, outputs).p
    return engine.closed_batch(p) if p.closed else runner.MICRO_BATCH
