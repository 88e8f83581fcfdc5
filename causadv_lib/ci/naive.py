"""The reference CI: one full forward pass per removed filter, through a copy of the model with a
multiplicative channel mask after the layer (``method="naive"``, `reference_ablation`), `NAIVE_BATCH`
images per call. Slow and simple: the tests and the benchmark compare the fast paths against it.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers as L

from .. import keras_graph as kg
from .. import runner
from . import definitions, engine, plan

#: images per call of the naive reference (the canonical layout)
NAIVE_BATCH = 4


class _ChannelMask(keras.layers.Layer):
    """Multiplies the channels of its input by a 0/1 vector (the reference's filter removal)."""

    def __init__(self, k: int, **kwargs):
        super().__init__(**kwargs)
        self.mask = self.add_weight(shape=(k,), initializer="ones", trainable=False, name="mask")

    def call(self, x):
        return x * self.mask


class _LinearOf(keras.layers.Layer):
    """The pre-activation of a Dense layer, reading that layer's own kernel and bias (weights shared)."""

    def __init__(self, dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, x):
        z = keras.ops.matmul(x, self.dense.kernel)
        return z + self.dense.bias if self.dense.use_bias else z


def _naive_model(p: plan.Plan):
    """The model with a channel mask after the layer (sharing its layers) -> (Model, mask layer).

    The graph is called again, layer by layer, on the same input; the model returns a dict:
    ``"output"`` (the model's output) and, where they can be read, ``"logits"``.
    """
    mask, lg = _ChannelMask(p.K, name="ci_channel_mask"), p.logits
    inp = p.fmodel.inputs[0]
    values, outs = {id(inp): inp}, {}
    for n in p.nodes:
        op = n.operation
        if lg.kind == "dense" and n is lg.node:             # a softmax Dense: split off its logits
            (x,), _ = kg.fill_in(n, values)
            z = outs["logits"] = _LinearOf(op, name=op.name + "_logits")(x)
            ys = [L.Activation("softmax")(z)]
        else:
            ys = kg.call(n, values, training=None)          # training comes from the model's call
            if op is p.layer:
                ys = [mask(ys[0])]
            if lg.kind == "softmax_input" and n is lg.node:
                outs["logits"] = values[id(lg.tensor)]
        for x, y in zip(n.outputs, ys):
            values[id(x)] = y
    outs["output"] = values[id(p.output_tensor)]
    if lg.kind == "output":
        outs["logits"] = outs["output"]
    return keras.Model(inp, outs), mask


def _compiled(p: plan.Plan):
    """(compiled masked model, its mask layer)."""
    m, mask = _naive_model(p)
    return tf.function(lambda x: m(x, training=False), autograph=False), mask


def run_naive(eng, definition, images, target, filters, step, progress):
    """CI of `filters` by one full forward pass of the masked model per filter, NAIVE_BATCH images per call."""
    p = eng.p
    f, mask = eng.memo("naive", lambda: _compiled(p))
    B, out = NAIVE_BATCH, []

    def one_batch(x, t):
        rows = []
        for k in [*filters, None]:                      # the unablated pass last, same arithmetic
            mask.mask.assign(np.where(np.arange(p.K) == k, 0.0, 1.0).astype(np.float32))
            rows.append(f(x))
        mask.mask.assign(np.ones(p.K, np.float32))
        if "logits" in rows[0]:                         # the logits where known, else the probabilities
            probs, logits = None, tf.stack([r["logits"] for r in rows])
        else:
            probs, logits = tf.stack([r["output"] for r in rows]), None
        none = tf.zeros((len(filters), B), tf.bool)     # separate passes of one shape: no batch effects
        return definitions.finish(definition, probs, logits, t, none, True)
    for s0 in engine.progress_batches(len(images), step, progress, "CI (naive)"):
        out.append(runner.fixed_batches(one_batch, [images[s0:s0 + step], target[s0:s0 + step]], B))
    return [np.concatenate(parts) for parts in zip(*out)]
