"""Registry of models by name: Keras model + preprocessing + class names + default CI layer.

    >>> from causadv_lib import zoo
    >>> zm = zoo.get("vgg16_bn_cifar10")           # built once per process
    >>> probs = zm.predict(images_uint8)             # (N, 10) float32
    >>> zm.model.get_layer(zm.ci_layer).output.shape  # (None, 2, 2, 512)

Entries (`names()`): ``mobilenet_v2_imagenet`` (float rebuild of the quantised TFLite file, the
ImageNet model that runs offline), ``vgg16_imagenet`` (Keras VGG16, needs its weights in the Keras
cache: `ModelUnavailableError` otherwise), ``vgg16_bn_cifar10``, ``resnet20_cifar10``,
``resnet56_cifar10``. `custom` wraps your own Keras classifier (functional or Sequential, nested
models such as a ``keras.applications`` base included, probabilities or logits out) so that it works
wherever a zoo name does; `flatten` rebuilds a model with nested models as one graph of their layers.

Every zoo model is a functional Keras model, float32, without Lambda layers, whose last two layers
are a linear ``Dense`` producing logits (named ``logits``) and a separate ``Softmax`` (``probs``):
the CI code relies on this (see `check_structure`). Input conventions: `causadv_lib.preprocess`.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from .. import data, preprocess
from .. import keras_graph as kg
from ..ci import default_layer
from .keras_apps import ModelUnavailableError
from .tflite import from_tflite  # any TFLite image classifier as a ZooModel (zoo/tflite.py)

__all__ = ["ZooModel", "UnknownModelError", "ModelUnavailableError", "get", "names", "resolve", "custom",
           "from_tflite", "check_structure", "split_softmax", "flatten", "layer_output"]

DATASETS = ("imagenet", "cifar10")


class UnknownModelError(KeyError):
    """No zoo model has this name; the message lists the known names and close matches."""

    def __str__(self) -> str:  # KeyError would print the message repr-quoted
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, eq=False)
class ZooModel:
    """A classifier with everything needed to run it on uint8 RGB images and to compute CI vectors.

    `preprocess`: uint8 RGB images ((N, H, W, 3) array or list of (H, W, 3)) -> float32 model inputs.
    `normalize` (optional): float pixel values in [0, 255] already at `input_shape` -> model inputs
    (for attacks that work on float pixels). `ci_layer`: name of the layer whose output is the
    default CI layer (the last convolution's output after its activation). `geometry` (optional):
    uint8 RGB images -> uint8 (N, *input_shape) at the model's input size (resize/crop only), so that
    ``preprocess(images) == normalize(geometry(images))``. `outputs`: what the wrapped Keras model
    output, ``"probabilities"`` or ``"logits"``; either way `model` outputs probabilities (for a logit
    model, `custom` appends a Softmax layer, whose input are the logits).
    """

    name: str
    model: keras.Model
    preprocess: Callable[..., np.ndarray]
    class_names: tuple[str, ...]
    ci_layer: str
    input_shape: tuple[int, int, int]
    dataset: str | None = None
    normalize: Callable[[np.ndarray], np.ndarray] | None = None
    geometry: Callable[..., np.ndarray] | None = None
    outputs: str = "probabilities"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def predict_inputs(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, classes) float32 of already preprocessed inputs `x`."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"{self.name}: expected inputs of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {x.shape}")
        out = [np.asarray(self.model.predict_on_batch(x[i:i + batch_size]), dtype=np.float32)
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)

    def predict(self, images, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, classes) float32 of uint8 RGB images (preprocessed batch by batch)."""
        imgs = images if isinstance(images, np.ndarray) else list(images)
        if isinstance(imgs, np.ndarray) and imgs.ndim != 4:
            self.preprocess(imgs)  # raises the preprocessing's error for a malformed batch
        out = [self.predict_inputs(self.preprocess(imgs[i:i + batch_size]), batch_size)
               for i in range(0, len(imgs), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)


# --------------------------------------------------------------------------------- structure
def _is_softmax(layer) -> bool:
    """Whether `layer` is a softmax layer over its last axis (`keras_graph.softmax_kind` "layer")."""
    rank = 2
    if isinstance(layer, keras.layers.Softmax):
        try:
            rank = len(layer.output.shape)   # the rank it was called on (its first call)
        except (AttributeError, ValueError):
            pass
    return kg.layer_softmax_kind(layer, rank) == "layer"


def _producer(model: keras.Model, tensor):
    """The layer whose call in `model`'s own graph produced `tensor` (None for an input)."""
    n = kg.producer(kg.nodes(kg.functional(model)), tensor)
    return None if n is None else n.operation


def _final_node(model):
    """The call that produces the model's (single) output."""
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
    node = _final_node(model)
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


def _free_name(model, name: str) -> str:
    taken = {lyr.name for lyr in model.layers}
    k, out = 1, name
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    return out


def split_softmax(model: keras.Model, name: str | None = None) -> keras.Model:
    """`model` ending in Dense(softmax) rebuilt to end in Dense(linear) ``logits`` -> Softmax ``probs``.

    The new Dense holds a copy of the old one's weights; everything before it is shared. A model
    that already ends in a linear Dense and a Softmax layer is returned unchanged.
    """
    if not check_structure(model):
        return model
    node = _final_node(model)
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


# ---------------------------------------------------------------------------------- entries
def _zoo_model(name, model, pre, norm, classes, ci, dataset, geometry=None) -> ZooModel:
    zm = ZooModel(name, model, pre, tuple(classes), ci, tuple(model.input_shape[1:]), dataset, norm, geometry)
    problems = check_structure(model)
    if problems or model.outputs[0].shape[-1] != len(zm.class_names):
        raise RuntimeError(f"zoo model {name} is malformed: {problems or 'class count differs from the output'}")
    return zm


def _mobilenet_v2_imagenet() -> ZooModel:
    from . import mobilenet_tflite as m
    return _zoo_model("mobilenet_v2_imagenet", m.build(data.path("mobilenet_v2_tflite")),
                      preprocess.preprocess_mobilenet_v2, preprocess.normalize_mobilenet_v2,
                      data.imagenet_class_names(), m.CI_LAYER, "imagenet",
                      functools.partial(preprocess.geometry_imagenet, model="mobilenet_v2_imagenet"))


def _mobilenet_v1_imagenet() -> ZooModel:
    return from_tflite(data.path("mobilenet_v1_tflite"), preprocess.preprocess_mobilenet_v1,
                       class_names=data.imagenet_class_names(), name="mobilenet_v1_imagenet", dataset="imagenet",
                       normalize=preprocess.normalize_mobilenet_v1, geometry=preprocess.geometry_mobilenet_v1)


def _vgg16_imagenet() -> ZooModel:
    from . import keras_apps as m
    return _zoo_model("vgg16_imagenet", m.build(m.find_weights()), preprocess.preprocess_vgg16_imagenet,
                      preprocess.normalize_vgg16_imagenet, data.imagenet_class_names(), m.CI_LAYER, "imagenet",
                      functools.partial(preprocess.geometry_imagenet, model="vgg16_imagenet"))


def _vgg16_bn_cifar10() -> ZooModel:
    from . import vgg_cifar as m
    model = m.build(data.path("vgg16_bn_cifar10_weights"), data.path("vgg16_bn_cifar10_json"))
    return _zoo_model("vgg16_bn_cifar10", model, preprocess.preprocess_vgg16_bn_cifar10,
                      preprocess.normalize_vgg16_bn_cifar10, data.CIFAR10_CLASSES, m.CI_LAYER, "cifar10",
                      functools.partial(preprocess.geometry_cifar, model="vgg16_bn_cifar10"))


def _resnet_cifar10(arch: str) -> Callable[[], ZooModel]:
    def build() -> ZooModel:
        from . import resnet_cifar as m
        return _zoo_model(f"{arch}_cifar10", m.build(arch, data.path(f"{arch}_akamaster_weights")),
                          preprocess.preprocess_resnet_cifar10, preprocess.normalize_resnet_cifar10,
                          data.CIFAR10_CLASSES, m.ci_layer(arch), "cifar10",
                          functools.partial(preprocess.geometry_cifar, model=f"{arch}_cifar10"))
    return build


#: name -> builder, in the order `names()` lists them
BUILDERS: dict[str, Callable[[], ZooModel]] = {
    "mobilenet_v2_imagenet": _mobilenet_v2_imagenet,
    "mobilenet_v1_imagenet": _mobilenet_v1_imagenet,
    "vgg16_imagenet": _vgg16_imagenet,
    "vgg16_bn_cifar10": _vgg16_bn_cifar10,
    "resnet20_cifar10": _resnet_cifar10("resnet20"),
    "resnet56_cifar10": _resnet_cifar10("resnet56"),
}


def names() -> list[str]:
    """Names of the zoo models."""
    return list(BUILDERS)


def _unknown(name) -> UnknownModelError:
    close = difflib.get_close_matches(str(name), BUILDERS, n=3, cutoff=0.4)
    return UnknownModelError(f"unknown zoo model {name!r}; known models: {', '.join(BUILDERS)}"
                             + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))


@functools.cache
def _get(name: str) -> ZooModel:
    return BUILDERS[name]()


def get(name: str) -> ZooModel:
    """The zoo model `name`, built on first use and cached for the process."""
    if not isinstance(name, str) or name not in BUILDERS:
        raise _unknown(name)
    return _get(name)


def resolve(model: str | ZooModel) -> ZooModel:
    """A ZooModel from a zoo name or a ZooModel (returned unchanged)."""
    if isinstance(model, ZooModel):
        return model
    if isinstance(model, str):
        return get(model)
    raise TypeError(f"expected a zoo model name ({', '.join(BUILDERS)}) or a ZooModel (see zoo.custom), "
                    f"got {type(model).__name__}")



def name_of(zm) -> str:
    """The name to show for a zoo model (or a look-alike): its name, else its Keras model's."""
    return getattr(zm, "name", None) or getattr(getattr(zm, "model", None), "name", "?")


def for_pixels(zm):
    """A zoo model (or zoo name) that runs on float pixels in [0, 255]: it must have `normalize`.

    ValueError naming what is wrong for anything else (checked by attribute, so look-alikes pass).
    """
    if isinstance(zm, str):
        return get(zm)
    if not hasattr(zm, "model") or not hasattr(zm, "input_shape"):
        raise ValueError(f"expected a zoo model (zoo.get(name) or zoo.custom(...)), got {type(zm).__name__}")
    if getattr(zm, "normalize", None) is None:
        raise ValueError(f"model {name_of(zm)}: has no `normalize` (float pixels in [0, 255] -> model inputs); "
                         "build it with zoo.custom(..., normalize=...)")
    return zm

OUTPUTS = ("probabilities", "logits")


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
    `ci_layer` defaults to `ci.default_layer` (the last convolutional feature map with H x W > 1).
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
    node = _final_node(model)
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
    classes = tuple(str(i) for i in range(n_out)) if class_names is None else tuple(class_names)
    if len(classes) != n_out:
        raise ValueError(f"custom model {name!r}: {len(classes)} class names for {n_out} outputs")
    ci = ci_layer or default_layer(model)
    try:
        kg.output_of(model, ci)
    except ValueError as e:
        raise ValueError(f"custom model {name!r}: no layer named {ci!r} (ci_layer) that is called once in the "
                         f"model: {e}") from None
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"custom model {name!r}: dataset {dataset!r}; expected one of {DATASETS} or None")
    return ZooModel(name, model, preprocess, classes, ci, tuple(model.input_shape[1:]), dataset, normalize,
                    geometry, outputs=outputs)
