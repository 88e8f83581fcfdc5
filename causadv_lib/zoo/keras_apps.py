"""Keras VGG16 (ImageNet), the paper's ImageNet model: weights from the Keras cache, never fetched silently.

``keras.applications.VGG16(weights="imagenet")`` downloads a 528 MB file at run time, which fails
(or, behind some firewalls, hangs) offline. Here the file is looked up in the Keras cache first
(``$KERAS_HOME/models``, ``~/.keras/models``, ``/tmp/.keras/models``); it is downloaded only when
``CAUSADV_ALLOW_DOWNLOAD=1`` (network access is never a side effect of building a model), with a
socket timeout. Otherwise `ModelUnavailableError` says which file is needed and where to put it.

The classifier is rebuilt so that the last Dense is linear: ``... fc2 -> logits`` (Dense 1000,
the weights of Keras's ``predictions``) ``-> probs`` (Softmax). CI layer: ``block5_conv3`` (its ReLU
is fused, so its output is post-activation, 14x14x512).
"""
from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import keras

from .structure import split_softmax

WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + WEIGHTS_FILE
WEIGHTS_MD5 = "64373286793e3c8b2b4e3219cbf3544b"  # the hash keras.applications checks
ALLOW_DOWNLOAD_ENV = "CAUSADV_ALLOW_DOWNLOAD"
DOWNLOAD_TIMEOUT_S = 60
CI_LAYER = "block5_conv3"


class ModelUnavailableError(RuntimeError):
    """A zoo model cannot be built here (e.g. its weights need a download and we are offline)."""


def keras_cache_dirs() -> list[Path]:
    """Where Keras keeps downloaded weights, in the order Keras itself uses them."""
    dirs = [Path(os.environ["KERAS_HOME"]) / "models"] if os.environ.get("KERAS_HOME") else []
    return dirs + [Path.home() / ".keras" / "models", Path("/tmp/.keras/models")]


def _md5(file: Path) -> str:
    h = hashlib.md5()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _unavailable(reason: str) -> ModelUnavailableError:
    where = ", ".join(str(d) for d in keras_cache_dirs())
    return ModelUnavailableError(
        f"vgg16_imagenet: {reason}. It needs the Keras ImageNet weights {WEIGHTS_FILE} (528 MB, md5 {WEIGHTS_MD5}): "
        f"either put that file in one of [{where}] (download it from {WEIGHTS_URL}), or, with internet "
        f"access, set {ALLOW_DOWNLOAD_ENV}=1 to let Keras download it. Offline, use mobilenet_v2_imagenet.")


def find_weights(allow_download: bool | None = None) -> Path:
    """Path of the verified VGG16 ImageNet weights; downloads only if allowed, else ModelUnavailableError."""
    if allow_download is None:
        allow_download = os.environ.get(ALLOW_DOWNLOAD_ENV) == "1"
    for d in keras_cache_dirs():
        file = d / WEIGHTS_FILE
        if file.is_file():
            if _md5(file) != WEIGHTS_MD5:
                raise _unavailable(f"{file} is corrupt (md5 mismatch); delete it")
            return file
    if not allow_download:
        raise _unavailable(f"the weights are not in the Keras cache and downloads are off ({ALLOW_DOWNLOAD_ENV} != 1)")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return Path(keras.utils.get_file(WEIGHTS_FILE, WEIGHTS_URL, cache_subdir="models", file_hash=WEIGHTS_MD5))
    except Exception as err:  # noqa: BLE001 -- any download failure means: unavailable here
        raise _unavailable(f"the download failed ({type(err).__name__}: {err})") from err
    finally:
        socket.setdefaulttimeout(old)


def build(weights_path=None, name: str = "vgg16_imagenet") -> keras.Model:
    """Keras VGG16 with a linear ``logits`` Dense and a ``probs`` Softmax; `weights_path` None = random."""
    base = keras.applications.VGG16(weights=None if weights_path is None else str(weights_path))
    return split_softmax(base, name=name)
