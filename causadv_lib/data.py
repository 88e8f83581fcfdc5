"""Verified data: the manifest registry, sha256-checked file access, fetching, image pools.

Every file the project reads is named in ``data_manifest/*.json`` with its sha256. `path(name)`
finds it in the data directory (see `data_dir`), checks its sha256 before first use and remembers
the check in ``cache_dir()/verified.json`` (keyed by absolute path; trusted only while the file's size,
mtime, ctime, inode and device are unchanged) so later runs do not re-hash. Network access happens only in `fetch` (``make data``). Pools (`pool`) are the image
sets the notebooks use::

    >>> p = pool("cifar10_eval")
    >>> x = p.load(range(8))          # (8, 32, 32, 3) uint8 RGB
    >>> p.class_names[p.labels[0]]
    'airplane'

The data layer knows nothing of models.
"""
from __future__ import annotations

import argparse
import atexit
import difflib
import functools
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence
from urllib.parse import quote

import numpy as np
from PIL import Image, UnidentifiedImageError

from causadv_lib import config

MIRROR_URL_ENV = "CAUSADV_MIRROR_URL"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
HOW_TO_FIX = (f"run `make data` (python -m causadv_lib.data fetch), or set {config.DATA_ENV} "
              "to a folder holding the data mirror")


class DataError(RuntimeError):
    """A data file is missing, corrupted, undecodable or unknown; the message says what to do."""


@dataclass(frozen=True)
class Entry:
    """One file of the manifest: where it lives in the data directory and what its bytes must be."""

    name: str
    path: str
    sha256: str
    bytes: int
    source: str
    url: str | None
    how_to_get: str | None
    licence: str
    #: for a file made by converting an upstream file: {"url", "sha256" (None: unknown), "how"}; such
    #: a file has no `url` of its own (the upstream address serves other bytes) and comes from a mirror
    converted_from: dict | None = None

    def __post_init__(self) -> None:
        if self.converted_from is not None:
            if self.url is not None:
                raise DataError(f"data manifest: {self.name} is converted from {self.converted_from.get('url')} "
                                f"but has url {self.url}: a converted file has no download URL of its own")
            missing = {"url", "sha256", "how"} - set(self.converted_from)
            if missing:
                raise DataError(f"data manifest: {self.name}: converted_from lacks {sorted(missing)}")

    def __str__(self) -> str:
        return self.path if self.name == self.path else f"{self.name} ({self.path})"


# --------------------------------------------------------------------------- registry

@functools.cache
def manifest() -> dict[str, Entry]:
    """All manifest entries by name, in manifest (path) order."""
    files = []
    paths = manifest_files()
    if not paths:
        raise DataError(f"no data manifest (*.json) in {config.MANIFEST_DIR}")
    for mpath in paths:
        try:
            files += json.loads(mpath.read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"cannot read the data manifest {mpath}: {err}") from err
    files.sort(key=lambda f: f["path"])
    return {f["name"]: Entry(**f) for f in files}


def manifest_files() -> list[Path]:
    """The manifest files (`data_manifest/*.json`), sorted."""
    return sorted(config.MANIFEST_DIR.glob("*.json"))


def entry(name: str) -> Entry:
    """The manifest entry of a logical name or a data-dir path; unknown names list close matches."""
    entries = manifest()
    if name in entries:
        return entries[name]
    close = difflib.get_close_matches(name, entries, n=5, cutoff=0.6)
    raise DataError(f"unknown data file {name!r}: not in the data manifest {config.MANIFEST_DIR}"
                    + (f"; close matches: {close}" if close else ""))


def names_under(prefix: str) -> list[str]:
    """Names of the entries whose path starts with `prefix` (e.g. ``"samples-lossless/"``), sorted by path."""
    return sorted((e.name for e in manifest().values() if e.path.startswith(prefix)),
                  key=lambda n: manifest()[n].path)


# --------------------------------------------------------------------------- locating and verifying

def data_dir() -> Path:
    """The data directory: ``$CAUSADV_DATA``, else the mirror beside the project, else the fetched cache."""
    env = os.environ.get(config.DATA_ENV)
    if env:
        d = Path(env).expanduser().resolve()
        if d.exists() and not d.is_dir():
            raise DataError(f"{config.DATA_ENV}={env} but {d} is a file, expected a directory (the data "
                            f"mirror folder); point {config.DATA_ENV} at the data mirror or unset it and run "
                            "`make data`")
        if not d.is_dir():
            raise DataError(f"{config.DATA_ENV}={env} but the folder {d} does not exist; point "
                            f"{config.DATA_ENV} at the data mirror or unset it and run `make data`")
        return d
    for d in (config.default_mirror(), config.fetched_dir()):
        if d.is_dir():
            return d
    raise DataError(f"no data directory: neither {config.default_mirror()} nor {config.fetched_dir()} "
                    f"exists; {HOW_TO_FIX}")


def _search_dirs() -> list[Path]:
    """Folders searched for data files, in order (data_dir(), then the fetched cache)."""
    dirs = [data_dir()]
    if config.fetched_dir() not in dirs:
        dirs.append(config.fetched_dir())
    return dirs


def sha256_of(file: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(file, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


#: what a verification is keyed on besides the path: a file replaced after verification changes at least
#: one of them even when its size is kept and its mtime restored (`touch -r`, os.utime), since no
#: ordinary call can set ctime, and a file written anew and renamed into place has a new inode
_STAT_FIELDS = ("size", "mtime_ns", "ctime_ns", "ino", "dev")
#: in-process memo: absolute path -> (size, mtime_ns, ctime_ns, ino, dev, sha256) of a verified file
_MEMO: dict[str, tuple] = {}
#: verified.json records computed in this process and not yet written (flushed in batches and at exit)
_PENDING: dict[str, dict] = {}
_LAST_FLUSH = [0.0]


def _record_path() -> Path:
    return config.cache_dir() / "verified.json"


_RECORD_CACHE: dict[tuple, dict] = {}


def _read_record() -> dict:
    """The verification record (do not mutate); a missing or corrupt one is empty (files are re-hashed)."""
    file = _record_path()
    try:
        st = file.stat()
        key = (str(file), st.st_size, st.st_mtime_ns)
        if key not in _RECORD_CACHE:
            rec = json.loads(file.read_text(encoding="utf-8"))
            _RECORD_CACHE.clear()
            _RECORD_CACHE[key] = rec if isinstance(rec, dict) else {}
        return _RECORD_CACHE[key]
    except (OSError, ValueError):
        return {}


def _flush_record(force: bool = True) -> None:
    """Merge pending verifications into verified.json, atomically (temp file + os.replace).

    Without `force`, writes only when 500 records are pending or 5 s have passed since the last write
    (loading 1000 images must not rewrite the record 1000 times); the rest is written at exit.
    """
    if not _PENDING or (not force and len(_PENDING) < 500 and time.monotonic() - _LAST_FLUSH[0] < 5):
        return
    target = _record_path()
    rec = {**_read_record(), **_PENDING}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".verified-", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(rec, fh, indent=0, sort_keys=True)
        os.replace(tmp, target)
    except OSError:  # a read-only cache only costs re-hashing next time
        if "tmp" in locals() and os.path.exists(tmp):
            os.remove(tmp)
    _PENDING.clear()
    _LAST_FLUSH[0] = time.monotonic()


atexit.register(_flush_record)


def _signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """(size, mtime_ns, ctime_ns, ino, dev) of a stat result (`_STAT_FIELDS`)."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def _remember(file: Path, sha: str) -> None:
    """Record that `file` (as it is now on disk) has sha256 `sha`."""
    key, sig = str(file.resolve()), _signature(file.stat())
    _MEMO[key] = (*sig, sha)
    _PENDING[key] = {**dict(zip(_STAT_FIELDS, sig)), "sha256": sha}


def _check(e: Entry, file: Path, record: dict | None = None) -> None:
    """Raise DataError unless `file` has `e`'s sha256.

    A memo or verified.json record is trusted only when the file's size, mtime, ctime, inode and
    device all match the ones recorded (older records without ctime/inode are re-hashed).
    """
    key = str(file.resolve())
    st = file.stat()
    known = _MEMO.get(key) or _PENDING.get(key)
    if known is None:
        known = (record if record is not None else _read_record()).get(key)
    if isinstance(known, dict):
        known = (*(known.get(f) for f in _STAT_FIELDS), known.get("sha256"))
    if known == (*_signature(st), e.sha256):
        _MEMO[key] = known
        return
    actual = sha256_of(file)
    if actual != e.sha256:
        raise DataError(f"{e} is corrupted: {file} has sha256 {actual} ({st.st_size} bytes) but the "
                        f"manifest expects sha256 {e.sha256} ({e.bytes} bytes); delete it and {HOW_TO_FIX}")
    _remember(file, actual)


def _locate(e: Entry) -> Path:
    """The first existing copy of `e` in the search folders, or DataError naming what to do."""
    try:
        dirs = _search_dirs()
    except DataError as err:
        raise DataError(f"cannot locate {e}: {err}") from None
    for d in dirs:
        if (d / e.path).is_file():
            return d / e.path
    get = f"upstream: {e.url}" if e.url else f"how to get it: {e.how_to_get}"
    raise DataError(f"{e} is missing: looked for {e.path} in {', '.join(map(str, dirs))}; expected "
                    f"sha256 {e.sha256} ({e.bytes} bytes); {HOW_TO_FIX}; {get}")


def path(name: str) -> Path:
    """The verified local path of a data file (sha256 checked before its first use)."""
    e = entry(name)
    file = _locate(e)
    try:
        _check(e, file)
    finally:
        _flush_record(force=False)
    return file


def verify(names: Iterable[str] | None = None, progress: bool = True) -> list[Path]:
    """Verify many files (default: all); checks every one, then raises one DataError listing all failures."""
    from tqdm.auto import tqdm

    entries = [entry(n) for n in (manifest() if names is None else names)]
    data_dir()  # an absent data directory is one error, not one per file
    record = _read_record()
    paths, failures = [], []
    try:
        for e in tqdm(entries, desc="verify", unit="file", disable=not progress, leave=False):
            try:
                file = _locate(e)
                _check(e, file, record)
                paths.append(file)
            except DataError as err:
                failures.append(str(err))
    finally:
        _flush_record()
    if failures:
        shown = failures[:20] + ([f"... and {len(failures) - 20} more"] if len(failures) > 20 else [])
        raise DataError(f"{len(failures)} of {len(entries)} data files failed verification:\n  "
                        + "\n  ".join(shown))
    return paths


# --------------------------------------------------------------------------- fetching (the only network)

_HASH_IN_MESSAGE = re.compile(r"got ([0-9a-fA-F]{64})")


def _download(e: Entry, url: str, dest: Path, progress: bool) -> Path:
    """Download one entry to dest/e.path with pooch; a hash mismatch leaves nothing behind."""
    import pooch
    import requests

    target = dest / e.path
    try:
        pooch.retrieve(url, known_hash=f"sha256:{e.sha256}", fname=target.name, path=target.parent,
                       progressbar=progress and e.bytes > 5_000_000)
    except ValueError as err:  # pooch: hash mismatch (the temporary download is already deleted)
        m = _HASH_IN_MESSAGE.search(str(err))
        if m is None:
            raise DataError(f"{e}: download from {url} failed ({err}); nothing was saved at {target}") from None
        raise DataError(f"{e}: download from {url} is corrupted: expected sha256 {e.sha256}, got "
                        f"sha256 {m.group(1).lower()}; nothing was saved at {target}") from None
    except (requests.exceptions.RequestException, OSError) as err:
        raise DataError(f"{e}: download from {url} failed ({err}); nothing was saved at {target}") from None
    _remember(target, e.sha256)  # pooch has just checked these bytes
    return target


def fetch(names: Iterable[str] | None = None, base_url: str | None = None, dest: Path | str | None = None,
          progress: bool = True) -> list[Path]:
    """Download every entry not already present and valid into `dest` (default: the fetched cache).

    Files come from ``base_url + path`` when `base_url` (default ``$CAUSADV_MIRROR_URL``) is given, a
    server with the data directory's layout, else from each entry's upstream `url`. An entry without
    a `url` (e.g. one converted from an upstream file: `Entry.converted_from`) comes only from a mirror;
    the upstream file it was made from is never downloaded under its name. Every file is tried; then
    one DataError lists all failures. Returns the local paths of all requested files.
    """
    return _fetch(names, base_url, dest, progress)[0]


def _fetch(names, base_url, dest, progress) -> tuple[list[Path], int]:
    """`fetch`, also returning how many files were downloaded."""
    import pooch
    from tqdm.auto import tqdm

    base_url = base_url if base_url is not None else os.environ.get(MIRROR_URL_ENV) or None
    if base_url and not base_url.endswith("/"):
        base_url += "/"
    dest = Path(dest).expanduser().resolve() if dest is not None else config.fetched_dir()
    entries = [entry(n) for n in (manifest() if names is None else names)]
    try:
        search = _search_dirs()
    except DataError:
        if os.environ.get(config.DATA_ENV):
            raise
        search = []
    search = search + [dest] if dest not in search else search
    record = _read_record()
    paths, failures, fetched = [], [], 0
    pooch.get_logger().setLevel("WARNING")
    try:
        for e in tqdm(entries, desc="fetch", unit="file", disable=not progress, leave=False):
            try:
                have = next((d / e.path for d in search if (d / e.path).is_file()), None)
                if have is not None:
                    try:
                        _check(e, have, record)
                        paths.append(have)
                        continue
                    except DataError:
                        if have != dest / e.path:
                            raise
                if base_url:
                    url = base_url + quote(e.path)
                elif e.url:
                    url = e.url
                elif e.converted_from:
                    src = e.converted_from
                    raise DataError(
                        f"{e} is not an upstream file: it was converted from {src['url']} "
                        f"(sha256 {src['sha256'] or 'not recorded'}; {src['how']}), and this project cannot "
                        f"redo the conversion (it reads no pickled checkpoints), so the file comes only from "
                        f"a mirror of the data folder: set {MIRROR_URL_ENV} or pass --base-url (a server "
                        f"with the data folder's layout); expected sha256 {e.sha256} ({e.bytes} bytes)")
                else:
                    raise DataError(f"{e} has no download URL and no mirror was given "
                                    f"(--base-url or {MIRROR_URL_ENV}); how to get it: {e.how_to_get}")
                paths.append(_download(e, url, dest, progress))
                fetched += 1
            except DataError as err:
                failures.append(str(err))
    finally:
        _flush_record()
    if failures:
        raise DataError(f"{len(failures)} of {len(entries)} data files could not be fetched into {dest}:\n  "
                        + "\n  ".join(failures))
    return paths, fetched


# --------------------------------------------------------------------------- images

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


# --------------------------------------------------------------------------- pools

@dataclass(frozen=True, eq=False)
class ImagePool:
    """An ordered, labelled set of images: `ids` (stable order), int64 `labels`, and `class_names`.

    `load(indices)` decodes images to uint8 RGB: an (N, H, W, 3) array when all images share one
    size (CIFAR-10), else a list of (H, W, 3) arrays (ImageNet).

    Your own images: ``ImagePool.from_arrays(images, labels, class_names)`` (in memory), or
    ``ImagePool.from_loader(name, ids, labels, class_names, load)`` (read on demand by ``load(indices)``).
    """

    name: str
    ids: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    _load: Callable[[np.ndarray], list | np.ndarray] = field(repr=False)

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.int64)
        labels.flags.writeable = False
        object.__setattr__(self, "labels", labels)
        if len(labels) != len(self.ids) or len(set(self.ids)) != len(self.ids):
            raise DataError(f"pool {self.name}: {len(self.ids)} ids (unique required) but {len(labels)} labels")
        if len(labels) and not (0 <= labels.min() and labels.max() < len(self.class_names)):
            raise DataError(f"pool {self.name}: labels outside 0..{len(self.class_names) - 1}")

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

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, indices: Sequence[int] | np.ndarray | range | None = None) -> list | np.ndarray:
        """Decode the images at `indices` (default: all), in the order given."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"pool {self.name} has {len(self)} images; indices out of range: "
                             f"{idx[(idx < -len(self)) | (idx >= len(self))][:5].tolist()}")
        return self._load(idx % max(len(self), 1))

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


def _file_loader(names: Sequence[str], stack: bool) -> Callable[[np.ndarray], list | np.ndarray]:
    """Loader of manifest image files (each verified on first use)."""
    def load(idx: np.ndarray):
        images = [load_image(names[i]) for i in idx]
        return np.stack(images) if stack and images else (np.zeros((0, 32, 32, 3), np.uint8) if stack else images)
    return load


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
                     _file_loader(names, stack=False))


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
                     imagenet_class_names(), _file_loader(names, stack=False))


@functools.cache
def _cifar_split(split: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Members SPLIT/CLASS/NNNN.jpg of the CIFAR zip, sorted (class-major), and their labels."""
    with zipfile.ZipFile(path("cifar10_images_zip")) as zf:
        members = sorted(m for m in zf.namelist() if m.startswith(split + "/") and not m.endswith("/"))
    classes = sorted({m.split("/")[1] for m in members})
    if tuple(classes) != CIFAR10_CLASSES:
        raise DataError(f"{entry('cifar10_images_zip')}: {split}/ class folders {classes} != {CIFAR10_CLASSES}")
    return tuple(members), np.array([CIFAR10_CLASSES.index(m.split("/")[1]) for m in members])


@functools.cache
def _cifar_pixels(split: str) -> np.ndarray:
    """All images of a CIFAR split, decoded once per process: (N, 32, 32, 3) uint8, read-only."""
    members, _ = _cifar_split(split)
    zip_path = path("cifar10_images_zip")
    out = np.empty((len(members), 32, 32, 3), np.uint8)
    with zipfile.ZipFile(zip_path) as zf:
        for k, m in enumerate(members):
            img = _decode(zf.read(m), f"{m} in {zip_path}")
            if img.shape != (32, 32, 3):
                raise DataError(f"{m} in {zip_path}: shape {img.shape}, expected (32, 32, 3)")
            out[k] = img
    out.flags.writeable = False
    return out


def _cifar_pool(name: str, split: str) -> ImagePool:
    members, labels = _cifar_split(split)

    def load(idx: np.ndarray) -> np.ndarray:
        path("cifar10_images_zip")  # re-checks (cheaply) that the verified file is still in place
        return _cifar_pixels(split)[idx]  # fancy indexing copies: callers get writable arrays
    return ImagePool(name, members, labels, CIFAR10_CLASSES, load)


def _lossless_pool(kind: str) -> ImagePool:
    names = names_under(f"samples-lossless/{kind}_")
    ids = tuple(n.rsplit("/", 1)[1] for n in names)
    labels = np.array([int(re.findall(r"\d+", i)[-1]) for i in ids])
    classes = CIFAR10_CLASSES if kind == "cifar10" else imagenet_class_names()
    return ImagePool(f"lossless_{kind}", ids, labels, classes, _file_loader(names, stack=kind == "cifar10"))


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


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    """``python -m causadv_lib.data {verify,fetch}``: exit status 0 when every file is present and valid."""
    parser = argparse.ArgumentParser(prog="python -m causadv_lib.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_verify = sub.add_parser("verify", help="check the sha256 of every data file (or the named ones)")
    p_fetch = sub.add_parser("fetch", help="download missing files, then verify all")
    p_fetch.add_argument("--base-url", default=None,
                         help=f"a mirror serving the data folder layout (default ${MIRROR_URL_ENV})")
    for p in (p_verify, p_fetch):
        p.add_argument("names", nargs="*", help="manifest names or paths (default: all)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    names = args.names or None
    start = time.perf_counter()
    try:
        fetched = 0
        if args.command == "fetch":
            fetched = _fetch(names, args.base_url, None, not args.quiet)[1]
        paths = verify(names, progress=not args.quiet)
    except DataError as err:
        print(f"data: FAILED: {err}", file=sys.stderr)
        return 1
    where = sorted({str(p)[: -len(entry(n).path) - 1] for p, n in zip(paths, names or manifest())})
    print(f"data: {len(paths)} file{'s' * (len(paths) != 1)} verified ({fetched} fetched) in {', '.join(where)} "
          f"[{time.perf_counter() - start:.1f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
