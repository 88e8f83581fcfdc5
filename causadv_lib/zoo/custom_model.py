"""`custom`: your own Keras classifier wrapped as a `ZooModel`, so that it works wherever a zoo name does."""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from .. import keras_graph as kg
from .model import DATASETS, OUTPUTS, ZooModel
from .structure import final_node, split_softmax


def _free_name(model, name: str) -> str:
    taken = {lyr.name for lyr in model.layers}
    k, out = 1, name
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    return out


def custom(model: keras.Model, preprocess: Callable[..., np.ndarray], *, outputs: str = "probabilities",
           class_names=None, ci_layer=None, name: str = "custom", dataset: str | None = None,
           normalize=None, geometry=None) -> ZooModel:
    """Wrap your own Keras classifier so that it works wherever a zoo name does.

    `model`: a functional or Sequential Keras model with one (N, H, W, C) input and one (N, classes)
    output. Nested models (a ``keras.applications`` base inside your model) are flattened into one graph
    of their layers (`flatten`, weights shared), so that every layer, the base's included, can be the
    CI layer. A subclassed model is refused with a TypeError saying how to trace it into a functional one.

    `outputs`: what `model` outputs. ``"probabilities"`` (default): it must end in a softmax over the
    classes, i.e. a ``Softmax`` layer or ``Activation("softmax")`` (its input are the logits), or a Dense
    with softmax activation (split into Dense(linear) + Softmax by `split_softmax`). ``"logits"``: the
    model outputs logits; a Softmax layer (``probs``) is appended, so the ZooModel's `model` outputs
    probabilities like every zoo model, and its logits, the Softmax's input, serve every CI definition
    and the attacks. ZooModel.outputs records which it was.

    `preprocess` maps uint8 RGB images to the model's float32 inputs; `normalize` (optional, for the
    attacks) float pixels in [0, 255] -> model inputs; `geometry` (optional) uint8 images -> uint8 at the
    model's input size, so that ``preprocess(images) == normalize(geometry(images))``. `class_names` default to "0", "1", ...;
    `ci_layer` defaults to `keras_graph.default_ci_layer` (= `ci.default_layer`) (the last convolutional feature map with H x W > 1).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"custom: expected a keras.Model, got {type(model).__name__}")
    kg.functional(model)  # TypeError naming the fix for a subclassed model
    if not callable(preprocess):
        raise ValueError(f"custom: preprocess must be a callable (uint8 images -> float32 inputs), got {preprocess!r}")
    if outputs not in OUTPUTS:
        raise ValueError(f"custom model {name!r}: outputs={outputs!r}; expected one of {OUTPUTS}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"custom model {name!r}: expected one input and one output, got {len(model.inputs)} "
                         f"and {len(model.outputs)}")
    if len(model.outputs[0].shape) != 2:
        raise ValueError(f"custom model {name!r}: expected a (batch, classes) output, got shape "
                         f"{tuple(model.outputs[0].shape)}")
    model = kg.flatten(model)
    node = final_node(model)
    kind = None if node is None else kg.softmax_kind(node)
    last = "its input" if node is None else f"{type(node.operation).__name__} layer {node.operation.name!r}"
    if outputs == "logits":
        if kind is not None:
            raise ValueError(f"custom model {name!r}: outputs='logits', but the model ends in a softmax ({last}); "
                             "pass outputs='probabilities'")
        logits = model.outputs[0]
    elif kind == "dense":
        model = split_softmax(model)
        logits = None
    elif kind == "layer":
        # a Softmax whose first call is elsewhere (a head shared with another model): give this model its
        # own, so that `layer.input` and `layer.output` of its final layer are this model's (attacks read them)
        logits = None if node.operation.output is model.outputs[0] else node.input_tensors[0]
    else:
        raise ValueError(f"custom model {name!r}: the output is made by {last}, not by a softmax over the "
                         "classes (a Softmax layer, Activation('softmax') or a Dense with softmax activation). "
                         "If the model outputs logits, pass outputs='logits'; if its softmax is hidden in a "
                         "Lambda or a Python function, end the model in keras.layers.Softmax() instead")
    if logits is not None:
        out = keras.layers.Softmax(name=_free_name(model, "probs"))(logits)
        model = keras.Model(model.inputs[0], out, name=model.name)
    n_out = model.outputs[0].shape[-1]
    if n_out is None or n_out < 2:
        raise ValueError(f"custom model {name!r}: {n_out} output class(es); a classifier needs at least 2 classes "
                         "(attacks, targeted or not, and the prototypes compare classes)")
    classes = tuple(str(i) for i in range(n_out)) if class_names is None else tuple(class_names)
    if len(classes) != n_out:
        raise ValueError(f"custom model {name!r}: {len(classes)} class names for {n_out} outputs")
    ci = ci_layer or kg.default_ci_layer(model)
    try:
        kg.output_of(model, ci)
    except ValueError as e:
        raise ValueError(f"custom model {name!r}: no layer named {ci!r} (ci_layer) that is called once in the "
                         f"model: {e}") from None
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"custom model {name!r}: dataset {dataset!r}; expected one of {DATASETS} or None")
    input_shape = tuple(model.input_shape[1:])
    if normalize is not None:
        _check_normalize(name, normalize, input_shape)
    return ZooModel(name, model, preprocess, classes, ci, input_shape, dataset, normalize, geometry, outputs=outputs)


def _check_normalize(name: str, normalize, input_shape) -> None:
    """`normalize` must map float pixels in [0, 255] to finite model inputs of the same image size: checked on
    a black, a white and a mid-grey image, so a ``p / 0.0`` is refused here and not found by an attack."""
    if not callable(normalize):
        raise ValueError(f"custom model {name!r}: normalize must be a callable (float pixels in [0, 255] -> model "
                         f"inputs), got {normalize!r}")
    probe = np.stack([np.full(input_shape, v, np.float32) for v in (0.0, 127.5, 255.0)])
    try:
        out = np.asarray(normalize(probe))
    except Exception as e:  # noqa: BLE001 - the user's function: say which call failed
        raise ValueError(f"custom model {name!r}: normalize failed on float pixels of shape {probe.shape}: "
                         f"{type(e).__name__}: {e}") from e
    if out.shape != probe.shape[:1] + tuple(input_shape):
        raise ValueError(f"custom model {name!r}: normalize maps pixels of shape {probe.shape} to {out.shape}; "
                         f"expected (N, {', '.join(map(str, input_shape))})")
    if not np.issubdtype(out.dtype, np.number) or not np.isfinite(out).all():
        raise ValueError(f"custom model {name!r}: normalize returns non-finite values (NaN or Inf) on black, grey "
                         "and white images; it must map every pixel value in [0, 255] to a finite model input")
