"""The registry of zoo models by name: `names`, `get` (built once per process), `BUILDERS`; models of your own
under a name of yours: `register`, `unregister`, `registered`. (`zoo.resolve`, which also takes model files,
is `spec`'s.)"""
from __future__ import annotations

import difflib
import functools
import os
from pathlib import Path
from typing import Callable

from .. import data, preprocess
from . import keras_apps, mobilenet_tflite, resnet_cifar, vgg_cifar
from .model import DATASETS, ZooModel, name_of
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
    """Names of the zoo models (the built-in ones; `registered` lists yours)."""
    return list(BUILDERS)


#: your models by name (`register`), in registration order
_REGISTERED: dict[str, ZooModel] = {}
#: the suffixes of the model files `zoo.resolve` reads
MODEL_SUFFIXES = (".keras", ".tflite")


def registered() -> list[str]:
    """Names of the models registered with `register`, in registration order."""
    return list(_REGISTERED)


def known(name) -> bool:
    """Whether `name` is a zoo name or a registered name (what `get` takes)."""
    return isinstance(name, str) and (name in BUILDERS or name in _REGISTERED)


def register(name: str, zoo_model: ZooModel, *, replace: bool = False) -> ZooModel:
    """Make `zoo_model` (a `ZooModel`: `zoo.custom`, `zoo.from_tflite`, `zoo.resolve(path, ...)`) known by
    `name`, so that `get(name)`, `zoo.resolve(name)` and everything taking a zoo name find it. Returns it.

    Refused: a `zoo_model` that is not a ZooModel (TypeError); a `name` that is not a non-empty string, is a
    built-in zoo name, or would be read as a model file path (ValueError); a name already registered, unless
    `replace=True` (ValueError).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"zoo.register: the name must be a non-empty string, got {name!r}")
    if not isinstance(zoo_model, ZooModel):
        raise TypeError(f"zoo.register({name!r}, ...): expected a ZooModel (zoo.custom(keras_model, preprocess), "
                        f"zoo.from_tflite(path, preprocess) or zoo.resolve(path, dataset=..., normalize=...)), got "
                        f"{type(zoo_model).__name__}")
    if name in BUILDERS:
        raise ValueError(f"zoo.register: {name!r} is a built-in zoo model name ({', '.join(BUILDERS)}); "
                         "register your model under another name")
    if looks_like_path(name):
        raise ValueError(f"zoo.register: {name!r} would be read as a model file path (it has a suffix or a path "
                         "separator); register your model under a plain name")
    if name in _REGISTERED and not replace:
        raise ValueError(f"zoo.register: {name!r} is already registered (model {name_of(_REGISTERED[name])!r}); "
                         f"pass replace=True to replace it, or call zoo.unregister({name!r}) first")
    _REGISTERED[name] = zoo_model
    return zoo_model


def unregister(name: str) -> ZooModel:
    """Forget the model registered as `name` and return it; a built-in name is refused (ValueError), an
    unregistered one raises `UnknownModelError`."""
    if isinstance(name, str) and name in BUILDERS:
        raise ValueError(f"zoo.unregister: {name!r} is a built-in zoo model name; only names given to "
                         "zoo.register can be unregistered")
    if not isinstance(name, str) or name not in _REGISTERED:
        raise UnknownModelError(f"zoo.unregister: {name!r} is not registered; registered names: "
                                f"{', '.join(_REGISTERED) or 'none'}")
    return _REGISTERED.pop(name)


def looks_like_path(name: str) -> bool:
    """Whether the string `name` reads as a file path rather than a model name: it has a suffix (``.keras``)
    or a path separator."""
    return bool(Path(name).suffix) or "/" in name or os.sep in name


def accepted(files: bool = True) -> str:
    """What names a model, as error messages list it: the zoo names, the registered names and (`files`) the
    model files `zoo.resolve` reads."""
    text = (f"zoo names: {', '.join(BUILDERS)}; registered names: "
            f"{', '.join(_REGISTERED) or 'none (zoo.register(name, zoo_model) adds one)'}")
    if files:
        text += (f"; or a path to a {' or '.join(MODEL_SUFFIXES)} file with dataset= and normalize= (one of "
                 f"{', '.join(map(repr, preprocess.NORMALIZATIONS))}; dataset one of {', '.join(map(repr, DATASETS))})")
    return text


def unknown(name, files: bool = False) -> UnknownModelError:
    """The error for an unknown model name: what is accepted (`accepted`) and close matches."""
    close = difflib.get_close_matches(str(name), [*BUILDERS, *_REGISTERED], n=3, cutoff=0.4)
    return UnknownModelError(f"unknown zoo model {name!r}; accepted: {accepted(files)}"
                             + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))


@functools.cache
def _get(name: str) -> ZooModel:
    return BUILDERS[name]()


def get(name: str) -> ZooModel:
    """The zoo model `name` (built on first use and cached for the process), or the model registered as
    `name` (`register`)."""
    if isinstance(name, str) and name in _REGISTERED:
        return _REGISTERED[name]
    if not isinstance(name, str) or name not in BUILDERS:
        raise unknown(name)
    return _get(name)


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
