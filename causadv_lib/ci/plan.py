"""The plan of one (model, layer, outputs): the graph around the CI layer, where the logits are read, and
whether the closed-form pattern follows the layer; found once, before anything runs.

The graph is read through `keras_graph`, the one module that touches private Keras internals; the
logits location is `keras_graph.find_logits`'s rule.
"""
from __future__ import annotations

from dataclasses import dataclass

from keras import layers as L

from .. import keras_graph as kg

#: the paths a CI vector can take (`CIResult.path`)
PATHS = ("closed_form_gap", "closed_form_flatten_dense", "generic", "naive")

_ELEMENTWISE = {"relu", "relu6", "elu", "selu", "gelu", "sigmoid", "tanh", "linear", "silu", "swish",
                "leaky_relu", "hard_sigmoid", "hard_silu", "hard_swish", "softplus", "softsign",
                "exponential", "mish", "celu", "squareplus", "sparse_plus", "log_sigmoid", "tanh_shrink"}


@dataclass(frozen=True)
class ClosedForm:
    """The closed-form pattern after the layer: A -> chain (per-channel layers, then the reduction and
    identity layers) -> v -> dense -> tail."""

    chain: list                 # nodes from A to v
    v: object                   # the tensor entering the Dense
    dense: object               # the first Dense node
    tail: list                  # the nodes after the Dense
    reduction: str              # "gap" | "flatten"
    P: int                      # entries of v per channel (H x W for flatten, 1 for gap)


@dataclass
class Plan:
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
    logits: kg.Logits
    closed: ClosedForm | None = None
    closed_refusal: str = ""    # why the closed form does not apply


def subgraph(nodes: list, tensor) -> tuple[list, list]:
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


def ancestors(nodes: list, targets: list) -> list:
    """The nodes needed to compute `targets`, in topological order."""
    need, keep = {id(t) for t in targets}, []
    for n in reversed(nodes):
        if any(id(x) in need for x in n.outputs):
            keep.append(n)
            need.update(id(x) for x in n.input_tensors)
    return keep[::-1]


def plan(model, layer, outputs: str) -> Plan:
    """The `Plan` of (model, layer, outputs); a ValueError naming what does not fit."""
    fm = kg.graph_of(model)
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
                         f"inside it, e.g. {name + '/' + kg.default_ci_layer(lyr)!r}")
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
    down, frontier = subgraph(nodes, A)
    O = fm.outputs[0]
    if not any(x is O for n in down for x in n.outputs):
        raise ValueError(f"the output of model {model.name!r} does not depend on layer {name!r}")
    p = Plan(fm, nodes, lyr, name, A, int(A.shape[-1]), down, frontier, O, outputs,
             kg.find_logits(nodes, O, outputs))
    p.closed, p.closed_refusal = _match_closed_form(p)
    return p


def _match_closed_form(p: Plan):
    """The closed-form pattern after the layer (`ClosedForm`), or (None, why not).

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
        elif reduction is not None and isinstance(op, kg.IDENTITY):
            pass
        elif reduction is not None and isinstance(op, L.Dense) and len(t.shape) == 2 \
                and not getattr(op, "lora_enabled", False) and getattr(op, "quantization_mode", None) is None:
            dense = n
            break
        else:
            return None, f"layer {op.name!r} ({type(op).__name__}) is not in the closed-form pattern"
        chain.append(n)
        t, src = n.outputs[0], op.name
    tail, frontier = subgraph(p.nodes, dense.outputs[0])
    if frontier or len(p.down) != len(chain) + 1 + len(tail):
        return None, (f"layers after Dense {dense.operation.name!r} read other tensors, or layer "
                      f"{p.layer_name!r} has other consumers")
    lg = p.logits
    if lg.kind == "softmax_input" and not (lg.tensor is dense.outputs[0] or any(
            x is lg.tensor for n in tail for x in n.outputs)):
        return None, f"the logits are not computed after Dense {dense.operation.name!r}"
    return ClosedForm(chain, t, dense, tail, reduction, int(t.shape[-1]) // p.K), ""


def _per_channel(op) -> bool:
    """Layers whose output channel k depends only on input channel k (in inference)."""
    if isinstance(op, kg.IDENTITY) or isinstance(op, (L.ReLU, L.LeakyReLU, L.ELU, L.PReLU)):
        return True
    if isinstance(op, L.Activation):
        return kg.activation_name(op.activation) in _ELEMENTWISE
    if isinstance(op, L.BatchNormalization):
        return op.axis in (-1, 3, [-1], [3])
    if isinstance(op, (L.MaxPooling2D, L.AveragePooling2D)):
        return op.data_format == "channels_last"
    return False


def closed_path(p: Plan) -> str:
    """The name of the closed-form path of plan `p` (which has one)."""
    return "closed_form_gap" if p.closed.reduction == "gap" else "closed_form_flatten_dense"


# ------------------------------------------------------------------------- reading the logits
def targets(p: Plan) -> list:
    """The tensors the rest of the network must produce: the logits where known, else the output."""
    return [p.logits.tensor if p.logits.known else p.output_tensor]


def head(p: Plan, values: dict):
    """(probabilities or None, logits or None) from executed values: logits where known."""
    if p.logits.known:
        return None, values[id(p.logits.tensor)]
    return values[id(p.output_tensor)], None


def special(p: Plan) -> dict:
    """Hook that computes the logits of a softmax Dense in its output slot (the softmax is not needed)."""
    if p.logits.kind != "dense":
        return {}

    def dense_softmax(n, values):
        values[id(n.outputs[0])] = kg.dense_logits(n, values)
    return {id(p.logits.node): dense_softmax}
