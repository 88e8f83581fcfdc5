"""Registry of models by name: Keras model + preprocessing + class names + default CI layer.

    >>> from causadv_lib import zoo
    >>> zm = zoo.get("vgg16_bn_cifar10")           # built once per process
    >>> probs = zm.predict(images_uint8)             # (N, 10) float32
    >>> zm.model.get_layer(zm.ci_layer).output.shape  # (None, 2, 2, 512)

Entries (`names()`): ``mobilenet_v2_imagenet`` (float rebuild of the quantised TFLite file, the
ImageNet model that runs offline), ``vgg16_imagenet`` (Keras VGG16, needs its weights in the Keras
cache: `ModelUnavailableError` otherwise), ``vgg16_bn_cifar10``, ``resnet20_cifar10``,
``resnet56_cifar10``. `custom` wraps your own functional Keras model so that it works wherever a zoo
name does.

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
from ..ci import default_layer
from .keras_apps import ModelUnavailableError
from .tflite import from_tflite  # any TFLite image classifier as a ZooModel (zoo/tflite.py)

__all__ = ["ZooModel", "UnknownModelError", "ModelUnavailableError", "get", "names", "resolve", "custom",
           "from_tflite", "check_structure", "split_softmax"]

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
    ``preprocess(images) == normalize(geometry(images))``.
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
    if isinstance(layer, keras.layers.Softmax):
        return True
    act = getattr(layer, "activation", None)
    return isinstance(layer, keras.layers.Activation) and getattr(act, "__name__", "") == "softmax"


def _producer(model: keras.Model, tensor):
    return next((lyr for lyr in model.layers if getattr(lyr, "output", None) is tensor), None)


def check_structure(model: keras.Model) -> list[str]:
    """Problems that keep `model` from being a zoo model (empty list: fine).

    Required: functional, one input, one rank-2 output made by a Softmax (or Activation("softmax"))
    layer whose input is a Dense layer with linear activation; no Lambda layers.
    """
    problems = []
    if not isinstance(model, keras.Model) or not hasattr(model, "inputs") or model.inputs is None:
        return [f"expected a functional keras.Model, got {type(model).__name__}"]
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        problems.append(f"expected one input and one output, got {len(model.inputs)} and {len(model.outputs)}")
        return problems
    lambdas = [lyr.name for lyr in model.layers if isinstance(lyr, keras.layers.Lambda)]
    if lambdas:
        problems.append(f"Lambda layers are not allowed: {lambdas}")
    if len(model.outputs[0].shape) != 2:
        problems.append(f"expected a (batch, classes) output, got shape {model.outputs[0].shape}")
    last = _producer(model, model.outputs[0])
    if last is None or not _is_softmax(last):
        problems.append(f"the last layer must be a Softmax layer, got {type(last).__name__} {getattr(last, 'name', '')!r}"
                        " (split_softmax() fixes a Dense with softmax activation)")
        return problems
    dense = _producer(model, last.input)
    if not isinstance(dense, keras.layers.Dense) or getattr(dense.activation, "__name__", "") != "linear":
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
    last = _producer(model, model.outputs[0])
    if not isinstance(last, keras.layers.Dense) or getattr(last.activation, "__name__", "") != "softmax":
        raise ValueError(f"{model.name}: cannot split the softmax off a {type(last).__name__} layer {last.name!r}; "
                         "expected a final Dense layer with softmax activation")
    taken = {lyr.name for lyr in model.layers}
    lname, pname = ("logits", "probs") if not {"logits", "probs"} & taken else (last.name + "_logits", last.name + "_probs")
    dense = keras.layers.Dense(last.units, use_bias=last.use_bias, name=lname)
    logits = dense(last.input)
    dense.set_weights(last.get_weights())
    out = keras.layers.Softmax(name=pname)(logits)
    return keras.Model(model.inputs, out, name=name or model.name)


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


def custom(model: keras.Model, preprocess: Callable[..., np.ndarray], *, class_names=None, ci_layer=None,
           name: str = "custom", dataset: str | None = None, normalize=None) -> ZooModel:
    """Wrap your own functional Keras classifier so that it works wherever a zoo name does.

    `preprocess` maps uint8 RGB images to the model's float32 inputs. A final Dense with softmax
    activation is split into Dense(linear) + Softmax (`split_softmax`); any other ending that is not
    Dense(linear) -> Softmax raises ValueError. `class_names` default to "0", "1", ...; `ci_layer`
    defaults to `ci.default_layer` (the last rank-4, non-pooling layer).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"custom: expected a keras.Model, got {type(model).__name__}")
    if not callable(preprocess):
        raise ValueError(f"custom: preprocess must be a callable (uint8 images -> float32 inputs), got {preprocess!r}")
    problems = check_structure(model)
    if problems:
        try:
            model = split_softmax(model)
        except ValueError:
            raise ValueError(f"custom model {name!r}: " + "; ".join(problems)) from None
    n_out = model.outputs[0].shape[-1]
    classes = tuple(str(i) for i in range(n_out)) if class_names is None else tuple(class_names)
    if len(classes) != n_out:
        raise ValueError(f"custom model {name!r}: {len(classes)} class names for {n_out} outputs")
    ci = ci_layer or default_layer(model)
    try:
        model.get_layer(ci)
    except ValueError:
        raise ValueError(f"custom model {name!r}: no layer named {ci!r} (ci_layer)") from None
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"custom model {name!r}: dataset {dataset!r}; expected one of {DATASETS} or None")
    return ZooModel(name, model, preprocess, classes, ci, tuple(model.input_shape[1:]), dataset, normalize)
