"""On-disk cache of computed arrays, keyed by a hash of everything a result depends on.

``key(*parts)`` hashes numpy arrays (dtype, shape and bytes), strings, bytes, numbers, None, and
lists/tuples/dicts of these, each tagged with its type, so that ``key(1)``, ``key(1.0)`` and ``key("1")``
differ. ``weights_fingerprint(model)`` hashes every weight of a model (path, dtype, shape, bytes);
``model_fingerprint(model)`` adds its full configuration (architecture). ``code_hash(*modules)`` hashes the
source text of the modules that compute a result (a package: every ``.py`` file in it), so that editing the
computation changes the key. A result is stored as ``config.cache_dir()/NAMESPACE/KEY.npz`` (plain arrays,
no pickle), written atomically (temp file + ``os.replace``), so an interrupted run never leaves a
half-written entry.

A changed parameter or a changed line of the computing code gives a different key, so a stale entry is
never served; a corrupted entry (or one its `validate` callback refuses) is reported, deleted and
recomputed; delete the folder to reclaim space. A `validate` check runs once per entry content: the sha256
of an entry that passed it (on load, or right after it was computed) is recorded beside it in ``KEY.validated``, and
a later hit whose file has those bytes is served without the check (an attack entry's check is a forward
pass over its images); a file with other bytes is checked again. The one entry point for a call site is `cached`::

    arrays = cached("ci", [model_fingerprint(model), "block5_conv3", images, "probability"],
                    lambda: {"ci": compute_ci(...)}, required=("ci",),
                    code=("causadv_lib.ci", "causadv_lib.keras_graph"))

(`load`, `save` and `key` are the parts it is made of.)
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import io
import json
import mmap
import os
import re
import struct
import types
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from . import config
from .io import atomic_write_bytes, remove_orphans

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _feed(h, part) -> None:
    if part is None:
        h.update(b"N;")
    elif isinstance(part, (bool, np.bool_)):
        h.update(b"b%d;" % int(part))
    elif isinstance(part, (int, np.integer)):
        h.update(b"i%d;" % int(part))
    elif isinstance(part, (float, np.floating)):
        h.update(b"f" + float(part).hex().encode() + b";")
    elif isinstance(part, str):
        data = part.encode()
        h.update(b"s%d:" % len(data) + data)
    elif isinstance(part, (bytes, bytearray, memoryview)):
        data = bytes(part)
        h.update(b"y%d:" % len(data) + data)
    elif isinstance(part, np.ndarray):
        if part.dtype == object:
            raise TypeError("cannot hash an object array; convert it to a numeric or string dtype")
        a = np.ascontiguousarray(part)
        h.update(f"a{a.dtype.str}{a.shape}:".encode())
        h.update(memoryview(a).cast("B"))
    elif isinstance(part, (list, tuple)):
        h.update(b"l%d[" % len(part))
        for p in part:
            _feed(h, p)
        h.update(b"]")
    elif isinstance(part, dict):
        h.update(b"d%d{" % len(part))
        for k in sorted(part, key=str):
            _feed(h, str(k))
            _feed(h, part[k])
        h.update(b"}")
    else:
        raise TypeError(f"cannot hash a {type(part).__name__} for a cache key; "
                        "expected arrays, str, bytes, numbers, None, or lists/dicts of these")


def key(*parts) -> str:
    """Stable hex digest (sha256) of `parts`: equal inputs give equal keys across runs and machines."""
    h = hashlib.sha256()
    _feed(h, list(parts))
    return h.hexdigest()


def weights_fingerprint(model) -> str:
    """Hash of every weight of a Keras model (path, dtype, shape and bytes).

    Recomputed at each call (sha256 at ~1 GB/s: 15 ms for the CIFAR VGG, 0.5 s for VGG16 at 224), so
    changing a weight in place can never serve a stale result.
    """
    h = hashlib.sha256()
    for v in model.weights:
        _feed(h, getattr(v, "path", v.name))
        _feed(h, np.asarray(v.numpy()))
    return h.hexdigest()


def architecture_fingerprint(model) -> str:
    """Hash of a Keras model's full configuration (every layer, its settings and its connections).

    Weightless layers (a ``Rescaling``, a changed activation) change the result without changing a
    weight, so a cache key needs this as well as `weights_fingerprint`.
    """
    try:
        config = model.get_config()
    except NotImplementedError:  # a subclassed model without get_config: its class and layer list
        config = {"class": f"{type(model).__module__}.{type(model).__qualname__}",
                  "layers": [(type(lyr).__qualname__, lyr.get_config()) for lyr in model.layers]}
    text = json.dumps(config, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def model_fingerprint(model) -> str:
    """Hash of everything about a Keras model that a result can depend on: architecture and weights.

    Recomputed at each call, except inside `models_fixed`, where each model's is computed once."""
    if _FIXED is not None:
        got = _FIXED.get(id(model))
        if got is None or got[0] is not model:
            got = _FIXED[id(model)] = (model, _model_fingerprint(model))
        return got[1]
    return _model_fingerprint(model)


def _model_fingerprint(model) -> str:
    return key("model", type(model).__qualname__, architecture_fingerprint(model), weights_fingerprint(model))


#: id(model) -> (model, fingerprint) inside `models_fixed`, else None
_FIXED: dict[int, tuple[object, str]] | None = None


@contextlib.contextmanager
def models_fixed():
    """A block in which no model changes a weight or a layer: `model_fingerprint` computes each model's once
    (the experiment's build asks for it once per attack and per CI pass, 0.1 s each on the CIFAR VGG). The
    models are held until the block ends; blocks nest."""
    global _FIXED
    outer = _FIXED
    _FIXED = {} if outer is None else outer
    try:
        yield
    finally:
        _FIXED = outer


_PLAIN = (str, int, float, bool, type(None))


def callable_key(fn) -> list | None:
    """A key part naming a library function (``causadv_lib.preprocess.preprocess_mobilenet_v2``), or a
    ``functools.partial`` of one with plain arguments (strings, numbers, tuples of these); None for anything
    else (a lambda, a closure, a function of yours), whose behaviour a name cannot stand for. The function's
    source is not in the part: pass its module in the ``code`` of `cached`."""
    args, kwargs = (), {}
    if isinstance(fn, functools.partial):
        fn, args, kwargs = fn.func, fn.args, dict(fn.keywords)
    plain = all(isinstance(a, _PLAIN) or (isinstance(a, tuple) and all(isinstance(b, _PLAIN) for b in a))
                for a in (*args, *kwargs.values()))
    if (not isinstance(fn, types.FunctionType) or fn.__closure__ is not None or "<" in fn.__qualname__
            or not (fn.__module__ or "").startswith(__package__ + ".") or not plain):
        return None
    return ["function", fn.__module__, fn.__qualname__, [repr(a) for a in args],
            {k: repr(v) for k, v in sorted(kwargs.items())}]


def path(namespace: str, k: str) -> Path:
    """File of entry `k` in `namespace`."""
    if not _NAMESPACE.match(namespace) or not re.fullmatch(r"[0-9a-f]{16,128}", k):
        raise ValueError(f"bad cache namespace {namespace!r} or key {k!r}: expected a plain name and a hex key")
    return config.cache_dir() / namespace / f"{k}.npz"


def discard(file: Path, why: str) -> None:
    """Warn that a cache entry is unusable (naming the file) and delete it, so it is recomputed."""
    warnings.warn(f"cache entry {file} is unusable ({why}); recomputing it", RuntimeWarning, stacklevel=3)
    for f in (file, _validated_path(file)):
        try:
            f.unlink()
        except OSError:
            pass


def load(namespace: str, k: str, required: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """The arrays stored under `k`, or None when there is no entry.

    A corrupted entry (truncated, empty, unreadable, or without one of the `required` arrays) is
    reported with a warning naming the file, deleted and treated as absent, so it is recomputed.
    """
    got = _load(namespace, k, required)
    return None if got is None else got[0]


def _load(namespace: str, k: str, required: tuple[str, ...], mapped: tuple[str, ...] = ()
          ) -> tuple[dict[str, np.ndarray], str] | None:
    """(arrays, sha256 of the entry file's bytes) of `load`, the file opened once and mapped in memory.

    mapped: arrays served as read-only views of the mapped file, read from disk only where they are used (an
    attack entry's 180 MB of adversarial pixels, which most readers of an experiment never look at), when the
    file's sha256 is the one recorded in ``KEY.validated`` (`_was_validated`: these bytes were checked
    before, so the zip's own CRC check is not needed); every other array is read and CRC-checked by
    ``np.load``, as are all of them for an entry without that record."""
    p = path(namespace, k)
    try:
        fh = open(p, "rb")
    except FileNotFoundError:
        return None
    try:
        with fh:
            size = os.fstat(fh.fileno()).st_size
            view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            digest = hashlib.sha256(view).hexdigest()
            views = _mapped_arrays(fh, view, mapped) if mapped and _was_validated(p, digest) else {}
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as z:
                arrays = {name: views[name] if name in views else z[name] for name in z.files}
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
        discard(p, f"{type(e).__name__}: {e}")
        return None
    missing = [name for name in required if name not in arrays]
    if missing:
        discard(p, f"missing arrays {missing}")
        return None
    return arrays, digest


def _mapped_arrays(fh, view, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays `names` (those present) of the .npz file `fh`, as read-only views of `view` (the file mapped
    in memory): ``np.load`` maps no member of an .npz (its ``mmap_mode`` is for .npy files), so each stored
    (uncompressed) member's offset and .npy header are read here. A ValueError for a member that cannot be
    viewed so."""
    fh.seek(0)
    with zipfile.ZipFile(fh) as z:
        infos = {n: z.getinfo(f"{n}.npy") for n in names if f"{n}.npy" in z.NameToInfo}
    views = {name: _mapped_array(fh, view, name, info) for name, info in infos.items()}
    return {name: v for name, v in views.items() if v is not None}


def _mapped_array(fh, view, name: str, info: zipfile.ZipInfo) -> np.ndarray:
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        raise ValueError(f"array {name!r} is compressed or encrypted; expected a stored (uncompressed) member")
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise ValueError(f"array {name!r}: bad zip local header")
    start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
    fh.seek(start)
    version = np.lib.format.read_magic(fh)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ValueError(f"array {name!r}: unsupported .npy version {version}")
    shape, fortran, dtype = read_header(fh)
    if dtype.hasobject:
        raise ValueError(f"array {name!r} holds Python objects; refused (no pickle)")
    offset, count = fh.tell(), int(np.prod(shape, dtype=np.int64))
    if offset - start + count * dtype.itemsize != info.file_size or start + info.file_size > len(view):
        raise ValueError(f"array {name!r}: its size does not match its zip member")
    if offset % ALIGN:          # an entry written by np.savez: read it (`_load`), not a slow unaligned view
        return None
    return np.frombuffer(view, dtype=dtype, count=count, offset=offset).reshape(shape, order="F" if fortran else "C")


def _validated_path(entry: Path) -> Path:
    """The record that `entry` (its bytes, by sha256) passed its call site's `validate`: ``KEY.validated``."""
    return entry.with_suffix(".validated")


def _was_validated(entry: Path, digest: str) -> bool:
    try:
        return _validated_path(entry).read_text(encoding="ascii").strip() == digest
    except (OSError, UnicodeDecodeError):
        return False


def _record_validated(entry: Path, digest: str) -> None:
    atomic_write_bytes(_validated_path(entry), digest.encode() + b"\n")


def save(namespace: str, k: str, arrays: dict[str, np.ndarray]) -> Path:
    """Store `arrays` (name -> array, no object arrays) under `k`, atomically; returns the file."""
    return _save(namespace, k, arrays)[0]


def _save(namespace: str, k: str, arrays: dict[str, np.ndarray]) -> tuple[Path, str]:
    """(file, sha256 of its bytes) of `save`."""
    p = path(namespace, k)
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    bad = [name for name, a in arrays.items() if a.dtype == object]
    if bad:
        raise TypeError(f"cannot cache object arrays {bad} without pickle; use numeric or string dtypes")
    raw = _npz_bytes(arrays)
    atomic_write_bytes(p, raw)
    return p, hashlib.sha256(raw).hexdigest()


#: where each array's data starts in an entry file (bytes): numpy runs unaligned float arrays on slow paths, and
#: TensorFlow copies them, so a member mapped in memory (`_mapped_array`) must start aligned
ALIGN = 64


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """`arrays` as the bytes of an .npz file (what ``np.load`` reads), each stored member's data ALIGN-aligned in
    the file: its local header's extra field is padded (the 0xD935 alignment field of Android's zipalign), and
    a .npy header is a multiple of 64 bytes. The members carry a fixed date, so equal arrays give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, a in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, a, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            start = buf.tell() + 30 + len(info.filename.encode()) + 6
            info.extra = struct.pack("<HHH", 0xD935, 2 + (-start) % ALIGN, ALIGN) + b"\0" * ((-start) % ALIGN)
            z.writestr(info, npy.getbuffer())
    return buf.getvalue()


# --------------------------------------------------------------------------------------- code hash
_CODE_HASHES: dict[tuple, str] = {}


def _module(m) -> types.ModuleType:
    if isinstance(m, str):
        return importlib.import_module(m)
    if isinstance(m, types.ModuleType):
        return m
    raise TypeError(f"code_hash takes modules or dotted module names, got a {type(m).__name__}: {m!r}")


def _sources(mod: types.ModuleType) -> list[tuple[str, Path]]:
    """(name, file) of every source file of `mod`: the module's file, or each .py file of a package."""
    if hasattr(mod, "__path__"):  # a package: every .py file under it (sub-packages too), in sorted order
        files = []
        for d in mod.__path__:
            root = Path(d)
            files += [(f"{mod.__name__}/{f.relative_to(root).as_posix()}", f) for f in root.rglob("*.py")
                      if "__pycache__" not in f.parts]
        if not files:
            raise TypeError(f"package {mod.__name__!r} has no .py files to hash")
        return sorted(files)
    file = getattr(mod, "__file__", None)
    if not file or not str(file).endswith(".py"):
        raise TypeError(f"module {mod.__name__!r} has no Python source file to hash ({file!r})")
    return [(mod.__name__, Path(file))]


def code_hash(*modules) -> str:
    """sha256 of the source text of `modules` (module objects or dotted names; a package counts every
    .py file in it, sub-packages included, in sorted order).

    Each file is fed with its name (module name, or package name + relative path) and its bytes; the
    modules are taken in name order, so the order they are given in does not matter. Computed once per
    process per module set: the code a process runs is the code it imported.
    """
    if not modules:
        raise ValueError("code_hash needs at least one module: the code that computes the result")
    mods = sorted({m.__name__: m for m in map(_module, modules)}.items())
    memo = tuple((name, getattr(m, "__file__", None), tuple(getattr(m, "__path__", ()))) for name, m in mods)
    if memo not in _CODE_HASHES:
        h = hashlib.sha256()
        files = [src for _, m in mods for src in _sources(m)]
        _feed(h, [[name, f.read_bytes()] for name, f in files])
        _CODE_HASHES[memo] = h.hexdigest()
    return _CODE_HASHES[memo]


# ------------------------------------------------------------------------------------------ cached
def entry_key(namespace: str, key_parts: Iterable, code: tuple) -> str:
    """The key of `cached`'s entry for these arguments: a name for its result in the key of another result
    computed from it (the CI of an attack's adversarial pixels), in place of the result's bytes."""
    if isinstance(code, (str, types.ModuleType)):
        code = (code,)
    return key(namespace, list(key_parts), ["code", code_hash(*code)])


def cached(namespace: str, key_parts: Iterable, compute: Callable[[], dict], *, required: tuple[str, ...] = (),
           validate: Callable[[dict], str | None] | None = None, code: tuple,
           mapped: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays `compute()` returns, served from ``NAMESPACE/KEY.npz`` when a good entry is there.

    key_parts: everything the result depends on besides code (the model fingerprint, the inputs, the
    parameters, library versions); the key is `key` of the namespace, these parts and
    ``code_hash(*code)``. code: the modules (or dotted names; packages allowed) whose source computes
    the result; required at every call site, since a cache that ignores the code serves old results
    after a change. An entry is served when it loads, holds every `required` array and
    ``validate(arrays)`` (optional) returns None; a corrupted entry, or one `validate` refuses (it returns
    why), is reported with a RuntimeWarning naming the file, deleted, and recomputed. Otherwise
    `compute()` (a dict name -> array) runs, its result is saved and returned.

    Hit and miss return the same thing: a dict of numpy arrays (``np.asarray`` of what `compute`
    returned), bit-identical to what is stored. mapped: names of (large) arrays that a hit on an entry that
    passed `validate` before serves as read-only views of the file mapped in memory, read from disk only where
    they are used (`_load`).
    """
    k = entry_key(namespace, key_parts, code)
    hit = _load(namespace, k, tuple(required), tuple(mapped) if validate is not None else ())
    if hit is not None:
        arrays, digest = hit
        entry = path(namespace, k)
        if validate is None or _was_validated(entry, digest):
            return arrays
        why = validate(arrays)
        if why is None:
            _record_validated(entry, digest)
            return arrays
        discard(entry, why)
    arrays = compute()
    if not isinstance(arrays, dict):
        raise TypeError(f"compute() must return a dict of arrays for the cache, got a {type(arrays).__name__}")
    missing = [name for name in required if name not in arrays]
    if missing:
        raise ValueError(f"compute() did not return the required arrays {missing} (it returned {sorted(arrays)})")
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    entry, digest = _save(namespace, k, arrays)
    if validate is not None and validate(arrays) is None:    # a wrong computation is stored unrecorded: the
        _record_validated(entry, digest)                      # next load checks it again, warns and recomputes
    return arrays


def clean_orphans() -> int:
    """Remove the temporary files that killed writers left in every namespace of the cache (``make
    clean-cache``); returns how many. Entries and live writers' files are kept."""
    root = config.cache_dir()
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return sum(remove_orphans(f) for f in folders)


if __name__ == "__main__":
    print(f"{clean_orphans()} orphaned temporary files removed from {config.cache_dir()}")
