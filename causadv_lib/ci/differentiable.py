"""Counterfactual information as a differentiable TensorFlow function of the model's inputs.

    >>> f = ci_function(zm.model, zm.ci_layer)              # definition="probability" by default
    >>> ci, logits = f(tf.constant(inputs))                 # (B, K) float32, (B, C): differentiable
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x); ci, logits = f(x); loss = tf.reduce_sum(ci)
    >>> tape.gradient(loss, x)                              # d loss / d inputs

The CI vector is the one `counterfactual_information` computes (CI of filter k = the score of the
predicted class on the full network minus its score with filter k's activation map removed, as
`definitions` defines it), built from the same pieces rather than re-derived: the engine's compiled
trunk (the network up to the layer), then

- on a closed-form path (`plan`: GAP or Flatten + Dense after the layer) the engine's closed-form head,
  one batch of K + 1 head rows per image (cheap: only the layers after the first Dense see the K
  removals); the Dense kernel by channel is taken from the kernel variable inside the graph, so a
  change of the weights is always seen (for a Flatten head it is a transpose per call, small next to
  the forward pass except for very wide heads such as VGG16 at 224 x 224);
- on the generic path the engine's generic function on K + 1 ablated copies of each image (the rest
  of the network runs on them and is differentiated through them). The copies of one image must fit
  `engine.ELEMENT_BUDGET`; a layer whose K + 1 copies do not is refused with a ValueError naming the
  model and the layer.

The logits (the input of the final softmax, `keras_graph.logits_of`'s rule) of the unablated network
come with the CI, from one more pass of the layers after the CI layer; a model whose logits cannot be
read is refused. Exact zeros stay exact (a dead channel's CI is 0.0 and its gradient 0).

Arithmetic. Every row is computed independently of the other rows of its call, but float32 kernels
differ by the shape of a call: called on `images_per_call` images (the engine's layout: MICRO_BATCH for
the trunk, the closed-form head in chunks of `engine.closed_batch`), `f` gives the engine's CI to
float32 rounding (the tests check 1e-6 of the largest |CI|); callers who need an image's result to be
independent of its batch call `f` on a fixed number of images, as the engine does.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .. import keras_graph as kg
from .. import runner
from . import engine, plan
from .definitions import DEFINITIONS

__all__ = ["CIFunction", "ci_function"]


class CIFunction:
    """``f(model_inputs) -> (ci (B, K) float32, logits (B, C))``, differentiable in the inputs (module docstring).

    Attributes: ``model_name``, ``layer``, ``definition``, ``path`` (the CI path, as `CIResult.path`), ``K``,
    ``images_per_call`` (the layout the engine runs: call on that many images for its arithmetic).
    """

    def __init__(self, eng: engine.Engine, model_name: str, definition: str):
        p = eng.p
        self._eng, self._p = eng, p
        self.model_name, self.layer, self.definition, self.K = model_name, p.layer_name, definition, p.K
        self.path = plan.closed_path(p) if p.closed else "generic"
        self.images_per_call = runner.MICRO_BATCH
        self._stage1 = eng.fn("stage1", None)
        down = plan.ancestors(p.down, plan.targets(p))
        hooks = plan.special(p)

        def logits_after(A, frontier):
            values = {id(p.A): A} | {id(t): v for t, v in zip(p.frontier, frontier)}
            return plan.head(p, kg.execute(down, values, hooks))[1]
        self._logits_after = logits_after
        if p.closed:
            self._head_rows = engine.closed_batch(p)
            self._closed = eng.fn("closed", definition)
        else:
            per_row = int(np.prod(p.A.shape[1:]))
            rows = max(2, engine.ELEMENT_BUDGET // per_row)
            if p.K + 1 > rows:
                raise ValueError(f"ci_function: model {model_name!r}, layer {p.layer_name!r}: the generic path "
                                 f"would need {p.K + 1} ablated copies of an image ({per_row} values each) in one "
                                 f"differentiable call, more than the engine's budget of {rows} "
                                 f"(ci.ELEMENT_BUDGET = {engine.ELEMENT_BUDGET} values); choose a layer with "
                                 "fewer or smaller feature maps, or one followed by GAP/Flatten + Dense")
            self._head_rows = max(1, min(runner.MICRO_BATCH, rows // (p.K + 1)))
            self._generic = eng.fn("generic", definition)

    def _kernel_by_channel(self):
        cf, K = self._p.closed, self._p.K
        kernel = cf.dense.operation.kernel
        if cf.P == 1:
            return tf.reshape(kernel, (K, 1, -1))
        return tf.transpose(tf.reshape(kernel, (cf.P, K, -1)), (1, 0, 2))

    def _head(self, A, frontier):
        """CI (G, K) of the G images whose layer outputs are `A` (and the frontier tensors)."""
        G = tf.shape(A)[0]
        target = tf.fill([G], tf.constant(-1, tf.int32))
        if self._p.closed:
            return self._closed(A, target, self._kernel_by_channel())[0]
        kidx = tf.tile(tf.range(self.K + 1, dtype=tf.int32)[None], [G, 1])
        return self._generic(A, list(frontier), kidx, target)[0]

    def __call__(self, inputs):
        x = tf.convert_to_tensor(inputs, tf.float32)
        A, *frontier = self._stage1(x)
        n, step = A.shape[0], self._head_rows
        if n is not None and n > step:          # the engine's head layout: chunks of `step` images
            parts = [self._head(A[s:s + step], [f[s:s + step] for f in frontier]) for s in range(0, n, step)]
            ci = tf.concat(parts, axis=0)
        else:
            ci = self._head(A, frontier)
        return tf.cast(ci, tf.float32), self._logits_after(A, frontier)


def ci_function(model, layer=None, definition: str = "probability", outputs: str = "probabilities") -> CIFunction:
    """The differentiable CI of every filter of `layer` (default `keras_graph.default_ci_layer`) of `model` for
    `definition` (one of DEFINITIONS), as a `CIFunction`: ``f(model_inputs) -> (ci, logits)``.

    outputs: what the model outputs, as in `counterfactual_information`. A ValueError names the model and the
    layer when the logits cannot be read or the generic path's ablated copies would not fit.
    """
    if definition not in DEFINITIONS:
        raise ValueError(f"definition={definition!r}; expected one of {DEFINITIONS}")
    layer = kg.default_ci_layer(model) if layer is None else layer
    eng = engine.engine(model, layer, outputs)
    if not eng.p.logits.known:
        raise ValueError(f"ci_function: model {model.name!r}, layer {eng.p.layer_name!r}: the logits (the input of "
                         "a final softmax) cannot be read; end the model in a Softmax layer (zoo.custom / "
                         "zoo.split_softmax) or pass outputs='logits' for a model that outputs logits")
    return CIFunction(eng, model.name, definition)
