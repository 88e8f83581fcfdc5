"""One way to name a model: `resolve` takes a ZooModel, a zoo name, a registered name, or a model file.

    >>> zm = zoo.resolve("resnet20_cifar10")                                          # a zoo name
    >>> zm = zoo.resolve("my_net.keras", dataset="cifar10", normalize="[0,1]")         # a Keras file
    >>> zm = zoo.resolve("my_net.tflite", dataset="imagenet", normalize="[-1,1]")      # a TFLite file
    >>> zoo.register("my_net", zm); zoo.resolve("my_net") is zm                        # a name of yours

A model file (``.keras`` or ``.tflite``, a str or a Path) needs `dataset` (one of `DATASETS`: its class
names, ``data.CIFAR10_CLASSES`` or the zoo's ImageNet names, and its geometry) and `normalize`, a name of
`preprocess.NORMALIZATIONS`: float pixels in [0, 255] -> model inputs (``"[0,1]"``, ``"[-1,1]"``,
``"imagenet-caffe"``, ``"imagenet-torch"``). The ZooModel gets:

* `geometry`: the dataset's resize to the model's (square) input size, as the zoo models do. ImageNet:
  shorter side to size / 0.875, central crop (`preprocess.geometry_imagenet` at that size); CIFAR-10 at 32 x
  32: none (`preprocess.geometry_cifar`); CIFAR-10 at another size: resized to it (bilinear, ``"plain"``);
* `preprocess` = ``normalize(geometry(images))``, exactly;
* a ``.keras`` file: ``keras.models.load_model(path, compile=False)`` (Keras' safe mode stays on: a file with
  Lambda layers is refused by Keras), wrapped by `custom` with ``outputs="probabilities"`` when the model
  ends in a softmax (`keras_graph.softmax_kind`), else ``outputs="logits"`` (a model whose outputs look like
  probabilities without a recognised softmax is refused: end it in ``keras.layers.Softmax()``);
* a ``.tflite`` file: `from_tflite` (a quantised input's scale and zero point must agree with `normalize`);
* the name: the file's stem, sanitised (characters outside ``[A-Za-z0-9_]`` become ``_``).

Model files are read once per process: a second `resolve` of the same file (same resolved path, size and
mtime) with the same dataset and normalize returns the same ZooModel; a file changed on disk is read again.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from .. import data, preprocess
from .. import keras_graph as kg
from .custom_model import custom
from .model import DATASETS, ZooModel
from .registry import MODEL_SUFFIXES, accepted, get, known, looks_like_path, unknown
from .structure import final_node
from .tflite import from_tflite
from .tflite.builder import sanitize
from .tflite.reader import TFLiteGraph, input_quantization

#: (resolved path, size, mtime_ns, dataset, normalize) -> the ZooModel read from that file
_FILES: dict[tuple, ZooModel] = {}


@dataclass(frozen=True)
class FilePreprocess:
    """A model file's `preprocess`: uint8 RGB images -> ``normalize(geometry(images))``."""

    geometry: Callable[..., np.ndarray]
    normalize: Callable[[np.ndarray], np.ndarray]

    def __call__(self, images) -> np.ndarray:
        return self.normalize(self.geometry(images))


def resolve(model, *, dataset: str | None = None, normalize: str | None = None) -> ZooModel:
    """The ZooModel `model` names: a ZooModel (returned unchanged), a zoo name (`names`), a name given to
    `register`, or a path (str or Path) to a ``.keras`` or ``.tflite`` file, read with `dataset` and
    `normalize` (module docstring). With a ZooModel or a name, `dataset` (if given) must be the model's own and
    `normalize` must be None: a named model brings its own normalisation.

    Errors list what is accepted: `UnknownModelError` for an unknown name, FileNotFoundError for a missing
    file, ValueError for another suffix, a file without `dataset` or `normalize`, or an unknown one, TypeError
    for anything else.
    """
    if isinstance(model, ZooModel):
        return _check_named(model, model.name, dataset, normalize)
    if known(model):
        return _check_named(get(model), model, dataset, normalize)
    if isinstance(model, os.PathLike) or (isinstance(model, str) and (looks_like_path(model)
                                                                       or os.path.exists(model))):
        return _from_file(Path(model), dataset, normalize)
    if isinstance(model, str):
        raise unknown(model, files=True)
    raise TypeError(f"zoo.resolve: expected a ZooModel (see zoo.custom), a zoo model name or a model file path, "
                    f"got {type(model).__name__}; accepted: {accepted()}")


def _check_named(zm: ZooModel, what: str, dataset, normalize) -> ZooModel:
    if normalize is not None:
        raise ValueError(f"zoo.resolve({what!r}, normalize={normalize!r}): normalize= is for model files; the "
                         f"model {what!r} brings its own normalisation (pass normalize=None)")
    if dataset is not None and dataset != zm.dataset:
        raise ValueError(f"zoo.resolve({what!r}, dataset={dataset!r}): the model's dataset is {zm.dataset!r}")
    return zm


def _from_file(path: Path, dataset, normalize) -> ZooModel:
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ValueError(f"zoo.resolve: {str(path)!r} is not a model file (suffix {suffix or 'none'!r}; expected "
                         f"{' or '.join(MODEL_SUFFIXES)}); accepted: {accepted()}")
    if not path.is_file():
        raise FileNotFoundError(f"zoo.resolve: no model file {str(path)!r}"
                                + (" (it is a folder)" if path.is_dir() else "") + f"; accepted: {accepted()}")
    if dataset is None or normalize is None:
        raise ValueError(f"zoo.resolve({str(path)!r}): a model file needs dataset= and normalize=, got "
                         f"dataset={dataset!r}, normalize={normalize!r}; accepted: {accepted()}")
    if dataset not in DATASETS:
        raise ValueError(f"zoo.resolve({str(path)!r}): dataset={dataset!r}; expected one of {DATASETS}")
    if normalize not in preprocess.NORMALIZATIONS:
        raise ValueError(f"zoo.resolve({str(path)!r}): normalize={normalize!r}; expected one of "
                         f"{', '.join(map(repr, preprocess.NORMALIZATIONS))} (float pixels in [0, 255] -> model "
                         "inputs); for another normalisation load the model yourself and wrap it with "
                         "zoo.custom(model, preprocess, normalize=...)")
    real = path.resolve()
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns, dataset, normalize)
    if key not in _FILES:
        for old in [k for k in _FILES if k[0] == key[0] and k[3:] == key[3:]]:
            del _FILES[old]                                     # the file changed on disk: forget its old model
        read = _read_keras if suffix == ".keras" else _read_tflite
        _FILES[key] = read(real, dataset, normalize, sanitize(path.stem) or "model")
    return _FILES[key]


def _class_names(dataset: str) -> tuple[str, ...]:
    return tuple(data.CIFAR10_CLASSES) if dataset == "cifar10" else data.imagenet_class_names()


def _geometry(path: Path, dataset: str, shape, name: str):
    """The dataset's resize to the model's input size (module docstring)."""
    shape = tuple(shape)
    if len(shape) != 3 or shape[-1] != 3 or shape[0] is None or shape[0] != shape[1] or shape[0] < 1:
        raise ValueError(f"zoo.resolve({str(path)!r}): input shape {shape}; a model file needs a fixed square RGB "
                         "input (H, H, 3)")
    size = int(shape[0])
    if dataset == "cifar10":
        if size == preprocess.CIFAR_SIZE:
            return functools.partial(preprocess.geometry_cifar, model=name)
        return functools.partial(preprocess.geometry_imagenet, model=name, method="plain", size=size)
    return functools.partial(preprocess.geometry_imagenet, model=name, size=size)


def _read_keras(path: Path, dataset: str, normalize: str, name: str) -> ZooModel:
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - any reason Keras has: say which file
        raise ValueError(f"zoo.resolve({str(path)!r}): Keras cannot load it: {type(e).__name__}: {e}") from e
    if not isinstance(model, keras.Model):
        raise ValueError(f"zoo.resolve({str(path)!r}): expected a Keras model, the file holds a "
                         f"{type(model).__name__}")
    kg.functional(model)                      # TypeError naming the fix for a subclassed model
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"zoo.resolve({str(path)!r}): expected a classifier with one image input and one "
                         f"(N, classes) output, got {len(model.inputs)} inputs and {len(model.outputs)} outputs")
    flat = kg.flatten(model)                  # a softmax at the end of a nested model counts
    classes = _class_names(dataset)
    n_out = flat.outputs[0].shape[-1]
    if n_out != len(classes):
        raise ValueError(f"zoo.resolve({str(path)!r}): the model has {n_out} outputs, dataset {dataset!r} has "
                         f"{len(classes)} classes")
    norm = preprocess.NORMALIZATIONS[normalize]
    geometry = _geometry(path, dataset, flat.input_shape[1:], name)
    node = final_node(flat)
    outputs = "logits" if node is None or kg.softmax_kind(node) is None else "probabilities"
    if outputs == "logits":
        _refuse_hidden_softmax(path, flat, norm)
    return custom(flat, FilePreprocess(geometry, norm), outputs=outputs, class_names=classes, name=name,
                  dataset=dataset, normalize=norm, geometry=geometry)


def _refuse_hidden_softmax(path: Path, model, norm) -> None:
    """A model taken for a logit model whose outputs are probability vectors (a softmax in a Lambda or a
    Python function) would get a second softmax: refused."""
    shape = tuple(model.input_shape[1:])
    pixels = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype(np.float32)
    try:
        out = np.asarray(model(norm(pixels), training=False), np.float64)
    except Exception:  # noqa: BLE001 - a model that cannot run on a batch of two fails later, with custom's error
        return
    if np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(f"zoo.resolve({str(path)!r}): its outputs are probability vectors, but it does not end in "
                         "a softmax layer this package recognises (a Softmax layer, Activation('softmax') or a Dense "
                         "with softmax activation); end the model in keras.layers.Softmax() and save it again")


def _read_tflite(path: Path, dataset: str, normalize: str, name: str) -> ZooModel:
    try:
        graph = TFLiteGraph.read(path)
        shape = graph.shape(graph.inputs[0])[1:]
    except Exception as e:  # noqa: BLE001 - a file that is no TFLite flatbuffer fails anywhere in the parser
        raise ValueError(f"zoo.resolve({str(path)!r}): not a readable TFLite file: {type(e).__name__}: {e}") from e
    norm = preprocess.NORMALIZATIONS[normalize]
    geometry = _geometry(path, dataset, shape, name)
    _check_quantization(path, normalize, norm, shape)
    return from_tflite(path, FilePreprocess(geometry, norm), class_names=_class_names(dataset), name=name,
                       dataset=dataset, normalize=norm, geometry=geometry)


def _check_quantization(path: Path, normalize: str, norm, shape) -> None:
    """A quantised input (scale s, zero point z) takes pixels q as (q - z) * s: `normalize` must map pixel
    values 0 and 255 to within one quantisation step of that."""
    quant = input_quantization(path)
    if quant is None:
        return
    scale, zero = quant
    ends = np.stack([np.zeros(shape, np.float32), np.full(shape, 255.0, np.float32)])
    got = np.asarray(norm(ends), np.float64).reshape(2, -1)
    want = (np.array([0.0, 255.0]) - zero) * scale
    if np.abs(got - want[:, None]).max() > abs(scale) * 1.01:
        raise ValueError(f"zoo.resolve({str(path)!r}): its quantised input maps pixel values 0 and 255 to "
                         f"{want[0]:.4g} and {want[1]:.4g} (scale {scale:.6g}, zero point {zero}); normalize="
                         f"{normalize!r} maps them to {got[0].min():.4g} and {got[1].max():.4g}")
