"""Every zoo model's input convention, in one place: uint8 RGB images -> float32 model inputs.

Each public ``preprocess_*`` function takes uint8 RGB images, either an (N, H, W, 3) array or a list
of (H, W, 3) arrays (ImageNet photographs differ in size), and returns an (N, h, w, 3) float32 array.
It is two steps, also public so that attacks can work on float pixels: a *geometry* step
(uint8 -> uint8 at the model's input size) and a *normalisation* step (float pixel values in
[0, 255] at the input size -> model inputs; it accepts floats, e.g. adversarial images, and
refuses NaN/Inf, values outside [0, 255] and float batches that look scaled to [0, 1]: see
`causadv_lib.pixels`, the one pixel contract).

For a model file of your own, `NORMALIZATIONS` names the usual normalisations at any image size:
``"[0,1]"`` (x / 255), ``"[-1,1]"`` (x / 127.5 - 1), ``"imagenet-caffe"`` (RGB -> BGR minus the ImageNet BGR
means) and ``"imagenet-torch"`` ((x / 255 - ImageNet mean) / ImageNet std); ``zoo.resolve(path,
dataset=..., normalize=NAME)`` takes these names.

| model | geometry | normalisation (x = pixel value in [0, 255]) |
|---|---|---|
| ``mobilenet_v2_imagenet`` | shorter side resized to 256 (bilinear), central 224x224 crop | x / 127.5 - 1 |
| ``mobilenet_v1_imagenet`` | shorter side resized to 219 = round(192 / 0.875) (bilinear), central 192x192 crop | x / 128 - 1 |
| ``vgg16_imagenet`` | same as MobileNetV2 | RGB -> BGR, minus (103.939, 116.779, 123.68) (Keras ``caffe``) |
| ``vgg16_bn_cifar10`` | none: exactly 32x32 | (x / 255 - mean) / std, mean/std from the model's JSON |
| ``resnet20_cifar10``, ``resnet56_cifar10`` | none: exactly 32x32 | (x / 255 - mean) / std, ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225) |

MobileNetV2 geometry: "shorter side to 256 + centre crop 224" (``shorter_256_crop``), chosen by
measuring the three conventions of `resize_crop` with the float rebuild (top-1 on the 1000 sample
images / the 1300 validation images; top-1 agreement with the TFLite interpreter on the samples):

| geometry | samples | val1300 | agreement |
|---|---|---|---|
| ``shorter_256_crop`` (chosen) | 89.3% | 79.0% | 98.1% |
| ``central_crop`` (TF-slim: central 87.5%, resized to 224x224, aspect not kept) | 86.9% | 78.8% | 97.7% |
| ``plain`` (resized to 224x224) | 84.4% | 78.0% | 97.9% |

(The mirror's reference float rebuild: 88.5% / 78.0%.) Resizing uses Pillow's bilinear filter (which
antialiases when shrinking), deterministic on every platform; images are rounded back to uint8 after
resizing, so the TFLite interpreter can be fed the very same pixels.

MobileNetV2 normalisation: the TFLite file quantises its uint8 input with scale 1/127.5 and zero point
127, so the interpreter sees (x - 127) / 127.5 = x / 127.5 - 0.99608: half a quantisation step
(0.0039) above x / 127.5 - 1, an artefact of rounding the zero point 127.5 down. The float network was
trained on x / 127.5 - 1 (Keras ``mobilenet_v2.preprocess_input``), which is what is used here;
feeding (x - 127) / 127.5 instead changed no top-1 figure above by more than 0.1 point.

MobileNetV1 (``mobilenet_v1_0.75_192_quant.tflite``, rebuilt by `causadv_lib.zoo.tflite`) at 192:
its uint8 input is quantised with scale 1/128 and zero point 128, so the interpreter sees
(x - 128) / 128 = x / 128 - 1, which is what is used (the TF-slim training convention x / 127.5 - 1
differs by at most 0.0078, one input quantisation step; measured with it: 80.1% / 77.2% / 98.1%, the
same within 0.1 point). Geometry: `resize_crop` at size 192, measured like MobileNetV2 with the float
rebuild (top-1 on the 1000 sample images / the 1300 validation images; top-1 agreement with the TFLite
interpreter fed the same uint8 pixels, on the samples / on val1300; the interpreter's own top-1 on the
samples / on val1300):

| geometry (size 192) | samples | val1300 | agreement | interpreter |
|---|---|---|---|---|
| ``shorter_256_crop`` (chosen): shorter side to 219, central 192x192 | 80.2% | 77.2% | 98.0% / 98.8% | 79.7% / 77.6% |
| ``central_crop`` (central 87.5%, resized to 192x192) | 75.7% | 77.5% | 98.1% / 97.7% | 75.6% / 77.2% |
| ``plain`` (resized to 192x192) | 71.9% | 75.2% | 96.6% / 99.0% | 71.7% / 75.4% |
"""
from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from types import MappingProxyType

import numpy as np
from PIL import Image

from .pixels import check_values

from . import data

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_SIZE = 224
MOBILENET_V1_SIZE = 192
CIFAR_SIZE = 32
#: The resize conventions `resize_crop` knows; `IMAGENET_RESIZE` is the one the ImageNet models use.
RESIZE_METHODS = ("shorter_256_crop", "central_crop", "plain")
IMAGENET_RESIZE = "shorter_256_crop"
CROP_FRACTION = 0.875

Images = np.ndarray | Sequence[np.ndarray]


# ---------------------------------------------------------------------------------------- checks
def _check_image(img: np.ndarray, model: str, where: str) -> None:
    if not isinstance(img, np.ndarray):
        raise ValueError(f"{model}: expected uint8 RGB images as numpy arrays, got {type(img).__name__}{where}")
    if img.dtype != np.uint8:
        raise ValueError(f"{model}: expected dtype uint8 (pixel values 0..255), got {img.dtype}{where}; "
                         "for float pixels use the normalize_* functions")
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"{model}: expected an RGB image of shape (H, W, 3), got shape {img.shape}{where}"
                         + ("; convert grayscale to RGB first" if img.ndim == 2 or img.shape[-1] == 1 else ""))


def as_image_list(images: Images, model: str) -> list[np.ndarray]:
    """Validate uint8 RGB images ((N, H, W, 3) array or list of (H, W, 3)) and return them as a list."""
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"{model}: expected a batch of shape (N, H, W, 3) or a list of (H, W, 3) images, "
                             f"got an array of shape {images.shape}")
        images = list(images)
    elif not isinstance(images, (list, tuple)):
        raise ValueError(f"{model}: expected an (N, H, W, 3) uint8 array or a list of (H, W, 3) uint8 arrays, "
                         f"got {type(images).__name__}")
    for i, img in enumerate(images):
        _check_image(img, model, f" (image {i})")
    return list(images)


def _exact_size(images: Images, size: int, model: str) -> np.ndarray:
    """Stack uint8 images that must already be size x size (no resizing for this model)."""
    imgs = as_image_list(images, model)
    for i, img in enumerate(imgs):
        if img.shape[:2] != (size, size):
            raise ValueError(f"{model}: expected images of {size}x{size} pixels, got {img.shape[0]}x{img.shape[1]} "
                             f"(image {i}); this model does not resize")
    return np.stack(imgs) if imgs else np.zeros((0, size, size, 3), np.uint8)


def _check_float(x: np.ndarray, size: int, model: str) -> np.ndarray:
    """Validate the input of a ``normalize_*`` function; return it as float32 (see `pixels.check_values`)."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1:] != (size, size, 3):
        raise ValueError(f"{model}: expected pixel values of shape (N, {size}, {size}, 3), got {x.shape}")
    check_values(x, model)
    return x.astype(np.float32, copy=False)




# -------------------------------------------------------------------------------------- geometry
def resize_crop(img: np.ndarray, size: int = IMAGENET_SIZE, method: str = IMAGENET_RESIZE) -> np.ndarray:
    """One uint8 (H, W, 3) image -> (size, size, 3) uint8 by one of `RESIZE_METHODS` (bilinear).

    ``central_crop``: the central 87.5% of each side (TF-slim's offsets), resized to size x size;
    ``shorter_256_crop``: shorter side resized to size * 8/7 (256 for 224), then the central size x size;
    ``plain``: resized to size x size, aspect ratio not kept.
    """
    h, w = img.shape[:2]
    pil = Image.fromarray(img)
    if method == "central_crop":
        top, left = int((h - h * CROP_FRACTION) / 2), int((w - w * CROP_FRACTION) / 2)
        pil = pil.crop((left, top, w - left, h - top)).resize((size, size), Image.BILINEAR)
    elif method == "shorter_256_crop":
        short = round(size / CROP_FRACTION)
        nh, nw = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
        pil = pil.resize((nw, nh), Image.BILINEAR)
        top, left = (nh - size) // 2, (nw - size) // 2
        pil = pil.crop((left, top, left + size, top + size))
    elif method == "plain":
        pil = pil.resize((size, size), Image.BILINEAR)
    else:
        raise ValueError(f"unknown resize method {method!r}; expected one of {RESIZE_METHODS}")
    return np.asarray(pil, dtype=np.uint8)


def geometry_imagenet(images: Images, model: str = "imagenet model", method: str = IMAGENET_RESIZE,
                      size: int = IMAGENET_SIZE) -> np.ndarray:
    """uint8 RGB images of any size -> (N, size, size, 3) uint8 (the ImageNet models' crop and resize).

    `size` is 224 for every ImageNet model but ``mobilenet_v1_imagenet`` (192).
    """
    imgs = as_image_list(images, model)
    out = [resize_crop(img, size, method) for img in imgs]
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


def geometry_cifar(images: Images, model: str = "cifar10 model") -> np.ndarray:
    """uint8 RGB images that must be 32x32 -> (N, 32, 32, 3) uint8 (no resizing)."""
    return _exact_size(images, CIFAR_SIZE, model)


# --------------------------------------------------------------------------------- normalisation
def to_unit_range(x: np.ndarray) -> np.ndarray:
    """Pixel values in [0, 255], any shape -> x / 127.5 - 1 in [-1, 1] (float32): the input convention of
    many `keras.applications` models, for a model of your own (`zoo.custom(..., normalize=to_unit_range)`)."""
    x = np.asarray(x)
    check_values(x, "to_unit_range")
    return (x.astype(np.float32) / np.float32(127.5) - np.float32(1.0)).astype(np.float32, copy=False)


def normalize_mobilenet_v2(x: np.ndarray) -> np.ndarray:
    """Pixel values in [0, 255], (N, 224, 224, 3) -> x / 127.5 - 1 in [-1, 1]."""
    x = _check_float(x, IMAGENET_SIZE, "mobilenet_v2_imagenet")
    return (x / np.float32(127.5) - np.float32(1.0)).astype(np.float32, copy=False)


def normalize_mobilenet_v1(x: np.ndarray) -> np.ndarray:
    """Pixel values in [0, 255], (N, 192, 192, 3) -> x / 128 - 1 in [-1, 0.9922] (the TFLite file's input)."""
    x = _check_float(x, MOBILENET_V1_SIZE, "mobilenet_v1_imagenet")
    return (x / np.float32(128.0) - np.float32(1.0)).astype(np.float32, copy=False)


def normalize_vgg16_imagenet(x: np.ndarray) -> np.ndarray:
    """Pixel values in [0, 255], (N, 224, 224, 3) RGB -> BGR minus the caffe means (Keras ``caffe`` mode)."""
    return _caffe(_check_float(x, IMAGENET_SIZE, "vgg16_imagenet"))


@functools.cache
def vgg16_bn_cifar10_mean_std() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The VGG16-BN CIFAR-10 normalisation (mean, std), read from the model's JSON."""
    meta = json.loads(data.path("vgg16_bn_cifar10_json").read_text())
    pre = meta["preprocessing"]
    return tuple(pre["mean"]), tuple(pre["std"])


def _standardize(x: np.ndarray, mean, std) -> np.ndarray:
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return ((x / np.float32(255.0) - mean) / std).astype(np.float32, copy=False)


def normalize_vgg16_bn_cifar10(x: np.ndarray) -> np.ndarray:
    """Pixel values in [0, 255], (N, 32, 32, 3) -> (x / 255 - mean) / std with the JSON's values."""
    return _standardize(_check_float(x, CIFAR_SIZE, "vgg16_bn_cifar10"), *vgg16_bn_cifar10_mean_std())


def normalize_resnet_cifar10(x: np.ndarray) -> np.ndarray:
    """Pixel values in [0, 255], (N, 32, 32, 3) -> (x / 255 - ImageNet mean) / ImageNet std (akamaster)."""
    return _standardize(_check_float(x, CIFAR_SIZE, "resnet_cifar10"), IMAGENET_MEAN, IMAGENET_STD)


# ----------------------------------------------------------------- normalisations by name
def _channels_last_rgb(x: np.ndarray, name: str) -> np.ndarray:
    """`x` (any shape with 3 channels last) checked by `check_values`, as float32."""
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected RGB pixel values with 3 channels last, got shape {x.shape}")
    check_values(x, name)
    return x.astype(np.float32, copy=False)


def to_zero_one(x: np.ndarray) -> np.ndarray:
    """Pixel values in [0, 255], any shape -> x / 255 in [0, 1] (float32): models trained on ``x / 255``."""
    x = np.asarray(x)
    check_values(x, "to_zero_one")
    return (x.astype(np.float32) / np.float32(255.0)).astype(np.float32, copy=False)


def _caffe(x: np.ndarray) -> np.ndarray:
    return (x[..., ::-1] - np.asarray(CAFFE_BGR_MEAN, np.float32)).astype(np.float32, copy=False)


def to_caffe_bgr(x: np.ndarray) -> np.ndarray:
    """RGB pixel values in [0, 255], (..., 3) -> BGR minus the ImageNet BGR means (103.939, 116.779, 123.68)
    (float32): Keras ``caffe`` mode (VGG16, ResNet50 of ``keras.applications``), at any image size."""
    return _caffe(_channels_last_rgb(x, "to_caffe_bgr"))


def to_imagenet_standard(x: np.ndarray) -> np.ndarray:
    """RGB pixel values in [0, 255], (..., 3) -> (x / 255 - mean) / std with the ImageNet mean (0.485, 0.456,
    0.406) and std (0.229, 0.224, 0.225) (float32): the torchvision convention, at any image size."""
    return _standardize(_channels_last_rgb(x, "to_imagenet_standard"), IMAGENET_MEAN, IMAGENET_STD)


#: The normalisations by name, for a model file of your own (`zoo.resolve(path, dataset=..., normalize=NAME)`):
#: float pixel values in [0, 255] (any image size, 3 channels last) -> model inputs, float32.
NORMALIZATIONS = MappingProxyType({
    "[0,1]": to_zero_one,                       # x / 255
    "[-1,1]": to_unit_range,                    # x / 127.5 - 1
    "imagenet-caffe": to_caffe_bgr,             # RGB -> BGR, minus (103.939, 116.779, 123.68)
    "imagenet-torch": to_imagenet_standard,     # (x / 255 - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)
})


# ------------------------------------------------------------------------------ uint8 -> inputs
def preprocess_mobilenet_v2(images: Images) -> np.ndarray:
    """uint8 RGB images of any size -> MobileNetV2 inputs (N, 224, 224, 3) in [-1, 1]."""
    return normalize_mobilenet_v2(geometry_imagenet(images, "mobilenet_v2_imagenet"))


def geometry_mobilenet_v1(images: Images) -> np.ndarray:
    """uint8 RGB images of any size -> (N, 192, 192, 3) uint8: shorter side to 219, central 192x192 crop."""
    return geometry_imagenet(images, "mobilenet_v1_imagenet", size=MOBILENET_V1_SIZE)


def preprocess_mobilenet_v1(images: Images) -> np.ndarray:
    """uint8 RGB images of any size -> MobileNetV1 0.75 192 inputs (N, 192, 192, 3), x / 128 - 1."""
    return normalize_mobilenet_v1(geometry_mobilenet_v1(images))


def preprocess_vgg16_imagenet(images: Images) -> np.ndarray:
    """uint8 RGB images of any size -> Keras VGG16 inputs (N, 224, 224, 3), caffe convention."""
    return normalize_vgg16_imagenet(geometry_imagenet(images, "vgg16_imagenet"))


def preprocess_vgg16_bn_cifar10(images: Images) -> np.ndarray:
    """uint8 RGB 32x32 images -> VGG16-BN CIFAR-10 inputs (N, 32, 32, 3)."""
    return normalize_vgg16_bn_cifar10(geometry_cifar(images, "vgg16_bn_cifar10"))


def preprocess_resnet_cifar10(images: Images) -> np.ndarray:
    """uint8 RGB 32x32 images -> akamaster ResNet inputs (N, 32, 32, 3)."""
    return normalize_resnet_cifar10(geometry_cifar(images, "resnet_cifar10"))
