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
it for the closed-form head, `NAIVE_BATCH` for the naive reference; short batches are padded), so an
image's CI vector is bit-identical whatever ``batch_size`` is and whichever images share the call.
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

Example::

    res = counterfactual_information(zm.model, zm.preprocess(images), zm.ci_layer)
    res.ci            # (N, K) float32
    res.path          # "closed_form_flatten_dense"
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf
from keras import layers as L
from keras import tree

from . import keras_graph as kg

DEFINITIONS = ("probability", "log_probability", "logit", "authors")
OUTPUTS = ("probabilities", "logits")
METHODS = ("auto", "generic", "naive")
PATHS = ("closed_form_gap", "closed_form_flatten_dense", "generic", "naive")
#: float32 elements per batch of ablated copies on the generic path (128 MiB)
ELEMENT_BUDGET = 1 << 25
#: float32 elements per tensor of closed-form head rows (64 MiB). Measured on MobileNetV2 (K = 1280,
#: 1000 classes) in the canonical layout: 8 images per head call (64 MiB) gave CI / forward = 1.41 against
#: 1.57 with 2 images (16 MiB); 128 MiB was measured 2x slower earlier (the rows leave the cache)
HEAD_BUDGET = 1 << 24
#: The canonical layout. TensorFlow picks a different float32 kernel for a different batch shape, and a
#: probability saturated near 1.0 turns those last-bit differences into different zero sets. So every
#: compiled call sees a fixed number of images, whatever the caller's `batch_size` and whichever other
#: images share the call (short batches are padded): the network up to the CI layer always runs on
#: MICRO_BATCH images, the closed-form head on a fixed divisor of it, the naive reference on NAIVE_BATCH.
#: An image's CI vector is then bit-identical however it was batched (tested on the zoo models).
MICRO_BATCH = 16
NAIVE_BATCH = 4

_IDENTITY = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise,
             L.GaussianDropout, L.AlphaDropout, L.Identity, L.ActivityRegularization)
_ELEMENTWISE = {"relu", "relu6", "elu", "selu", "gelu", "sigmoid", "tanh", "linear", "silu", "swish",
                "leaky_relu", "hard_sigmoid", "hard_silu", "hard_swish", "softplus", "softsign",
                "exponential", "mish", "celu", "squareplus", "sparse_plus", "log_sigmoid", "tanh_shrink"}
_POOLING = (L.MaxPooling2D, L.AveragePooling2D, L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)


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


# ------------------------------------------------------------------------------------------ graph
# The graph is read through `keras_graph`, the one module that touches private Keras internals.
_functional = kg.functional
_nodes = kg.nodes
_producer = kg.producer
_act_name = kg.activation_name
_FLAT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _graph(model):
    """The functional graph the engine runs: the model's own, or, for a model with nested models (a
    ``keras.applications`` base inside a Sequential), `keras_graph.flatten`'s (the same layers and
    weights), built once per model."""
    fm = kg.functional(model)
    if model not in _FLAT:
        flat = kg.flatten(fm)
        _FLAT[model] = None if flat is fm else flat
    return _FLAT[model] or fm


def _subgraph(nodes: list, tensor) -> tuple[list, list]:
    """Nodes downstream of `tensor` (topological order) and the other tensors they read (the frontier)."""
    reached, down = {id(tensor)}, []
    for n in nodes:
        if any(id(x) in reached for x in n.input_tensors):
            down.append(n)
            reached.update(id(x) for x in n.outputs)
    frontier = {}
    for n in down:
        for x in n.input_tensors:
            if id(x) not in reached:
                frontier.setdefault(id(x), x)
    return down, list(frontier.values())


def _ancestors(nodes: list, targets: list) -> list:
    """The nodes needed to compute `targets`, in topological order."""
    need, keep = {id(t) for t in targets}, []
    for n in reversed(nodes):
        if any(id(x) in need for x in n.outputs):
            keep.append(n)
            need.update(id(x) for x in n.input_tensors)
    return keep[::-1]


def _execute(nodes: list, values: dict, special: dict | None = None) -> dict:
    """Run `nodes` in inference mode on `values` (id(KerasTensor) -> tensor), adding their outputs."""
    for n in nodes:
        if special and id(n) in special:
            special[id(n)](n, values)
            continue
        for x, y in zip(n.outputs, kg.call(n, values, training=False)):
            values[id(x)] = y
    return values


def _feature_maps(nodes: list) -> list:
    """Nodes whose output is a feature map: one (batch, H, W, K) output of a layer (or a keras.ops
    operation such as ConvNeXt's residual ``add``) that is not pooling, dropout or an identity."""
    return [n for n in nodes
            if not kg.is_nested(n.operation) and len(n.outputs) == 1
            and len(n.outputs[0].shape) == 4 and not isinstance(n.operation, _POOLING + _IDENTITY)]


def _spatial(n) -> bool:
    h, w = n.outputs[0].shape[1:3]
    return h is None or w is None or h * w > 1


def default_layer(model) -> str:
    """The default CI layer: the last convolutional feature map with spatial extent.

    The last layer (in topological order) whose output is a (batch, H, W, K) feature map with H x W > 1
    and that is not pooling, dropout or an identity: the last convolution's output after its activation
    (and batchnorm, where it comes after) in the usual architectures. Maps of 1 x 1 are passed over
    where the model has a larger one: a classifier written as 1 x 1 convolutions after global pooling
    (MobileNetV3's ``logits``) is not a feature map. A model whose maps are all 1 x 1 gets its last one.
    Inside nested models the layer is named ``outer/inner`` (`keras_graph.find_layer`).
    """
    maps = _feature_maps(kg.nodes(_graph(model)))
    if not maps:
        raise ValueError(f"model {model.name!r} has no layer with an (H, W, K) output")
    pick = ([n for n in maps if _spatial(n)] or maps)[-1].operation
    return kg.layer_paths(model).get(id(pick), pick.name)


# ------------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class _Logits:
    """Where the logits (the input of the model's final softmax) are read, if anywhere.

    ``kind``: ``"output"`` (the model outputs logits: ``outputs="logits"``), ``"softmax_input"`` (the
    input of a final Softmax layer or Activation("softmax")), ``"dense"`` (the pre-activation of a final
    Dense with softmax activation: a hook computes it in place of that Dense, see `_special`), or
    ``"none"`` (unknown: the model's output is used as probabilities). ``tensor``: the KerasTensor whose
    slot holds the logits once the graph is executed (for ``"dense"`` the Dense's output slot, which the
    hook fills with the pre-activation); ``node``: the final softmax node (the Dense for ``"dense"``).
    """

    kind: str
    tensor: object = None
    node: object = None

    @property
    def known(self) -> bool:
        return self.kind != "none"


@dataclass(frozen=True)
class _ClosedForm:
    """The closed-form pattern after the layer: A -> chain (per-channel layers, then the reduction and
    identity layers) -> v -> dense -> tail."""

    chain: list                 # nodes from A to v
    v: object                   # the tensor entering the Dense
    dense: object               # the first Dense node
    tail: list                  # the nodes after the Dense
    reduction: str              # "gap" | "flatten"
    P: int                      # entries of v per channel (H x W for flatten, 1 for gap)


@dataclass
class _Plan:
    """Everything about (model, layer, outputs) that the paths need, found once."""

    fmodel: object              # the functional graph that runs (flattened where the model nests models)
    nodes: list
    layer: object               # the CI layer
    layer_name: str             # its name in the model (``outer/inner`` inside a nested model)
    A: object                   # the layer's output KerasTensor
    K: int
    down: list                  # nodes after the layer
    frontier: list              # tensors the nodes after the layer read besides A
    output_tensor: object       # the model's output KerasTensor
    outputs: str                # what the model outputs: "probabilities" | "logits"
    logits: _Logits
    closed: _ClosedForm | None = None
    closed_refusal: str = ""    # why the closed form does not apply


def _plan(model, layer, outputs: str) -> _Plan:
    fm = _graph(model)
    if len(fm.inputs) != 1 or len(fm.outputs) != 1:
        raise ValueError(f"model {model.name!r}: expected one input and one output, got "
                         f"{len(fm.inputs)} and {len(fm.outputs)}")
    for op in fm.operations:
        cd = getattr(op, "compute_dtype", "float32")
        if isinstance(op, L.Layer) and not isinstance(op, L.InputLayer) and cd != "float32":
            raise ValueError(f"layer {op.name!r} computes in {cd}: CI must be computed in float32 "
                             "(load the model under the 'float32' dtype policy)")
    nodes = kg.nodes(fm)
    lyr = kg.find_layer(model, layer)
    name = kg.layer_paths(model).get(id(lyr), lyr.name)
    if kg.is_nested(lyr):
        raise ValueError(f"layer {name!r} of model {model.name!r} is a nested model, not one layer; name a layer "
                         f"inside it, e.g. {name + '/' + default_layer(lyr)!r}")
    found = [n for n in nodes if n.operation is lyr]
    if not found:
        raise ValueError(f"layer {name!r} is not a layer of model {model.name!r}")
    if len(found) != 1 or len(found[0].outputs) != 1:
        raise ValueError(f"layer {name!r} is called {len(found)} times or has several outputs; "
                         "expected a layer called once with one output")
    lnode = found[0]
    A = lnode.outputs[0]
    if len(A.shape) != 4 or any(d is None for d in A.shape[1:]):
        raise ValueError(f"layer {name!r} has output shape {tuple(A.shape)}; expected (batch, H, W, K) "
                         "with known H, W, K (channels last)")
    down, frontier = _subgraph(nodes, A)
    O = fm.outputs[0]
    if not any(x is O for n in down for x in n.outputs):
        raise ValueError(f"the output of model {model.name!r} does not depend on layer {name!r}")
    plan = _Plan(fm, nodes, lyr, name, A, int(A.shape[-1]), down, frontier, O, outputs,
                 _find_logits(nodes, O, outputs))
    plan.closed, plan.closed_refusal = _match_closed_form(plan)
    return plan


def _find_logits(nodes, O, outputs) -> _Logits:
    if outputs == "logits":
        return _Logits("output", O)
    n = kg.producer(nodes, O)
    kind = None if n is None else kg.softmax_kind(n)
    if kind == "layer" and len(n.input_tensors) == 1:
        return _Logits("softmax_input", n.input_tensors[0], n)
    if kind == "dense":
        return _Logits("dense", n.outputs[0], n)
    return _Logits("none")


def _match_closed_form(p: _Plan):
    """The closed-form pattern after the layer (`_ClosedForm`), or (None, why not).

    Accepted: A -> per-channel layers* -> (Flatten | GlobalAveragePooling2D) -> identity layers* ->
    Dense -> anything that reads only that Dense's output. Each tensor up to the Dense has exactly one
    consumer, and the layers are channels-last.
    """
    chain, t, src = [], p.A, p.layer_name
    reduction = None
    while True:
        cs = kg.consumers(p.down, t)
        if t is p.output_tensor:
            return None, f"the output of layer {src!r} is the model's output"
        if len(cs) != 1 or len(cs[0].input_tensors) != 1 or len(cs[0].outputs) != 1:
            what = ", ".join(repr(n.operation.name) for n in cs) or "none"
            return None, (f"the output of layer {src!r} does not feed exactly one single-input, single-output "
                          f"layer (it feeds {what})")
        n, op = cs[0], cs[0].operation
        if reduction is None and _per_channel(op):
            pass
        elif reduction is None and isinstance(op, L.GlobalAveragePooling2D) and not op.keepdims \
                and op.data_format == "channels_last":
            reduction = "gap"
        elif reduction is None and isinstance(op, L.Flatten) and len(t.shape) == 4 \
                and op.data_format == "channels_last":
            reduction = "flatten"
        elif reduction is not None and isinstance(op, _IDENTITY):
            pass
        elif reduction is not None and isinstance(op, L.Dense) and len(t.shape) == 2 \
                and not getattr(op, "lora_enabled", False) and getattr(op, "quantization_mode", None) is None:
            dense = n
            break
        else:
            return None, f"layer {op.name!r} ({type(op).__name__}) is not in the closed-form pattern"
        chain.append(n)
        t, src = n.outputs[0], op.name
    tail, frontier = _subgraph(p.nodes, dense.outputs[0])
    if frontier or len(p.down) != len(chain) + 1 + len(tail):
        return None, (f"layers after Dense {dense.operation.name!r} read other tensors, or layer "
                      f"{p.layer_name!r} has other consumers")
    lg = p.logits
    if lg.kind == "softmax_input" and not (lg.tensor is dense.outputs[0] or any(
            x is lg.tensor for n in tail for x in n.outputs)):
        return None, f"the logits are not computed after Dense {dense.operation.name!r}"
    return _ClosedForm(chain, t, dense, tail, reduction, int(t.shape[-1]) // p.K), ""


def _per_channel(op) -> bool:
    """Layers whose output channel k depends only on input channel k (in inference)."""
    if isinstance(op, _IDENTITY) or isinstance(op, (L.ReLU, L.LeakyReLU, L.ELU, L.PReLU)):
        return True
    if isinstance(op, L.Activation):
        return _act_name(op.activation) in _ELEMENTWISE
    if isinstance(op, L.BatchNormalization):
        return op.axis in (-1, 3, [-1], [3])
    if isinstance(op, (L.MaxPooling2D, L.AveragePooling2D)):
        return op.data_format == "channels_last"
    return False


# ------------------------------------------------------------------------------------------ scores
def _prob(logits, c):
    """p_c = exp(-log(sum_j exp(z_j - z_c))), computed alike in every row of a batch.

    Not ``1 / sum``: in a compiled graph TensorFlow turns that into an approximate reciprocal whose
    result depends on the row's position in the batch (0.99999994 in one row, 1.0 in another for the
    same logits); the softmax kernel has the same flaw. This form gives exactly 1.0 whenever the sum
    rounds to 1, so saturated removals have a CI of exactly 0 on every path.
    """
    zc = tf.gather(logits, c, batch_dims=1)
    return tf.exp(-tf.math.log(tf.reduce_sum(tf.exp(logits - zc[:, None]), axis=-1)))


def _log_prob(logits, c):
    """log p_c = -log1p(sum_{j != c} exp(z_j - z_c)), stable and exact near p_c = 1."""
    zc = tf.gather(logits, c, batch_dims=1)
    hit = tf.one_hot(c, tf.shape(logits)[-1], on_value=True, off_value=False)
    d = tf.where(hit, tf.constant(-np.inf, logits.dtype), logits - zc[:, None])
    m = tf.reduce_max(d, axis=-1)
    return -tf.nn.softplus(m + tf.math.log(tf.reduce_sum(tf.exp(d - m[:, None]), axis=-1)))


def _row_scores(definition, probs, logits, c):
    """(reference score, removal score) per row: CI = reference(unablated row) - removal(ablated row).

    From the logits where they are known (`_prob`, `_log_prob`), else from the model's probabilities.
    """
    if logits is None:
        if definition in ("logit", "log_probability"):
            raise ValueError(f"definition {definition!r} needs the logits")
        s = tf.gather(probs, c, batch_dims=1)
        return s, (tf.reduce_max(probs, axis=-1) if definition == "authors" else s)
    if definition == "probability":
        s = _prob(logits, c)
        return s, s
    if definition == "authors":
        return _prob(logits, c), _prob(logits, tf.argmax(logits, axis=-1, output_type=tf.int32))
    s = tf.gather(logits, c, batch_dims=1) if definition == "logit" else _log_prob(logits, c)
    return s, s


def _finish(definition, probs, logits, target, unchanged, compare_outputs=False):
    """CI from (R, G, C) outputs (R rows per input, the last unablated) -> (ci (G, R-1), pred, prob, c).

    Uses the logits where known (then `probs` may be None). `unchanged` (R-1, G): removals that leave
    the tensor entering the rest of the network bit-identical (a dead channel); their CI is exactly 0
    by definition, which removes the last-bit noise a matrix product can add to a row depending on its
    position in the batch. `compare_outputs`: also treat bit-identical output rows as unchanged.
    """
    top = probs if logits is None else logits
    R, G = tf.shape(top)[0], tf.shape(top)[1]
    pred = tf.argmax(top[-1], axis=-1, output_type=tf.int32)
    c = tf.where(target >= 0, target, pred)
    flat = lambda x: None if x is None else tf.reshape(x, (R * G, -1))  # noqa: E731
    ref_s, abl_s = _row_scores(definition, flat(probs), flat(logits), tf.tile(c, [R]))
    ref_s, abl_s = tf.reshape(ref_s, (R, G)), tf.reshape(abl_s, (R, G))
    if compare_outputs:
        unchanged |= tf.reduce_all(tf.equal(top[:-1], top[-1:]), axis=-1)
    ci = tf.where(unchanged, tf.zeros_like(abl_s[:-1]), ref_s[-1:] - abl_s[:-1])
    last = lambda x: None if x is None else x[-1]  # noqa: E731
    prob = _row_scores("probability", last(probs), last(logits), pred)[0]
    return tf.transpose(ci), pred, prob, c


def _targets(p: _Plan) -> list:
    """The tensors the rest of the network must produce: the logits where known, else the output."""
    return [p.logits.tensor if p.logits.known else p.output_tensor]


def _head(p: _Plan, values: dict):
    """(probabilities or None, logits or None) from executed values: logits where known."""
    if p.logits.known:
        return None, values[id(p.logits.tensor)]
    return values[id(p.output_tensor)], None


def _dense_logits(node, values):
    op = node.operation
    (x,), _ = kg.fill_in(node, values)
    z = tf.matmul(x, op.kernel)
    return z + op.bias if op.use_bias else z


def _special(p: _Plan) -> dict:
    """Hook that computes the logits of a softmax Dense in its output slot (the softmax is not needed)."""
    if p.logits.kind != "dense":
        return {}

    def dense_softmax(n, values):
        values[id(n.outputs[0])] = _dense_logits(n, values)
    return {id(p.logits.node): dense_softmax}


# ------------------------------------------------------------------------------------------ paths
class _Engine:
    """Compiled functions of one (model, layer, outputs), built once and reused (no retracing)."""

    def __init__(self, plan: _Plan):
        self.p = plan
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

    def fn(self, kind, definition):
        key = (kind, definition)
        if key not in self._fns:
            make = {"stage1": self._stage1, "generic": self._generic, "closed": self._closed}[kind]
            self._fns[key] = tf.function(make(definition), autograph=False)
        return self._fns[key]

    def _stage1(self, _definition):
        p = self.p
        up = _ancestors(p.nodes, [p.A, *p.frontier])

        def run(images):
            v = _execute(up, {id(p.fmodel.inputs[0]): images})
            return [v[id(p.A)]] + [v[id(t)] for t in p.frontier]
        return run

    def _generic(self, definition):
        p, special = self.p, _special(self.p)
        down = _ancestors(p.down, _targets(p))

        def run(A, frontier, kidx, target):
            # A (G, H, W, K); kidx (G, R): the filter removed in each row, K = none (the last row)
            G, R = tf.shape(kidx)[0], tf.shape(kidx)[1]
            mask = 1.0 - tf.one_hot(tf.transpose(kidx), p.K, dtype=A.dtype)                # (R, G, K)
            x = A[None] * mask[:, :, None, None, :]                                        # (R, G, H, W, K)
            values = {id(p.A): tf.reshape(x, tf.concat([[R * G], tf.shape(A)[1:]], 0))}
            for t, f in zip(p.frontier, frontier):
                values[id(t)] = tf.tile(f, tf.concat([[R], tf.ones_like(tf.shape(f)[1:])], 0))
            probs, logits = _head(p, _execute(down, values, special))
            shape = lambda x: None if x is None else tf.reshape(x, (R, G, -1))  # noqa: E731
            dead = tf.pad(tf.reduce_all(tf.equal(A, 0.0), axis=(1, 2)), [[0, 0], [0, 1]])  # (G, K+1)
            unchanged = tf.transpose(tf.gather(dead, kidx[:, :-1], batch_dims=1))           # (R-1, G)
            return _finish(definition, shape(probs), shape(logits), target, unchanged)
        return run

    def _closed(self, definition):
        p, cf = self.p, self.p.closed
        dense = cf.dense.operation
        tail = _ancestors(cf.tail, _targets(p))
        special = {k: f for k, f in _special(p).items() if k != id(cf.dense)}

        def run(A, target, w):
            # A: the layer's output (B, H, W, K) from the stage-1 function; w: the Dense kernel as (K, P, U)
            B = tf.shape(A)[0]
            # the per-channel layers on A and on an all-zero map, in one batch: f(a) and f(0)
            ext = tf.concat([A, tf.zeros_like(A[:1])], axis=0)
            v_ext = _execute(cf.chain, {id(p.A): ext})[id(cf.v)]
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
            probs, logits = _head(p, _execute(tail, values, special))
            shape = lambda x: None if x is None else tf.reshape(x, (p.K + 1, B, -1))  # noqa: E731
            unchanged = tf.reduce_all(tf.equal(diff, 0.0), axis=-1)                   # (K, B)
            return _finish(definition, shape(probs), shape(logits), target, unchanged)
        return run


_ENGINES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _engine(model, layer, outputs) -> _Engine:
    per_model = _ENGINES.setdefault(model, {})
    key = (layer if isinstance(layer, str) else layer.name, outputs)
    if key not in per_model:
        per_model[key] = _Engine(_plan(model, layer, outputs))
    return per_model[key]


def _batches(n: int, size: int, progress, desc: str):
    """Batch starts, with a progress bar (progress=None: shown only once a run has taken 2 s)."""
    starts = range(0, n, size)
    if progress is False or len(starts) < 2:
        return starts
    from tqdm.auto import tqdm
    return tqdm(starts, desc=desc, unit="batch", delay=0 if progress else 2.0)


def _pad(x: np.ndarray, size: int) -> np.ndarray:
    """Pad the first axis to `size` by repeating the last entry (fixed shapes: no retracing)."""
    if len(x) == size:
        return x
    return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)], axis=0)


def _step(batch_size: int, micro: int) -> int:
    """Images per step of the outer loop: `batch_size` rounded up to whole micro-batches."""
    return -(-batch_size // micro) * micro


def _micro(images, micro: int):
    """(start, count, padded tf constant) for each fixed-size micro-batch of `images`."""
    for s in range(0, len(images), micro):
        n = min(micro, len(images) - s)
        yield s, n, tf.constant(_pad(np.asarray(images[s:s + n], np.float32), micro))


def _closed_batch(p: _Plan) -> int:
    """Images per closed-form head call: the largest power of two dividing MICRO_BATCH whose head rows
    fit HEAD_BUDGET, but at least P/4 images when the by-channel kernel is large (VGG16 at 224:
    P = 49), so that reading it is amortised. Fixed by the plan alone (the canonical layout)."""
    widest = max(int(np.prod(n.outputs[0].shape[1:])) for n in [p.closed.dense, *p.closed.tail])
    cap = max(HEAD_BUDGET // ((p.K + 1) * widest), -(-p.closed.P // 4))
    b = MICRO_BATCH
    while b > 1 and b > cap:
        b //= 2
    return b


def images_per_call(model, layer=None, *, outputs: str = "probabilities") -> int:
    """Images per compiled head call of `counterfactual_information` (method="auto"): MICRO_BATCH, or on
    the closed-form paths a divisor of it that keeps the head's (K+1) x images rows within HEAD_BUDGET.
    Fixed by (model, layer) alone: the caller's `batch_size` never changes the layout."""
    p = _engine(model, default_layer(model) if layer is None else layer, outputs).p
    return _closed_batch(p) if p.closed else MICRO_BATCH


def _trunk(eng, images):
    """The stage-1 values ([A, *frontier] as numpy) of `images`, MICRO_BATCH images per call."""
    stage1, out = eng.fn("stage1", None), []
    for _, n, x in _micro(images, MICRO_BATCH):
        out.append([a.numpy()[:n] for a in stage1(x)])
    return [np.concatenate(parts) for parts in zip(*out)]


def _run_closed(eng, definition, images, target, step, progress):
    p = eng.p
    B = _closed_batch(p)
    fn, out, w = eng.fn("closed", definition), [], eng.kernel_by_channel()
    for s in _batches(len(images), step, progress, "CI (closed form)"):
        A = _trunk(eng, images[s:s + step])[0]
        t = target[s:s + step]
        for i in range(0, len(A), B):
            n = min(B, len(A) - i)
            res = fn(tf.constant(_pad(A[i:i + n], B)), tf.constant(_pad(t[i:i + n], B)), w)
            out.append([r.numpy()[:n] for r in res])
    return [np.concatenate(parts) for parts in zip(*out)]


def _run_generic(eng, definition, images, target, step, progress):
    p = eng.p
    fn = eng.fn("generic", definition)
    per_row = int(np.prod(p.A.shape[1:]))
    rows = max(2, ELEMENT_BUDGET // per_row)            # ablated copies per call, reference included
    out = []
    for s in _batches(len(images), step, progress, "CI (generic)"):
        acts = _trunk(eng, images[s:s + step])
        out.append(_generic_chunks(fn, p.K, acts, target[s:s + step], rows))
    return [np.concatenate(parts) for parts in zip(*out)]


def _generic_chunks(fn, K, acts, target, rows):
    """Call the generic function on chunks of (image, removed filter) rows, each with its reference row."""
    n = len(target)
    if K + 1 <= rows:                                   # whole images per call, a fixed number
        G = min(MICRO_BATCH, rows // (K + 1))
        kidx = np.tile(np.arange(K + 1, dtype=np.int32), (G, 1))
        res = []
        for s in range(0, n, G):
            m = min(G, n - s)
            r = fn(tf.constant(_pad(acts[0][s:s + m], G)), [tf.constant(_pad(a[s:s + m], G)) for a in acts[1:]],
                   tf.constant(kidx), tf.constant(_pad(target[s:s + m], G)))
            res.append([x.numpy()[:m] for x in r])
        return [np.concatenate(parts) for parts in zip(*res)]
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


# ------------------------------------------------------------------------------------------ naive
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


def _naive_model(p: _Plan):
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


def _run_naive(eng, definition, images, target, filters, step, progress):
    p = eng.p
    if "naive" not in eng._fns:
        m, mask = _naive_model(p)
        eng._fns["naive"] = (tf.function(lambda x: m(x, training=False), autograph=False), mask)
    f, mask = eng._fns["naive"]
    B, out = NAIVE_BATCH, []
    for s0 in _batches(len(images), step, progress, "CI (naive)"):
        for s, n, x in _micro(images[s0:s0 + step], B):
            rows = []
            for k in [*filters, None]:                  # the unablated pass last, same arithmetic
                mask.mask.assign(np.where(np.arange(p.K) == k, 0.0, 1.0).astype(np.float32))
                rows.append(f(x))
            mask.mask.assign(np.ones(p.K, np.float32))
            if "logits" in rows[0]:                     # the logits where known, else the probabilities
                probs, logits = None, tf.stack([r["logits"] for r in rows])
            else:
                probs, logits = tf.stack([r["output"] for r in rows]), None
            none = tf.zeros((len(filters), B), tf.bool)  # separate passes of one shape: no batch effects
            t = tf.constant(_pad(target[s0 + s:s0 + s + n], B))
            res = _finish(definition, probs, logits, t, none, True)
            out.append([r.numpy()[:n] for r in res])
    return [np.concatenate(parts) for parts in zip(*out)]


# ------------------------------------------------------------------------------------------ API
def check_batch_size(batch_size, name: str = "batch_size") -> int:
    """`batch_size` as a positive int, or a ValueError naming it and the bad value."""
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{name}={batch_size!r}; expected a positive integer")
    return int(batch_size)


def _check_images(images, model_name: str, want: tuple) -> np.ndarray:
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


def _check_target(target, n: int, C: int) -> np.ndarray:
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


def _check_probability_output(eng, model, images: np.ndarray, outputs: str) -> None:
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
    probs = _batched(_forward(model, outputs, False), images[:MICRO_BATCH], MICRO_BATCH)[0]
    sums = probs.sum(axis=1)
    if probs.min() < -1e-6 or probs.max() > 1 + 1e-6 or np.abs(sums - 1).max() > 1e-3:
        raise ValueError(f"outputs='probabilities', but the output of model {model.name!r} is not a probability "
                         f"vector (row sums {sums[:3].round(4).tolist()}, values in [{probs.min():.3g}, "
                         f"{probs.max():.3g}]); pass outputs='logits' for a model that outputs logits")


def _check(model, images, layer, target, definition, outputs, method, batch_size):
    if definition not in DEFINITIONS:
        raise ValueError(f"definition={definition!r}; expected one of {DEFINITIONS}")
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs={outputs!r}; expected one of {OUTPUTS}")
    if method not in METHODS:
        raise ValueError(f"method={method!r}; expected one of {METHODS}")
    check_batch_size(batch_size)
    layer = default_layer(model) if layer is None else layer
    eng = _engine(model, layer, outputs)
    if definition in ("logit", "log_probability") and not eng.p.logits.known:
        raise ValueError(f"definition={definition!r} needs the logits, but the output of model {model.name!r} "
                         "is not a softmax (layer or Dense activation) whose input could be read; "
                         "pass outputs='logits' if the model outputs logits")
    images = _check_images(images, model.name, tuple(eng.p.fmodel.inputs[0].shape[1:]))
    target = _check_target(target, len(images), int(eng.p.output_tensor.shape[-1]))
    _check_probability_output(eng, model, images, outputs)
    return eng, images, target


def layout_key() -> tuple:
    """Everything about the canonical layout that can change a CI bit (part of every cache key)."""
    return ("layout", MICRO_BATCH, NAIVE_BATCH, ELEMENT_BUDGET, HEAD_BUDGET)


def counterfactual_information(model, images, layer=None, *, target=None, definition: str = "probability",
                               outputs: str = "probabilities", method: str = "auto", batch_size: int = 32,
                               cache: bool = False, progress: bool | None = None) -> CIResult:
    """CI of every filter of `layer` for each of `images` (already-preprocessed float model inputs).

    layer: name or Layer with an (H, W, K) output; None = `default_layer(model)`.
    target: class (int or (N,) ints) whose CI is computed; None = the predicted class.
    definition: one of DEFINITIONS (module docstring); outputs: "probabilities" (the model ends in a
    softmax) or "logits" (it outputs logits). method: "auto" (closed form where the graph allows it,
    else generic), "generic", or "naive" (the reference: one full forward pass per filter).
    batch_size: images per step of the loop (progress bar and memory); it never changes a result: every
    compiled call runs the canonical layout (MICRO_BATCH), so an image's CI vector is bit-identical
    whatever the batch size and whichever images share the call.
    cache: reuse CI vectors stored under `config.cache_dir()/ci`, keyed by the model (architecture and
    weights), the layer, the input bytes, the target, the definition, outputs, method, the layout and the
    library version (`cache.py`): a hit is bit-identical to recomputing. Off by default; notebooks turn it on.
    progress: a progress bar over batches (None: only for runs longer than 2 s).
    An empty batch gives an empty result of the right shape.
    """
    eng, images, target = _check(model, images, layer, target, definition, outputs, method, batch_size)
    p = eng.p
    path = "naive" if method == "naive" else (
        _closed_path(p) if method == "auto" and p.closed else "generic")
    if not len(images):
        return _empty(p, definition, path)
    key = None
    if cache:
        from . import __version__, cache as ccache
        key = ccache.key("ci", ccache.model_fingerprint(model), p.layer_name, images, target, definition,
                         outputs, method, layout_key(), __version__)
        hit = ccache.load("ci", key, required=("ci", "predicted", "probability", "target", "path"))
        if hit is not None:
            return _result(hit["ci"], hit["predicted"], hit["probability"], hit["target"], definition,
                           p.layer_name, str(hit["path"]))
    step = _step(batch_size, MICRO_BATCH)
    if path == "naive":
        ci, pred, prob, c = _run_naive(eng, definition, images, target, list(range(p.K)),
                                       _step(batch_size, NAIVE_BATCH), progress)
    elif path == "generic":
        ci, pred, prob, c = _run_generic(eng, definition, images, target, step, progress)
    else:
        ci, pred, prob, c = _run_closed(eng, definition, images, target, step, progress)
    res = _result(ci, pred, prob, c, definition, p.layer_name, path)
    if key is not None:
        ccache.save("ci", key, {"ci": res.ci, "predicted": res.predicted, "probability": res.probability,
                                "target": res.target, "path": np.array(path)})
    return res


def _empty(p: _Plan, definition: str, path: str, filters=None) -> CIResult:
    K = p.K if filters is None else len(filters)
    e = np.zeros(0, np.int64)
    return _result(np.zeros((0, K), np.float32), e, np.zeros(0, np.float32), e, definition, p.layer_name, path,
                   filters)


def reference_ablation(model, images, layer=None, *, filters=None, target=None, definition: str = "probability",
                       outputs: str = "probabilities", batch_size: int = 32, progress: bool | None = None
                       ) -> CIResult:
    """The reference: CI of `filters` (default all) by one full forward pass of a masked model per filter."""
    eng, images, target = _check(model, images, layer, target, definition, outputs, "naive", batch_size)
    ks = list(range(eng.p.K)) if filters is None else [int(k) for k in filters]
    if any(not 0 <= k < eng.p.K for k in ks):
        raise ValueError(f"filters must be in [0, {eng.p.K}), got {ks}")
    if not len(images):
        return _empty(eng.p, definition, "naive", np.asarray(ks))
    ci, pred, prob, c = _run_naive(eng, definition, images, target, ks, _step(batch_size, NAIVE_BATCH), progress)
    return _result(ci, pred, prob, c, definition, eng.p.layer_name, "naive", np.asarray(ks))


def _result(ci, pred, prob, c, definition, layer, path, filters=None) -> CIResult:
    ci = np.asarray(ci, np.float32)
    return CIResult(ci=ci, predicted=np.asarray(pred, np.int64), probability=np.asarray(prob, np.float32),
                    target=np.asarray(c, np.int64), definition=definition, layer=layer, path=path,
                    filters=np.arange(ci.shape[1]) if filters is None else filters)


def num_filters(model, layer=None) -> int:
    """K, the number of channels of `layer`'s output (default `default_layer(model)`)."""
    return _engine(model, default_layer(model) if layer is None else layer, "probabilities").p.K


def closed_form_pattern(model, layer=None, outputs: str = "probabilities", *, reason: bool = False):
    """The closed-form path `method="auto"` takes for (model, layer), or None (the generic path).

    reason=True: (path or None, why the closed form was refused or "").
    """
    p = _engine(model, default_layer(model) if layer is None else layer, outputs).p
    path = None if p.closed is None else _closed_path(p)
    return (path, p.closed_refusal) if reason else path


def _closed_path(p: _Plan) -> str:
    return "closed_form_gap" if p.closed.reduction == "gap" else "closed_form_flatten_dense"


def _forward(model, outputs: str, with_logits: bool):
    """Compiled forward pass: probabilities, or (probabilities, logits or None). Cached per model."""
    per_model = _ENGINES.setdefault(model, {})
    key = ("forward", outputs, with_logits)
    if key not in per_model:
        fm = _graph(model)
        if not with_logits:
            soft = outputs == "logits"
            f = (lambda x: tf.nn.softmax(fm(x, training=False))) if soft else (lambda x: fm(x, training=False))
        else:
            nodes = kg.nodes(fm)
            if len(fm.inputs) != 1 or len(fm.outputs) != 1:
                raise ValueError(f"model {model.name!r}: expected one input and one output")
            O = fm.outputs[0]
            lg = _find_logits(nodes, O, outputs)

            def f(x):
                values = _execute(nodes, {id(fm.inputs[0]): x})
                if lg.kind == "dense":      # no hook here: the output slot holds the probabilities
                    logits = _dense_logits(lg.node, values)
                else:
                    logits = values[id(lg.tensor)] if lg.known else None
                probs = values[id(O)] if outputs == "probabilities" else tf.nn.softmax(logits)
                return (probs, tf.zeros_like(probs[:, :0]) if logits is None else logits)
        per_model[key] = tf.function(f, autograph=False)
    return per_model[key]


def _batched(f, images, batch_size: int):
    """Apply `f` to `images` (any sliceable array-like, read `batch_size` images at a time) in fixed
    MICRO_BATCH-image calls (the canonical layout: the result never depends on `batch_size`)."""
    out = []
    step = _step(batch_size, MICRO_BATCH)
    for s0 in range(0, len(images), step):
        for _, n, x in _micro(np.asarray(images[s0:s0 + step], np.float32), MICRO_BATCH):
            out.append([r.numpy()[:n] for r in tf.nest.flatten(f(x))])
    return [np.concatenate(parts) for parts in zip(*out)]


def predict_probabilities(model, images, *, outputs: str = "probabilities", batch_size: int = 64) -> np.ndarray:
    """Class probabilities of `images`: the model's compiled forward pass in fixed-size batches.

    With ``outputs="logits"`` the softmax of the model's output. `images` may be any sliceable
    array-like (e.g. a memory map): it is read batch by batch.
    """
    check_batch_size(batch_size)
    if len(images) == 0:
        raise ValueError("no images")
    return _batched(_forward(model, outputs, False), images, batch_size)[0]


def predict_with_logits(model, images, *, outputs: str = "probabilities", batch_size: int = 64):
    """(probabilities (N, C), logits (N, C) or None where the model's logits cannot be read)."""
    check_batch_size(batch_size)
    if len(images) == 0:
        raise ValueError("no images")
    probs, logits = _batched(_forward(model, outputs, True), images, batch_size)
    return probs, (logits if logits.shape[1] else None)
