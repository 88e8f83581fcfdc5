"""Image decoding: any image file or bytes to a uint8 (H, W, 3) RGB array (`load_image`)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .registry import DataError, entry, manifest
from .verification import path


def _to_rgb(img: Image.Image) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a decoded PIL image (see `load_image` for the conversion rules)."""
    mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    elif mode.startswith("I;16"):
        img = Image.fromarray((np.asarray(img, dtype=np.uint32) >> 8).astype(np.uint8), "L")
    arr = np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def _decode(data: Path | bytes, what: str) -> np.ndarray:
    """Decode an image file or bytes to uint8 RGB, or raise DataError naming `what`."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            img.load()
            return _to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot decode the image {what}: {err}") from None


def load_image(path_or_name: str | Path) -> np.ndarray:
    """Decode an image to a uint8 (H, W, 3) RGB array.

    A manifest name is resolved and verified with `path`; any other string or Path is read as is.
    Conversions: grayscale (1, L, I, F) is replicated to three channels (16-bit ``I;16`` is scaled
    by >> 8; ``I``/``F`` are clipped to 0..255 as PIL does); palette images use their palette;
    CMYK and other colour spaces go through PIL's RGB conversion. Images with alpha (RGBA, LA,
    PA, or a palette with transparency) are composited on a **white** background, like a page
    behind a transparent image. EXIF orientation is ignored (pixels as stored).
    """
    if isinstance(path_or_name, str) and path_or_name in manifest():
        file = path(path_or_name)
        return _decode(file, f"{entry(path_or_name)} at {file}")
    return _decode(Path(path_or_name), str(path_or_name))
