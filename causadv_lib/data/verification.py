"""Verified file access: sha256 checks and the verification record (``verified.json``).

`path(name)` finds a file (`registry._locate`), checks its sha256 before first use and remembers the
check in ``cache_dir()/verified.json`` (keyed by absolute path; trusted only while the file's size,
mtime, ctime, inode and device are unchanged) so later runs do not re-hash. `verify` checks many files.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from causadv_lib import config
from causadv_lib.io import atomic_write_bytes

from .registry import HOW_TO_FIX, DataError, Entry, _locate, data_dir, entry, manifest

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
    """Merge pending verifications into verified.json, atomically (`atomic_write_bytes`).

    Without `force`, writes only when 500 records are pending or 5 s have passed since the last write
    (loading 1000 images must not rewrite the record 1000 times); the rest is written at exit.
    """
    if not _PENDING or (not force and len(_PENDING) < 500 and time.monotonic() - _LAST_FLUSH[0] < 5):
        return
    rec = {**_read_record(), **_PENDING}
    try:
        atomic_write_bytes(_record_path(), json.dumps(rec, indent=0, sort_keys=True).encode("utf-8"))
    except OSError:  # a read-only cache only costs re-hashing next time (the temporary file is removed)
        pass
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
