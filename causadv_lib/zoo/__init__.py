"""Registry of models by name: Keras model + preprocessing + class names + default CI layer.

    >>> from causadv_lib import zoo
    >>> zm = zoo.get("vgg16_bn_cifar10")           # built once per process
    >>> probs = zm.predict(images_uint8)             # (N, 10) float32
    >>> zm.model.get_layer(zm.ci_layer).output.shape  # (None, 2, 2, 512)

Entries (`names()`): ``mobilenet_v2_imagenet`` (float rebuild of the quantised TFLite file, the
ImageNet model that runs offline), ``mobilenet_v1_imagenet``, ``vgg16_imagenet`` (Keras VGG16, needs its
weights in the Keras cache: `ModelUnavailableError` otherwise), ``vgg16_bn_cifar10``, ``resnet20_cifar10``,
``resnet56_cifar10``. `custom` wraps your own Keras classifier (functional or Sequential, nested
models such as a ``keras.applications`` base included, probabilities or logits out) so that it works
wherever a zoo name does; `flatten` rebuilds a model with nested models as one graph of their layers.

One way to name a model, `resolve(model, *, dataset=None, normalize=None)`: a ZooModel (unchanged), a zoo
name, a name of yours (`register(name, zoo_model, replace=False)`, `unregister(name)`, `registered()`), or
a path to a ``.keras`` or ``.tflite`` file with ``dataset=`` (``"cifar10"``, ``"imagenet"``) and
``normalize=`` (a name of `NORMALIZATIONS`: ``"[0,1]"``, ``"[-1,1]"``, ``"imagenet-caffe"``,
``"imagenet-torch"``), read once per process:

    >>> zm = zoo.resolve("my_net.keras", dataset="cifar10", normalize="[0,1]")
    >>> zoo.register("my_net", zm); zoo.get("my_net") is zm

Every zoo model is a functional Keras model, float32, without Lambda layers, whose last two layers
are a linear ``Dense`` producing logits (named ``logits``) and a separate ``Softmax`` (``probs``):
the CI code relies on this (see `check_structure`). Input conventions: `causadv_lib.preprocess`.

Modules: `model` (`ZooModel`), `structure` (`check_structure`, `split_softmax`, `flatten`,
`layer_output`), `custom_model` (`custom`), `registry` (`names`, `get`, `register`, `unregister`,
`registered`, `for_pixels`, `BUILDERS`), `spec` (`resolve`: names and model files), `tflite`
(any TFLite image classifier, `from_tflite`), `evaluate` (top-1 over a pool), one module per zoo
architecture (`mobilenet_tflite`, `keras_apps`, `vgg_cifar`, `resnet_cifar`) and the ``check`` command
(``python -m causadv_lib.zoo check``). Nothing here imports `evaluate` or the command.
"""
from __future__ import annotations

from .custom_model import custom
from .keras_apps import ModelUnavailableError
from .model import DATASETS, OUTPUTS, ZooModel, name_of
from ..preprocess import NORMALIZATIONS
from .registry import BUILDERS, UnknownModelError, for_pixels, get, names, register, registered, unregister
from .spec import resolve
from .structure import check_structure, flatten, layer_output, split_softmax
from .tflite import from_tflite  # any TFLite image classifier as a ZooModel (zoo/tflite/)

__all__ = ["ZooModel", "UnknownModelError", "ModelUnavailableError", "get", "names", "resolve", "register",
           "unregister", "registered", "NORMALIZATIONS", "custom", "from_tflite", "check_structure", "split_softmax",
           "flatten", "layer_output", "for_pixels", "name_of"]
