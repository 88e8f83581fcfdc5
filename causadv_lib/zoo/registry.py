"""The registry of zoo models by name: `names`, `get` (built once per process), `resolve`, `BUILDERS`."""
from __future__ import annotations

import difflib
import functools
from typing import Callable

from .. import data, preprocess
from . import keras_apps, mobilenet_tflite, resnet_cifar, vgg_cifar
from .model import ZooModel, name_of
from .structure import check_structure
from .tflite import from_tflite


class UnknownModelError(KeyError):
    """No zoo model has this name; the message lists the known names and close matches."""

    def __str__(self) -> str:  # KeyError would print the message repr-quoted
        return str(self.args[0]) if self.args else ""


def _zoo_model(name, model, pre, norm, classes, ci, dataset, geometry=None) -> ZooModel:
    zm = ZooModel(name, model, pre, tuple(classes), ci, tuple(model.input_shape[1:]), dataset, norm, geometry)
    problems = check_structure(model)
    if problems or model.outputs[0].shape[-1] != len(zm.class_names):
        raise RuntimeError(f"zoo model {name} is malformed: {problems or 'class count differs from the output'}")
    return zm


def _mobilenet_v2_imagenet() -> ZooModel:
    return _zoo_model("mobilenet_v2_imagenet", mobilenet_tflite.build(data.path("mobilenet_v2_tflite")),
                      preprocess.preprocess_mobilenet_v2, preprocess.normalize_mobilenet_v2,
                      data.imagenet_class_names(), mobilenet_tflite.CI_LAYER, "imagenet",
                      functools.partial(preprocess.geometry_imagenet, model="mobilenet_v2_imagenet"))


def _mobilenet_v1_imagenet() -> ZooModel:
    return from_tflite(data.path("mobilenet_v1_tflite"), preprocess.preprocess_mobilenet_v1,
                       class_names=data.imagenet_class_names(), name="mobilenet_v1_imagenet", dataset="imagenet",
                       normalize=preprocess.normalize_mobilenet_v1, geometry=preprocess.geometry_mobilenet_v1)


def _vgg16_imagenet() -> ZooModel:
    return _zoo_model("vgg16_imagenet", keras_apps.build(keras_apps.find_weights()),
                      preprocess.preprocess_vgg16_imagenet, preprocess.normalize_vgg16_imagenet,
                      data.imagenet_class_names(), keras_apps.CI_LAYER, "imagenet",
                      functools.partial(preprocess.geometry_imagenet, model="vgg16_imagenet"))


def _vgg16_bn_cifar10() -> ZooModel:
    model = vgg_cifar.build(data.path("vgg16_bn_cifar10_weights"), data.path("vgg16_bn_cifar10_json"))
    return _zoo_model("vgg16_bn_cifar10", model, preprocess.preprocess_vgg16_bn_cifar10,
                      preprocess.normalize_vgg16_bn_cifar10, data.CIFAR10_CLASSES, vgg_cifar.CI_LAYER, "cifar10",
                      functools.partial(preprocess.geometry_cifar, model="vgg16_bn_cifar10"))


def _resnet_cifar10(arch: str) -> Callable[[], ZooModel]:
    def build() -> ZooModel:
        return _zoo_model(f"{arch}_cifar10", resnet_cifar.build(arch, data.path(f"{arch}_akamaster_weights")),
                          preprocess.preprocess_resnet_cifar10, preprocess.normalize_resnet_cifar10,
                          data.CIFAR10_CLASSES, resnet_cifar.ci_layer(arch), "cifar10",
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
