"""The compiled CI engine of one (model, layer, outputs) and the loops that run it: the trunk (the network
up to the layer), then the closed-form head or the generic rest of the network on ablated copies.

Every compiled call runs in the canonical layout (`runner.fixed_batches`): the trunk on
`runner.MICRO_BATCH` images, the closed-form head on `closed_batch` images (a divisor of it fixed by
the plan), the generic function on a fixed number of images or of removals per call.
"""
from __future__ import annotations

import logging
import weakref

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from .. import keras_graph as kg
from .. import runner
from . import definitions, plan


class _EngineTracing(logging.Filter):
    """TensorFlow warns ("... triggered tf.function retracing") when functions of the same code are traced more
    than five times in a row. An `Engine` compiles one function per (model, layer, outputs, definition) on
    purpose and traces each once (its layout is fixed), so for the engine's functions, and only for them, the
    warning is a false alarm; notebook 01, which builds several engines, printed it into its outputs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and "function Engine." in message)


tf.get_logger().addFilter(_EngineTracing())

#: float32 elements per batch of ablated copies on the generic path (128 MiB)
ELEMENT_BUDGET = 1 << 25
#: float32 elements per tensor of closed-form head rows (64 MiB). Measured on MobileNetV2 (K = 1280,
#: 1000 classes) in the canonical layout: 8 images per head call (64 MiB) gave CI / forward = 1.41 against
#: 1.57 with 2 images (16 MiB); 128 MiB was measured 2x slower earlier (the rows leave the cache)
HEAD_BUDGET = 1 << 24


class Engine:
    """Compiled functions of one (model, layer, outputs), built once and reused (no retracing)."""

    def __init__(self, p: plan.Plan):
        self.p = p
        self._fns = {}
        self._by_channel = (None, None)     # (fingerprint, kernel as (K, P, U)) of the first Dense

    def kernel_by_channel(self):
        """The first Dense's kernel as (K, P, U): rows of channel k together (closed form).

        Transposing VGG16's 25088 x 4096 kernel costs more than the rest of the closed form, so the
        transposed copy is kept and remade whenever the kernel's fingerprint (farmhash of its bytes,
        ~0.05 s for 400 MB) changes: changing the weights in place never serves a stale copy.
        """
        cf, K = self.p.closed, self.p.K
        kernel = cf.dense.operation.kernel
        if cf.P == 1:
            return tf.reshape(kernel, (K, 1, -1))
        if "kernel_fns" not in self._fns:
            P = cf.P
            self._fns["kernel_fns"] = (
                tf.function(lambda w: tf.fingerprint(tf.reshape(w, (P, -1)))),
                tf.function(lambda w: tf.transpose(tf.reshape(w, (P, K, -1)), (1, 0, 2))))
        fingerprint, transpose = self._fns["kernel_fns"]
        fp = fingerprint(kernel).numpy()
        if self._by_channel[0] is None or not np.array_equal(fp, self._by_channel[0]):
            self._by_channel = (fp, transpose(kernel))
        return self._by_channel[1]

    def memo(self, key, make):
        """``make()``, made once per engine under `key` and reused."""
        if key not in self._fns:
            self._fns[key] = make()
        return self._fns[key]

    def fn(self, kind, definition):
        key = (kind, definition)
        if key not in self._fns:
            make = {"stage1": self._stage1, "generic": self._generic, "closed": self._closed}[kind]
            self._fns[key] = tf.function(make(definition), autograph=False)
        return self._fns[key]

    def _stage1(self, _definition):
        p = self.p
        up = plan.ancestors(p.nodes, [p.A, *p.frontier])

        def run(images):
            v = kg.execute(up, {id(p.fmodel.inputs[0]): images})
            return [v[id(p.A)]] + [v[id(t)] for t in p.frontier]
        return run

    def _generic(self, definition):
        p, hooks = self.p, plan.special(self.p)
        down = plan.ancestors(p.down, plan.targets(p))

        def run(A, frontier, kidx, target):
            # A (G, H, W, K); kidx (G, R): the filter removed in each row, K = none (the last row)
            G, R = tf.shape(kidx)[0], tf.shape(kidx)[1]
            mask = 1.0 - tf.one_hot(tf.transpose(kidx), p.K, dtype=A.dtype)                # (R, G, K)
            x = A[None] * mask[:, :, None, None, :]                                        # (R, G, H, W, K)
            values = {id(p.A): tf.reshape(x, tf.concat([[R * G], tf.shape(A)[1:]], 0))}
            for t, f in zip(p.frontier, frontier):
                values[id(t)] = tf.tile(f, tf.concat([[R], tf.ones_like(tf.shape(f)[1:])], 0))
            probs, logits = plan.head(p, kg.execute(down, values, hooks))
            shape = lambda x: None if x is None else tf.reshape(x, (R, G, -1))  # noqa: E731
            dead = tf.pad(tf.reduce_all(tf.equal(A, 0.0), axis=(1, 2)), [[0, 0], [0, 1]])  # (G, K+1)
            unchanged = tf.transpose(tf.gather(dead, kidx[:, :-1], batch_dims=1))           # (R-1, G)
            return definitions.finish(definition, shape(probs), shape(logits), target, unchanged)
        return run

    def _closed(self, definition):
        p, cf = self.p, self.p.closed
        dense = cf.dense.operation
        tail = plan.ancestors(cf.tail, plan.targets(p))
        hooks = {k: f for k, f in plan.special(p).items() if k != id(cf.dense)}

        def run(A, target, w):
            # A: the layer's output (B, H, W, K) from the stage-1 function; w: the Dense kernel as (K, P, U)
            B = tf.shape(A)[0]
            # the per-channel layers on A and on an all-zero map, in one batch: f(a) and f(0)
            ext = tf.concat([A, tf.zeros_like(A[:1])], axis=0)
            v_ext = kg.execute(cf.chain, {id(p.A): ext})[id(cf.v)]
            v, v0 = v_ext[:-1], v_ext[-1:]
            z = tf.matmul(v, dense.kernel)
            z = z + dense.bias if dense.use_bias else z
            diff = tf.transpose(tf.reshape(v0 - v, (B, cf.P, p.K)), (2, 0, 1))         # (K, B, P)
            if cf.P > 1:
                delta = tf.matmul(diff, w)                                             # (K, B, U)
                delta = tf.concat([delta, tf.zeros_like(delta[:1])], axis=0)
            else:  # a zero row appended to the small factors: one pass less over the big tensor
                delta = (tf.concat([diff, tf.zeros_like(diff[:1])], axis=0)
                         * tf.concat([w, tf.zeros_like(w[:1])], axis=0))
            rows = z[None] + delta                                     # (K+1, B, U), last row exactly z
            rows = tf.reshape(rows, ((p.K + 1) * B, -1))
            if p.logits.kind == "dense" and p.logits.node is cf.dense:
                values = {id(cf.dense.outputs[0]): rows}    # the logits: its softmax is not needed
            else:
                values = {id(cf.dense.outputs[0]): dense.activation(rows)}
            probs, logits = plan.head(p, kg.execute(tail, values, hooks))
            shape = lambda x: None if x is None else tf.reshape(x, (p.K + 1, B, -1))  # noqa: E731
            unchanged = tf.reduce_all(tf.equal(diff, 0.0), axis=-1)                   # (K, B)
            return definitions.finish(definition, shape(probs), shape(logits), target, unchanged)
        return run


_ENGINES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def engine(model, layer, outputs) -> Engine:
    """The engine of (model, layer, outputs), made once per model and reused."""
    per_model = _ENGINES.setdefault(model, {})
    key = (layer if isinstance(layer, str) else layer.name, outputs)
    if key not in per_model:
        per_model[key] = Engine(plan.plan(model, layer, outputs))
    return per_model[key]


def progress_batches(n: int, size: int, progress, desc: str):
    """Batch starts, with a progress bar (progress=None: shown only once a run has taken 2 s)."""
    starts = range(0, n, size)
    if progress is False or len(starts) < 2:
        return starts
    return tqdm(starts, desc=desc, unit="batch", delay=0 if progress else 2.0)


def closed_batch(p: plan.Plan) -> int:
    """Images per closed-form head call: the largest power of two dividing MICRO_BATCH whose head rows
    fit HEAD_BUDGET, but at least P/4 images when the by-channel kernel is large (VGG16 at 224:
    P = 49), so that reading it is amortised. Fixed by the plan alone (the canonical layout)."""
    widest = max(int(np.prod(n.outputs[0].shape[1:])) for n in [p.closed.dense, *p.closed.tail])
    cap = max(HEAD_BUDGET // ((p.K + 1) * widest), -(-p.closed.P // 4))
    b = runner.MICRO_BATCH
    while b > 1 and b > cap:
        b //= 2
    return b


def _trunk(eng, images):
    """The stage-1 values ([A, *frontier] as numpy) of `images`, MICRO_BATCH images per call."""
    return runner.fixed_batches(eng.fn("stage1", None), [images], runner.MICRO_BATCH)


def run_closed(eng, definition, images, target, step, progress):
    """CI on a closed-form path: the trunk, then the closed-form head on `closed_batch` images per call."""
    p = eng.p
    B = closed_batch(p)
    fn, out, w = eng.fn("closed", definition), [], eng.kernel_by_channel()
    for s in progress_batches(len(images), step, progress, "CI (closed form)"):
        A = _trunk(eng, images[s:s + step])[0]
        out.append(runner.fixed_batches(lambda a, t: fn(a, t, w), [A, target[s:s + step]], B))
    return [np.concatenate(parts) for parts in zip(*out)]


def run_generic(eng, definition, images, target, step, progress):
    """CI on the generic path: the trunk, then the rest of the network on ELEMENT_BUDGET-bounded chunks."""
    p = eng.p
    fn = eng.fn("generic", definition)
    per_row = int(np.prod(p.A.shape[1:]))
    rows = max(2, ELEMENT_BUDGET // per_row)            # ablated copies per call, reference included
    out = []
    for s in progress_batches(len(images), step, progress, "CI (generic)"):
        acts = _trunk(eng, images[s:s + step])
        out.append(_generic_chunks(fn, p.K, acts, target[s:s + step], rows))
    return [np.concatenate(parts) for parts in zip(*out)]


def _generic_chunks(fn, K, acts, target, rows):
    """Call the generic function on chunks of (image, removed filter) rows, each with its reference row."""
    n = len(target)
    if K + 1 <= rows:                                   # whole images per call, a fixed number
        G = min(runner.MICRO_BATCH, rows // (K + 1))
        kidx = tf.constant(np.tile(np.arange(K + 1, dtype=np.int32), (G, 1)))
        return runner.fixed_batches(lambda a, t, *frontier: fn(a, list(frontier), kidx, t),
                                    [acts[0], target, *acts[1:]], G)
    m = rows - 1                                        # filters per call for one image
    ci = np.empty((n, K), np.float32)
    pred, prob, c = (np.empty(n, np.int32), np.empty(n, np.float32), np.empty(n, np.int32))
    for i in range(n):
        a = [tf.constant(x[i:i + 1]) for x in acts]
        for s in range(0, K, m):
            ks = np.full(m + 1, K, np.int32)
            ks[:min(m, K - s)] = np.arange(s, min(s + m, K))
            r = fn(a[0], a[1:], tf.constant(ks[None]), tf.constant(target[i:i + 1]))
            ci[i, s:s + m] = r[0].numpy()[0, :min(m, K - s)]
            pred[i], prob[i], c[i] = r[1].numpy()[0], r[2].numpy()[0], r[3].numpy()[0]
    return [ci, pred, prob, c]


