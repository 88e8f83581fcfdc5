"""The graph structure every zoo model has (a linear ``Dense`` ``logits``, then a ``Softmax``): checking
it, splitting a softmax off a Dense, flattening nested models, reading a layer's tensor in a graph."""
from __future__ import annotations

import keras

from .. import keras_graph as kg


def final_node(model):
    """The call (Keras node) that produces the model's (single) output."""
    return kg.producer(kg.nodes(kg.functional(model)), model.outputs[0])


def check_structure(model: keras.Model) -> list[str]:
    """Problems that keep `model` from being a zoo model (empty list: fine).

    Required: functional, one input, one rank-2 output made by a Softmax (or Activation("softmax"))
    layer over the last axis whose input is a Dense layer with linear activation; no Lambda layers.
    (`custom` asks less of your own models: any final softmax layer, see there.)
    """
    problems = []
    try:
        kg.functional(model)
    except (TypeError, ValueError) as e:
        return [str(e)]
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        problems.append(f"expected one input and one output, got {len(model.inputs)} and {len(model.outputs)}")
        return problems
    lambdas = [lyr.name for lyr in model.layers if isinstance(lyr, keras.layers.Lambda)]
    if lambdas:
        problems.append(f"Lambda layers are not allowed: {lambdas}")
    if len(model.outputs[0].shape) != 2:
        problems.append(f"expected a (batch, classes) output, got shape {model.outputs[0].shape}")
    node = final_node(model)
    last = None if node is None else node.operation
    if node is None or kg.softmax_kind(node) != "layer":
        problems.append(f"the last layer must be a Softmax layer, got {type(last).__name__} {getattr(last, 'name', '')!r}"
                        " (split_softmax() fixes a Dense with softmax activation)")
        return problems
    nodes = kg.nodes(kg.functional(model))
    dense_node = kg.producer(nodes, node.input_tensors[0])
    dense = None if dense_node is None else dense_node.operation
    if not isinstance(dense, keras.layers.Dense) or kg.activation_name(dense.activation) != "linear":
        problems.append(f"the Softmax must follow a Dense layer with linear activation (logits), got "
                        f"{type(dense).__name__} {getattr(dense, 'name', '')!r}"
                        + (f" with activation {dense.activation.__name__}" if isinstance(dense, keras.layers.Dense) else ""))
    return problems



def split_softmax(model: keras.Model, name: str | None = None) -> keras.Model:
    """`model` ending in Dense(softmax) rebuilt to end in Dense(linear) ``logits`` -> Softmax ``probs``.

    The new Dense holds a copy of the old one's weights; everything before it is shared. A model
    that already ends in a linear Dense and a Softmax layer is returned unchanged.
    """
    if not check_structure(model):
        return model
    node = final_node(model)
    last = None if node is None else node.operation
    if node is None or kg.softmax_kind(node) != "dense":
        raise ValueError(f"{model.name}: cannot split the softmax off a {type(last).__name__} layer "
                         f"{getattr(last, 'name', '')!r}; expected a final Dense layer with softmax activation")
    taken = {lyr.name for lyr in model.layers}
    lname, pname = ("logits", "probs") if not {"logits", "probs"} & taken else (last.name + "_logits", last.name + "_probs")
    dense = keras.layers.Dense(last.units, use_bias=last.use_bias, name=lname)
    logits = dense(node.input_tensors[0])
    dense.set_weights(last.get_weights())
    out = keras.layers.Softmax(name=pname)(logits)
    return keras.Model(model.inputs, out, name=name or model.name)


def flatten(model: keras.Model, name: str | None = None) -> keras.Model:
    """`model` with its nested models (e.g. a ``keras.applications`` base inside a Sequential) replaced
    by their layers, sharing every weight: one functional graph whose layers the CI engine can ablate.

    ``flat = zoo.flatten(keras.Sequential([keras.Input(s), base, GlobalAveragePooling2D(), Dense(10),
    Softmax()]))``: ``flat.get_layer("out_relu")`` is the base's layer. A model without nested models is
    returned unchanged. `custom` and `ci` flatten by themselves; see `keras_graph.flatten`.
    """
    return kg.flatten(model, name)


def layer_output(model: keras.Model, layer) -> "keras.KerasTensor":
    """The output tensor of `layer`'s call in `model`'s graph: use it instead of ``layer.output`` (the
    layer's *first* call, possibly in another model) on a flattened or rebuilt model."""
    return kg.output_of(model, layer)

