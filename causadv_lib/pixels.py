"""The one pixel contract: what every function that takes images (`preprocess`' normalisations, `attacks`,
`defences`, `heatmaps`) accepts, in one place.

* **Values**: pixel values in [0, 255] (up to `PIXEL_TOLERANCE` beyond, the float rounding of clipped
  adversarial images): uint8 (or another integer type where noted) or float; finite; not bool, complex or
  objects.
* **The [0, 1] trap**: a float batch whose brightest value is at most 1.0 (and not all zeros) is refused
  with "scale [0, 1] images by 255": fed as it is, it would be a batch of near-black images, and every
  prediction, attack and purifier on it would be garbage without a word. An all-black batch is accepted,
  and so is a black image among ordinary ones: the rule is per batch.
* **Shape** (`check_images`): an (N, H, W, 3) array or a list of (H, W, 3) arrays, all of one size, the
  model's input size where one is given.

`check_values` is the value rule on any array; `check_images` adds the batch structure and names the
offending image by its index and shape. Each error names the caller (`what`) and says what was expected.
"""
from __future__ import annotations

import numpy as np

#: how far outside [0, 255] a pixel value may lie (float rounding of clipped adversarial images)
PIXEL_TOLERANCE = 1e-3
PIXEL_MAX = 255.0


def _unit_trap(x: np.ndarray) -> bool:
    """A float batch that looks scaled to [0, 1]: brightest value <= 1.0, not all zeros."""
    if not np.issubdtype(x.dtype, np.floating) or not x.size:
        return False
    hi = float(x.max())
    return 0.0 < hi <= 1.0


def check_values(x: np.ndarray, model: str = "normalize", arg: str = "x") -> None:
    """Refuse pixel values that are not finite numbers in [0, 255], on an array of any shape.

    - dtype: a real number type (integers or floats); bool, complex, object, strings: TypeError;
    - NaN or +-Inf anywhere: ValueError;
    - any value below ``-PIXEL_TOLERANCE`` or above ``255 + PIXEL_TOLERANCE``: ValueError (clip
      adversarial images to [0, 255] first);
    - the [0, 1] trap (module docstring): ValueError. Integer batches are never refused by it.

    Empty arrays are accepted. Each error names `model`, `arg`, the offending value and the rule.
    """
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise TypeError(f"{model}: {arg} must hold real pixel values (an integer or float array), "
                        f"got dtype {x.dtype}")
    if x.size == 0:
        return
    if np.issubdtype(x.dtype, np.floating):
        finite = np.isfinite(x)
        if not finite.all():
            bad = np.argwhere(~finite)
            first = tuple(int(i) for i in bad[0])
            raise ValueError(f"{model}: {arg} contains {len(bad)} non-finite value{'s' * (len(bad) != 1)} "
                             f"(NaN or Inf; the first, {x[first].item()}, at index {first}); expected finite "
                             f"pixel values in [0, 255]")
    lo, hi = x.min().item(), x.max().item()
    if lo < -PIXEL_TOLERANCE or hi > PIXEL_MAX + PIXEL_TOLERANCE:
        where = tuple(int(i) for i in np.unravel_index(np.argmin(x) if lo < -PIXEL_TOLERANCE else np.argmax(x),
                                                       x.shape))
        raise ValueError(f"{model}: {arg} has pixel values in [{lo:g}, {hi:g}] (e.g. {x[where].item():g} at index "
                         f"{where}); expected pixel values in [0, 255]: clip them to [0, 255] first")
    if _unit_trap(x):
        raise ValueError(f"{model}: {arg} has pixel values in [{lo:g}, {hi:g}], which looks like images scaled "
                         f"to [0, 1]; pixel values in [0, 255] are expected: multiply by 255 (a float batch "
                         f"whose maximum is <= 1.0 is refused unless it is all zeros)")


def check_images(images, shape=None, *, what: str = "images") -> np.ndarray:
    """Float32 (N, H, W, 3) pixel values in [0, 255], or ValueError naming `what` and the offending image.

    `images`: an (N, H, W, 3) array or a sequence of (H, W, 3) images, uint8 or float. `shape` (optional):
    the (H, W, C) every image must have (a model's input size).
    """
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"{what}: expected a batch of images (N, H, W, 3), got an array of shape {images.shape}"
                             + ("; add a batch axis (x[None]) for one image" if images.ndim == 3 else ""))
        seq = images
    else:
        try:
            seq = list(images)
        except TypeError:
            raise ValueError(f"{what}: expected images as an array (N, H, W, 3) or a list of (H, W, 3) arrays, "
                             f"got {type(images).__name__}") from None
    want = None if shape is None else tuple(int(s) for s in shape)
    first = None
    for i, im in enumerate(seq):
        arr = np.asarray(im)
        s = tuple(arr.shape)
        if arr.ndim != 3 or s[-1] != 3:
            raise ValueError(f"{what}: image {i} has shape {s}; expected (H, W, 3) RGB")
        if want is not None and s != want:
            raise ValueError(f"{what}: image {i} has shape {s}; the model expects {want} "
                             "(resize/crop with zoo_model.geometry first)")
        if first is None:
            first = s
        elif s != first:
            raise ValueError(f"{what}: image {i} has shape {s}, image 0 has {first}; images must share one size")
        if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{what}: image {i} has dtype {arr.dtype}; expected uint8 or float pixel values in "
                             "[0, 255]")
        if np.issubdtype(arr.dtype, np.floating) and arr.size:
            if not np.isfinite(arr).all():
                raise ValueError(f"{what}: image {i} (shape {s}) contains NaN or infinite values; expected finite "
                                 "pixel values in [0, 255]")
            lo, hi = float(arr.min()), float(arr.max())
            if lo < -PIXEL_TOLERANCE or hi > PIXEL_MAX + PIXEL_TOLERANCE:
                raise ValueError(f"{what}: image {i} (shape {s}) has pixel values in [{lo:g}, {hi:g}]; expected "
                                 "[0, 255]" + ("; scale [0, 1] images by 255" if hi <= 1.0 else ""))
    if isinstance(images, np.ndarray):
        x = images.astype(np.float32, copy=False)
        floats = np.issubdtype(images.dtype, np.floating)
    elif not seq:
        raise ValueError(f"{what}: no images")
    else:
        x = np.stack([np.asarray(im, np.float32) for im in seq])
        floats = any(np.issubdtype(np.asarray(im).dtype, np.floating) for im in seq)
    if floats and _unit_trap(x):
        raise ValueError(f"{what}: float pixel values in [{float(x.min()):g}, {float(x.max()):g}] look like images "
                         "scaled to [0, 1]; expected [0, 255]: scale [0, 1] images by 255 (a float batch whose "
                         "maximum is <= 1.0 is refused unless it is all zeros)")
    return x
