"""The graph of a Keras model, read in one place: the only module that touches private Keras internals.

The CI engine (`ci`) and the model zoo (`zoo`) need a model's computation graph: its calls in
topological order, what each call read and with which arguments, and whether a layer takes a
``training`` argument. Keras 3 keeps these in private attributes; this module is the one place that
reads them, so that a Keras upgrade that moves them breaks here, loudly (`KerasInternalsError`, and
``tests/test_keras_graph.py`` checks each of them), and nowhere else:

=================================== =========================================================
``Sequential._functional``          the functional graph a Sequential model builds
``Functional._nodes_by_depth``      the calls (nodes) of a functional model, by depth
``Node.arguments.fill_in(values)``  a call's arguments with its KerasTensors replaced by values
``Layer._call_has_training_arg``    whether a layer's ``call`` takes ``training``
=================================== =========================================================

On top of these, the graph helpers both modules share (one copy): `nodes`, `producer`,
`consumers`, `softmax_kind`, `is_nested`, `find_layer`, `layer_paths`, `output_of`, `flatten` and
`graph_of` (the flattened graph, made once per model), `execute` (run calls on values); and the two
rules every module reads a model by: where its logits are (`logits_of`, `find_logits`: the input of
the final softmax) and its default CI layer (`default_ci_layer`: the last feature map with H x W > 1).
A layer may be called several times (a shared head, or a model rebuilt from another's layers), so
every helper works on *nodes* (calls) of one model's graph, never on ``layer.output`` or
``layer.input``, which are those of the layer's first call only.
"""
from __future__ import annotations

import difflib
import weakref
from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import layers as L
from keras import tree

__all__ = ["KerasInternalsError", "functional", "nodes", "fill_in", "accepts_training", "call", "producer",
           "consumers", "softmax_kind", "layer_softmax_kind", "activation_name", "is_nested", "find_layer",
           "layer_paths", "output_of", "flatten", "graph_of", "execute", "Logits", "find_logits", "logits_of",
           "dense_logits", "IDENTITY", "POOLING", "default_ci_layer"]

#: layers that pass their input through in inference (dropout, noise, identity)
IDENTITY = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise,
            L.GaussianDropout, L.AlphaDropout, L.Identity, L.ActivityRegularization)
#: 2-D pooling layers (not a feature map of their own)
POOLING = (L.MaxPooling2D, L.AveragePooling2D, L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)


class KerasInternalsError(RuntimeError):
    """This Keras version lacks an internal that `keras_graph` reads (the adapter needs updating)."""


def _internal(obj, attr: str):
    try:
        return getattr(obj, attr)
    except AttributeError:
        raise KerasInternalsError(
            f"Keras {keras.__version__}: {type(obj).__name__} has no attribute {attr!r}, which "
            "causadv_lib.keras_graph reads to walk a model's graph; this Keras version changed its internals "
            "(update causadv_lib/keras_graph.py, checked by tests/test_keras_graph.py)") from None


# ------------------------------------------------------------------------- private internals
def functional(model):
    """The functional graph of a Keras functional or Sequential model (TypeError for anything else)."""
    if isinstance(model, keras.Sequential):
        fm = _internal(model, "_functional")
        if fm is None:
            raise ValueError(f"Sequential model {model.name!r} has no graph yet: give it a keras.Input first "
                             "(keras.Sequential([keras.Input(shape), ...]))")
        return fm
    if isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth"):
        return model
    if isinstance(model, keras.Model):
        raise TypeError(
            f"expected a Keras functional or Sequential model, got the subclassed model {type(model).__name__!r}: "
            "a subclassed model has no graph of layer calls to split (its call() is Python code). Fix: write it "
            "with the functional API, or, when its call() only chains layers and keras.ops, trace it into one: "
            "inputs = keras.Input(shape); model = keras.Model(inputs, net.call(inputs)) (the same layers and "
            "weights)")
    raise TypeError(f"expected a Keras functional or Sequential model, got {type(model).__name__}")


def nodes(fmodel) -> list:
    """The model's calls (nodes) in topological order, inputs first, InputLayer nodes left out."""
    by_depth = _internal(fmodel, "_nodes_by_depth")
    return [n for d in sorted(by_depth, reverse=True) for n in by_depth[d]
            if n.operation is not None and not n.is_input]


def fill_in(node, values: dict) -> tuple[tuple, dict]:
    """(args, kwargs) of `node`'s call with every KerasTensor replaced by ``values[id(tensor)]``."""
    return _internal(node, "arguments").fill_in(values)


def accepts_training(op) -> bool:
    """Whether `op`'s call takes a ``training`` argument (plain keras.ops operations do not)."""
    if not isinstance(op, L.Layer):
        return False
    return bool(_internal(op, "_call_has_training_arg"))


def call(node, values: dict, training=False) -> list:
    """Run `node` on `values` (id(KerasTensor) -> tensor); its outputs as a list. ``training`` is passed to
    layers that take it (None: leave the call's own arguments alone)."""
    args, kwargs = fill_in(node, values)
    if training is not None and accepts_training(node.operation):
        kwargs = {**kwargs, "training": training}
    return tree.flatten(node.operation(*args, **kwargs))


# ------------------------------------------------------------------------------- graph helpers
def producer(node_list: list, tensor):
    """The node (call) in `node_list` that produced `tensor`, or None (a model input)."""
    return next((n for n in node_list if any(x is tensor for x in n.outputs)), None)


def consumers(node_list: list, tensor) -> list:
    """The nodes in `node_list` that read `tensor`."""
    return [n for n in node_list if any(x is tensor for x in n.input_tensors)]


def activation_name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def softmax_kind(node) -> str | None:
    """How `node` computes a softmax over its last axis: ``"layer"`` (a Softmax layer or an
    Activation("softmax"): its input are the logits), ``"dense"`` (a Dense with softmax activation: its
    pre-activation are the logits), or None (not a recognised softmax).

    ``Softmax(axis=1)`` on a (batch, classes) tensor is a softmax over the last axis and is recognised;
    a softmax over another axis, or hidden in a Lambda or a Python function, is not.
    """
    rank = len(node.input_tensors[0].shape) if node.input_tensors else 0
    return layer_softmax_kind(node.operation, rank)


def layer_softmax_kind(op, rank: int) -> str | None:
    """`softmax_kind` of a layer `op` called on a tensor of rank `rank`."""
    if isinstance(op, L.Softmax):
        axes = op.axis if isinstance(op.axis, (list, tuple)) else [op.axis]
        return "layer" if len(axes) == 1 and rank and axes[0] % rank == rank - 1 else None
    if isinstance(op, L.Activation) and activation_name(op.activation) == "softmax":
        return "layer"
    if isinstance(op, L.Dense) and activation_name(op.activation) == "softmax":
        return "dense"
    return None


def is_nested(op) -> bool:
    """Whether `op` is a functional or Sequential model used as a layer of another model."""
    return isinstance(op, keras.Model) and (isinstance(op, keras.Sequential) or hasattr(op, "_nodes_by_depth"))


def _sublayers(model, prefix: str = ""):
    """(path, layer) of every layer of `model`, nested models' layers as ``outer/inner`` (depth first).

    "Layers" include the graph's plain keras.ops operations (ConvNeXt's residual ``add``): they have
    names and outputs like layers, and can be the CI layer.
    """
    for layer in functional(model).operations:
        if isinstance(layer, L.InputLayer):
            continue
        path = prefix + layer.name
        yield path, layer
        if is_nested(layer):
            yield from _sublayers(layer, path + "/")


def layer_paths(model) -> dict[int, str]:
    """id(layer) -> its name in `model`: the plain name, or ``outer/inner`` inside a nested model."""
    return {id(layer): path for path, layer in _sublayers(model)}


def find_layer(model, name):
    """The layer `name` of `model`: a plain name, a path ``outer/inner`` into nested models, or the plain
    name of a layer inside a nested model when it is unique. ValueError naming the candidates otherwise."""
    if isinstance(name, keras.Operation):
        return name
    if not isinstance(name, str):
        raise TypeError(f"layer must be a layer name or a Layer, got {type(name).__name__}")
    found = dict(_sublayers(model))
    if name in found:
        return found[name]
    by_leaf = [p for p in found if p.rsplit("/", 1)[-1] == name]
    if len(by_leaf) == 1:
        return found[by_leaf[0]]
    if len(by_leaf) > 1:
        raise ValueError(f"layer name {name!r} is ambiguous in model {model.name!r}: {by_leaf}; name one by its path")
    leaves = {}
    for p in found:
        leaves.setdefault(p.rsplit("/", 1)[-1], p)
    close = [leaves[c] for c in difflib.get_close_matches(name.rsplit("/", 1)[-1], list(leaves), n=3, cutoff=0.6)]
    nested = [p for p, lyr in found.items() if is_nested(lyr)]
    raise ValueError(f"layer {name!r} is not a layer of model {model.name!r}"
                     + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
                     + (f"; a layer of a nested model is named 'outer/inner', e.g. "
                        f"{[p for p in found if p.startswith(nested[-1] + '/')][-1]!r}" if nested else ""))


def output_of(model, layer):
    """The KerasTensor that `layer`'s call in `model`'s own graph outputs.

    Unlike ``layer.output`` (the layer's *first* call, possibly in another model), this works on a
    model rebuilt from another's layers (`flatten`, ``keras.Model(base.input, head(base.output))``).
    ValueError when the layer is not called in the graph, is called several times or has several outputs.
    """
    lyr = find_layer(model, layer)
    calls = [n for n in nodes(functional(model)) if n.operation is lyr]
    if not calls:
        raise ValueError(f"layer {lyr.name!r} is not called in the graph of model {model.name!r} "
                         "(is it inside a nested model? use flatten(model) first)")
    if len(calls) != 1 or len(calls[0].outputs) != 1:
        raise ValueError(f"layer {lyr.name!r} is called {len(calls)} times in model {model.name!r} or has several "
                         "outputs; expected one call with one output")
    return calls[0].outputs[0]


# ------------------------------------------------------------------------------------ flatten
def _inline(fmodel, values: dict, training) -> None:
    """Call every layer of `fmodel`'s graph on `values` (symbolic), nested models' layers directly."""
    for n in nodes(fmodel):
        op = n.operation
        args, kwargs = fill_in(n, values)
        if is_nested(op):
            inner = functional(op)
            ins = tree.flatten(args[0] if args else kwargs["inputs"])
            if len(ins) != len(inner.inputs):
                raise ValueError(f"nested model {op.name!r} is called on {len(ins)} tensors; it has "
                                 f"{len(inner.inputs)} inputs")
            sub = {id(t): x for t, x in zip(inner.inputs, ins)}
            _inline(inner, sub, kwargs.get("training", training))
            outs = [sub[id(t)] for t in inner.outputs]
        else:
            if training is not None and accepts_training(op) and kwargs.get("training") is None:
                kwargs = {**kwargs, "training": training}
            outs = tree.flatten(op(*args, **kwargs))
        for x, y in zip(n.outputs, outs):
            values[id(x)] = y


def flatten(model, name: str | None = None):
    """`model` with every nested model (a ``keras.applications`` base inside a Sequential, say) replaced by
    its layers: a functional model whose calls use the very same layers, so it shares every weight.

    A model without nested models is returned unchanged. A nested model called with ``training=False``
    (the usual transfer-learning ``base(x, training=False)``) passes it on to its layers. Layer names must
    be unique across the nesting levels (Keras refuses a model with two layers of one name).
    """
    fm = functional(model)
    if not any(is_nested(n.operation) for n in nodes(fm)):
        return model
    owner = {}
    for path, layer in _sublayers(model):
        if is_nested(layer):
            continue
        first = owner.setdefault(layer.name, (layer, path))
        if first[0] is not layer:
            raise ValueError(f"cannot flatten model {model.name!r}: layers {first[1]!r} and {path!r} share the name "
                             f"{layer.name!r} (Keras needs unique layer names in one model; rename one)")
    values = {id(t): t for t in fm.inputs}
    _inline(fm, values, None)
    outputs = [values[id(t)] for t in fm.outputs]
    inputs = fm.inputs[0] if len(fm.inputs) == 1 else fm.inputs
    return keras.Model(inputs, outputs[0] if len(outputs) == 1 else outputs, name=name or model.name)


_FLAT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def graph_of(model):
    """The functional graph to run `model` by: its own, or, for a model with nested models (a
    ``keras.applications`` base inside a Sequential), `flatten`'s (the same layers and weights), made
    once per model."""
    fm = functional(model)
    if model not in _FLAT:
        flat = flatten(fm)
        _FLAT[model] = None if flat is fm else flat
    return _FLAT[model] or fm


def execute(node_list: list, values: dict, special: dict | None = None) -> dict:
    """Run `node_list` in inference mode on `values` (id(KerasTensor) -> tensor), adding their outputs.

    `special`: id(node) -> hook(node, values) run in place of that node's call."""
    for n in node_list:
        if special and id(n) in special:
            special[id(n)](n, values)
            continue
        for x, y in zip(n.outputs, call(n, values, training=False)):
            values[id(x)] = y
    return values


# ------------------------------------------------------------------------------------- logits
@dataclass(frozen=True)
class Logits:
    """Where the logits (the input of the model's final softmax) are read, if anywhere.

    ``kind``: ``"output"`` (the model outputs logits: ``outputs="logits"``), ``"softmax_input"`` (the
    input of a final Softmax layer or Activation("softmax")), ``"dense"`` (the pre-activation of a final
    Dense with softmax activation, `dense_logits`; the CI engine computes it in place of that Dense), or
    ``"none"`` (unknown: the model's output is used as probabilities). ``tensor``: the KerasTensor whose
    slot holds the logits once the graph is executed (for ``"dense"`` the Dense's output slot, which
    holds them only where a hook computed the pre-activation there); ``node``: the final softmax node
    (the Dense for ``"dense"``).
    """

    kind: str
    tensor: object = None
    node: object = None

    @property
    def known(self) -> bool:
        return self.kind != "none"


def find_logits(node_list: list, output, outputs: str = "probabilities") -> Logits:
    """The one rule for a model's logits: where `node_list` (a graph's calls) computes the logits of
    `output`. ``outputs="logits"``: the output itself; else the input of the call producing `output`
    when it is a softmax layer (`softmax_kind` ``"layer"``), the pre-activation of a softmax Dense, or
    ``"none"``."""
    if outputs == "logits":
        return Logits("output", output)
    n = producer(node_list, output)
    kind = None if n is None else softmax_kind(n)
    if kind == "layer" and len(n.input_tensors) == 1:
        return Logits("softmax_input", n.input_tensors[0], n)
    if kind == "dense":
        return Logits("dense", n.outputs[0], n)
    return Logits("none")


def logits_of(model, outputs: str = "probabilities") -> Logits:
    """`find_logits` on `model`'s own graph and (single) output: its tensors belong to `model`."""
    fm = functional(model)
    return find_logits(nodes(fm), fm.outputs[0], outputs)


def dense_logits(node, values: dict):
    """The pre-activation ``x @ kernel + bias`` of a Dense call `node`, its input read from `values`."""
    op = node.operation
    (x,), _ = fill_in(node, values)
    z = tf.matmul(x, op.kernel)
    return z + op.bias if op.use_bias else z


# ------------------------------------------------------------------------------ default CI layer
def _feature_maps(node_list: list) -> list:
    """Nodes whose output is a feature map: one (batch, H, W, K) output of a layer (or a keras.ops
    operation such as ConvNeXt's residual ``add``) that is not pooling, dropout or an identity."""
    return [n for n in node_list
            if not is_nested(n.operation) and len(n.outputs) == 1
            and len(n.outputs[0].shape) == 4 and not isinstance(n.operation, POOLING + IDENTITY)]


def _spatial(n) -> bool:
    h, w = n.outputs[0].shape[1:3]
    return h is None or w is None or h * w > 1


def default_ci_layer(model) -> str:
    """The default CI layer: the last convolutional feature map with spatial extent.

    The last layer (in topological order) whose output is a (batch, H, W, K) feature map with H x W > 1
    and that is not pooling, dropout or an identity: the last convolution's output after its activation
    (and batchnorm, where it comes after) in the usual architectures. Maps of 1 x 1 are passed over
    where the model has a larger one: a classifier written as 1 x 1 convolutions after global pooling
    (MobileNetV3's ``logits``) is not a feature map. A model whose maps are all 1 x 1 gets its last one.
    Inside nested models the layer is named ``outer/inner`` (`find_layer`).
    """
    maps = _feature_maps(nodes(graph_of(model)))
    if not maps:
        raise ValueError(f"model {model.name!r} has no layer with an (H, W, K) output")
    pick = ([n for n in maps if _spatial(n)] or maps)[-1].operation
    return layer_paths(model).get(id(pick), pick.name)
