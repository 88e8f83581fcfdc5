"""Image pools: ordered, labelled image sets (`ImagePool`), and the named pools the notebooks use (`pool`)."""
from __future__ import annotations

import difflib
import functools
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from .. import cache
from .images import _decode, load_image
from .registry import DataError, entry, manifest, names_under
from .verification import path

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True, eq=False)
class ImagePool:
    """An ordered, labelled set of images: `ids` (stable order), int64 `labels`, and `class_names`.

    `load(indices)` decodes images to uint8 RGB: an (N, H, W, 3) array when all images share one
    size (CIFAR-10), else a list of (H, W, 3) arrays (ImageNet).

    Your own images: ``ImagePool.from_arrays(images, labels, class_names)`` (in memory),
    ``ImagePool.from_folder(folder)`` (a folder of class subfolders, read on demand), or
    ``ImagePool.from_loader(name, ids, labels, class_names, load)`` (read on demand by ``load(indices)``).
    """

    name: str
    ids: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    _load: Callable[[np.ndarray], list | np.ndarray] = field(repr=False)
    #: per image, the content hash of the bytes it is decoded from (``"sha256:HEX"`` of its verified file, or
    #: ``"sha256:HEX/MEMBER"`` inside a verified zip); None when the pool does not know (your own pools)
    sources: tuple[str, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.int64)
        labels.flags.writeable = False
        object.__setattr__(self, "labels", labels)
        if len(labels) != len(self.ids) or len(set(self.ids)) != len(self.ids):
            raise DataError(f"pool {self.name}: {len(self.ids)} ids (unique required) but {len(labels)} labels")
        if len(labels) and not (0 <= labels.min() and labels.max() < len(self.class_names)):
            raise DataError(f"pool {self.name}: labels outside 0..{len(self.class_names) - 1}")
        if self.sources is not None and len(self.sources) != len(self.ids):
            raise DataError(f"pool {self.name}: {len(self.ids)} ids but {len(self.sources)} sources")

    @classmethod
    def from_loader(cls, name: str, ids: Sequence[str], labels, class_names: Sequence[str],
                    load: Callable[[np.ndarray], list | np.ndarray]) -> "ImagePool":
        """A pool whose images `load(indices)` returns on demand (uint8 RGB: an (n, H, W, 3) array or a
        list of (H, W, 3) arrays, for an int64 array of positions)."""
        if not callable(load):
            raise DataError(f"pool {name}: load must be a callable (int64 indices -> uint8 images), got {load!r}")
        return cls(str(name), tuple(str(i) for i in ids), np.asarray(labels), tuple(class_names), load)

    @classmethod
    def from_arrays(cls, images, labels, class_names: Sequence[str] | None = None, ids: Sequence[str] | None = None,
                    name: str = "images") -> "ImagePool":
        """A pool of images in memory: `images` uint8 RGB, an (N, H, W, 3) array or a list of (H, W, 3)
        arrays; `labels` (N,) class indices; `class_names` default to "0", "1", ... up to the largest
        label; `ids` default to "0", "1", ... (they must be unique)."""
        arrays = images if isinstance(images, np.ndarray) else [np.asarray(im) for im in images]
        dtypes = {arrays.dtype} if isinstance(arrays, np.ndarray) else {a.dtype for a in arrays}
        shapes = [arrays.shape[1:]] if isinstance(arrays, np.ndarray) else [a.shape for a in arrays]
        if dtypes - {np.dtype(np.uint8)} or any(len(sh) != 3 or sh[-1] != 3 for sh in shapes):
            raise DataError(f"pool {name}: expected uint8 RGB images ((N, H, W, 3) or a list of (H, W, 3)), got "
                            f"dtype {', '.join(map(str, sorted(dtypes, key=str)))} and shape "
                            f"{arrays.shape if isinstance(arrays, np.ndarray) else shapes[:1]}")
        labels = np.asarray(labels)
        if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
            raise DataError(f"pool {name}: labels must be (N,) integer class indices, got {labels.dtype} {labels.shape}")
        if len(labels) != len(arrays):
            raise DataError(f"pool {name}: {len(arrays)} images but {len(labels)} labels")
        if class_names is None:
            class_names = tuple(str(c) for c in range(int(labels.max()) + 1 if labels.size else 0))
        ids = tuple(str(i) for i in range(len(labels))) if ids is None else tuple(str(i) for i in ids)

        def load(idx: np.ndarray):
            if isinstance(arrays, np.ndarray):
                return arrays[idx]
            return [arrays[i] for i in idx]
        return cls(str(name), ids, labels, tuple(class_names), load)

    @classmethod
    def from_folder(cls, folder, *, name: str | None = None, class_names: Sequence[str] | None = None,
                    size: tuple[int, int] | None = None) -> "ImagePool":
        """A pool of the images in `folder`, one subfolder per class (``folder/CLASS/*.png``), read on demand.

        Images: ``.png``, ``.jpg`` and ``.jpeg`` files (any case) anywhere inside a class subfolder, in order of
        their path relative to `folder` (so the order is the same on every machine); their ids are these
        relative paths (``"cat/0001.png"``). Hidden files and folders (names starting with ".") are skipped.
        `class_names`: default the subfolder names, sorted; given, every subfolder must be one of them (label
        = its position; a class may have no subfolder). `size`: (H, W) to resize every image to (bilinear),
        so that `load` returns an (n, H, W, 3) array; without it, an array when the images loaded share one
        size, else a list. Decoding follows `load_image` (uint8 RGB; grayscale and palette converted, alpha
        composited on white). `name` defaults to the folder's name.

        DataError naming the file or folder: no folder, no image, a file directly in `folder` (outside the
        class subfolders), a file of another type in a class subfolder, a subfolder outside `class_names`;
        an image that cannot be decoded, when it is loaded.
        """
        root = Path(folder)
        name = root.name if name is None else str(name)
        if not root.is_dir():
            raise DataError(f"pool {name}: {root} is not a folder; expected a folder with one subfolder per class")
        if size is not None:
            if (not isinstance(size, (tuple, list)) or len(size) != 2
                    or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)):
                raise DataError(f"pool {name}: size must be (H, W), two positive integers, or None; got {size!r}")
            size = (int(size[0]), int(size[1]))
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
        loose = [p for p in entries if not p.is_dir()]
        if loose:
            raise DataError(f"pool {name}: {loose[0]} is outside the class subfolders of {root}"
                            + (f" (and {len(loose) - 1} more files)" if len(loose) > 1 else "")
                            + "; expected only one subfolder per class, holding that class's images")
        folders = [p.name for p in entries]
        classes = tuple(folders) if class_names is None else tuple(str(c) for c in class_names)
        unknown = [f for f in folders if f not in classes]
        if unknown:
            raise DataError(f"pool {name}: the subfolder {root / unknown[0]} is not a class of class_names "
                            f"({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})")
        files: list[tuple[str, int]] = []
        for f in folders:
            for p in sorted((root / f).rglob("*")):
                rel = p.relative_to(root)
                if any(part.startswith(".") for part in rel.parts) or p.is_dir():
                    continue
                if p.suffix.lower() not in IMAGE_SUFFIXES:
                    raise DataError(f"pool {name}: {p} is not an image file (expected {', '.join(IMAGE_SUFFIXES)}); "
                                    "remove it or move it out of the class subfolders")
                files.append((rel.as_posix(), classes.index(f)))
        files.sort()
        if not files:
            raise DataError(f"pool {name}: no images ({', '.join(IMAGE_SUFFIXES)}) in {root}; expected one "
                            "subfolder per class, holding that class's images")
        ids = tuple(i for i, _ in files)

        def load(idx: np.ndarray):
            images = [_read_image(root / ids[i], size) for i in idx]
            if size is not None:
                return np.stack(images) if images else np.zeros((0, *size, 3), np.uint8)
            same = len({im.shape for im in images}) == 1
            return np.stack(images) if same else images
        return cls(name, ids, np.array([y for _, y in files], np.int64), classes, load)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, indices: Sequence[int] | np.ndarray | range | None = None) -> list | np.ndarray:
        """Decode the images at `indices` (default: all), in the order given."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"pool {self.name} has {len(self)} images; indices out of range: "
                             f"{idx[(idx < -len(self)) | (idx >= len(self))][:5].tolist()}")
        return self._load(idx % max(len(self), 1))

    def fingerprint(self, indices) -> list[str] | None:
        """The content hashes of the files the images at `indices` are decoded from, in that order (so that a
        result computed from these images can be keyed without decoding them); None when the pool does not know
        them (`sources`)."""
        if self.sources is None:
            return None
        return [self.sources[i] for i in np.asarray(indices, dtype=np.int64).reshape(-1)]

    def index_of(self, ids: Iterable[str]) -> np.ndarray:
        """Positions of `ids` in this pool (int64); unknown ids raise DataError."""
        pos = _positions(self.ids)
        ids = [ids] if isinstance(ids, str) else list(ids)
        unknown = [i for i in ids if i not in pos]
        if unknown:
            raise DataError(f"pool {self.name} has no images with ids {unknown[:5]}"
                            + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""))
        return np.array([pos[i] for i in ids], dtype=np.int64)


@functools.lru_cache(maxsize=16)
def _positions(ids: tuple[str, ...]) -> dict[str, int]:
    return {i: k for k, i in enumerate(ids)}


#: the image files `ImagePool.from_folder` reads (suffixes compared in lower case)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _read_image(file: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image file decoded to uint8 RGB (DataError naming the file), resized to `size` (H, W) if given."""
    img = _decode(file, str(file))
    if size is None or img.shape[:2] == size:
        return img
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR), dtype=np.uint8)


def _file_loader(names: Sequence[str], stack: bool) -> Callable[[np.ndarray], list | np.ndarray]:
    """Loader of manifest image files (each verified on first use)."""
    def load(idx: np.ndarray):
        images = [load_image(names[i]) for i in idx]
        return np.stack(images) if stack and images else (np.zeros((0, 32, 32, 3), np.uint8) if stack else images)
    return load


def _file_sources(names: Sequence[str]) -> tuple[str, ...]:
    """The manifest's sha256 of each file (every file is checked against it before it is decoded)."""
    m = manifest()
    return tuple(f"sha256:{m[n].sha256}" for n in names)


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names (first comma part of synset_words.txt), index = class id."""
    return tuple(n for _, n in _synsets())


@functools.cache
def _synsets() -> tuple[tuple[str, str], ...]:
    lines = [ln for ln in path("synset_words").read_text(encoding="utf-8").splitlines() if ln.strip()]
    out = tuple((ln.split(" ", 1)[0], ln.split(" ", 1)[1].split(",")[0].strip()) for ln in lines)
    if len(out) != 1000:
        raise DataError(f"{entry('synset_words')}: expected 1000 classes, found {len(out)}")
    return out


def _imagenet_prototypes() -> ImagePool:
    names = names_under("imagenet/sample-images/")
    ids = tuple(n.rsplit("/", 1)[1] for n in names)
    wnids = [wnid for wnid, _ in _synsets()]
    if len(ids) != 1000 or [i.split("_", 1)[0] for i in ids] != wnids:
        raise DataError("imagenet/sample-images: sorted file names do not follow synset_words.txt order")
    return ImagePool("imagenet_prototypes", ids, np.arange(1000), imagenet_class_names(),
                     _file_loader(names, stack=False), _file_sources(names))


def _imagenet_eval() -> ImagePool:
    e = entry("val1300_labels")
    rows = []
    for ln in path(e.name).read_text(encoding="utf-8").splitlines():
        if ln.strip():
            file, label = (s.strip() for s in ln.rsplit(",", 1))
            rows.append((Path(file).name, int(label)))
    rows.sort()
    names = [f"imagenet/val1300/{f}" for f, _ in rows]
    missing = [n for n in names if n not in manifest()]
    if missing or len(rows) != 1300:
        raise DataError(f"{e}: {len(rows)} rows (1300 expected); not in the manifest: {missing[:5]}")
    return ImagePool("imagenet_eval", tuple(f for f, _ in rows), np.array([y for _, y in rows]),
                     imagenet_class_names(), _file_loader(names, stack=False), _file_sources(names))


@functools.cache
def _cifar_split(split: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Members SPLIT/CLASS/NNNN.jpg of the CIFAR zip, sorted (class-major), and their labels. Listed once per
    zip content (its manifest sha256) and kept in the cache: reading the zip's directory of 60,000 members took
    0.3 s per split in every notebook."""
    def compute():
        with zipfile.ZipFile(path("cifar10_images_zip")) as zf:
            return {"members": np.array(sorted(m for m in zf.namelist()
                                               if m.startswith(split + "/") and not m.endswith("/")))}
    listed = cache.cached("pool_members", ["cifar10_images_zip", entry("cifar10_images_zip").sha256, split], compute,
                          required=("members",), code=(__name__,))["members"]
    members = [str(m) for m in listed]
    classes = sorted({m.split("/")[1] for m in members})
    if tuple(classes) != CIFAR10_CLASSES:
        raise DataError(f"{entry('cifar10_images_zip')}: {split}/ class folders {classes} != {CIFAR10_CLASSES}")
    return tuple(members), np.array([CIFAR10_CLASSES.index(m.split("/")[1]) for m in members])


class _CifarSplit:
    """The images of a CIFAR split, each decoded on its first request and kept for the process: a pool of
    10,000 images of which a notebook shows 100 decodes 100."""

    def __init__(self, split: str):
        self.members, _ = _cifar_split(split)
        self.pixels = np.empty((len(self.members), 32, 32, 3), np.uint8)
        self.decoded = np.zeros(len(self.members), bool)
        self._zip, self._stat = None, None

    def _archive(self, zip_path: Path) -> zipfile.ZipFile:
        """The zip, opened once (reading its directory of 60,000 members takes ~0.1 s) and again only if the file
        on disk changed."""
        st = zip_path.stat()
        stat = (str(zip_path), st.st_ino, st.st_size, st.st_mtime_ns)
        if self._zip is None or stat != self._stat:
            if self._zip is not None:
                self._zip.close()
            self._zip, self._stat = zipfile.ZipFile(zip_path), stat
        return self._zip

    def load(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx), 32, 32, 3) uint8 of members `idx` (a new, writable array)."""
        idx = np.asarray(idx)
        todo = np.unique(idx[~self.decoded[idx]]) if idx.size else idx
        if todo.size:
            zip_path = path("cifar10_images_zip")
            zf = self._archive(Path(zip_path))
            for k in todo.tolist():
                m = self.members[k]
                img = _decode(zf.read(m), f"{m} in {zip_path}")
                if img.shape != (32, 32, 3):
                    raise DataError(f"{m} in {zip_path}: shape {img.shape}, expected (32, 32, 3)")
                self.pixels[k] = img
                self.decoded[k] = True
        return self.pixels[idx]  # fancy indexing copies: callers get writable arrays


@functools.cache
def _cifar_images(split: str) -> _CifarSplit:
    return _CifarSplit(split)


def _cifar_pool(name: str, split: str) -> ImagePool:
    members, labels = _cifar_split(split)

    def load(idx: np.ndarray) -> np.ndarray:
        path("cifar10_images_zip")  # re-checks (cheaply) that the verified file is still in place
        return _cifar_images(split).load(idx)
    zip_sha = entry("cifar10_images_zip").sha256
    return ImagePool(name, members, labels, CIFAR10_CLASSES, load, tuple(f"sha256:{zip_sha}/{m}" for m in members))


def _lossless_pool(kind: str) -> ImagePool:
    names = names_under(f"samples-lossless/{kind}_")
    ids = tuple(n.rsplit("/", 1)[1] for n in names)
    labels = np.array([int(re.findall(r"\d+", i)[-1]) for i in ids])
    classes = CIFAR10_CLASSES if kind == "cifar10" else imagenet_class_names()
    return ImagePool(f"lossless_{kind}", ids, labels, classes, _file_loader(names, stack=kind == "cifar10"),
                     _file_sources(names))


#: pool name -> builder; sizes: 1000, 1300, 10000, 10000, 20, 20
POOLS: dict[str, Callable[[], ImagePool]] = {
    "imagenet_prototypes": _imagenet_prototypes,
    "imagenet_eval": _imagenet_eval,
    "cifar10_prototypes": lambda: _cifar_pool("cifar10_prototypes", "train"),
    "cifar10_eval": lambda: _cifar_pool("cifar10_eval", "test"),
    "lossless_cifar10": lambda: _lossless_pool("cifar10"),
    "lossless_imagenet": lambda: _lossless_pool("imagenet"),
}


@functools.cache
def pool(name: str) -> ImagePool:
    """The image pool `name` (one of `POOLS`), built once per process."""
    if name not in POOLS:
        close = difflib.get_close_matches(name, POOLS, n=3, cutoff=0.5)
        raise DataError(f"unknown pool {name!r}; expected one of {sorted(POOLS)}"
                        + (f" (did you mean {close[0]!r}?)" if close else ""))
    return POOLS[name]()
