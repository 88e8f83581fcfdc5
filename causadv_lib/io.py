"""Writing files safely, and plain-JSON conversion: the one home of both.

`atomic_write_bytes` writes through a temporary file in the target's folder and an atomic rename, so a
reader sees the old file or the new one, never half of one. The file gets the mode `open()` would give
(0666 less the umask: 0644 under umask 022), not `mkstemp`'s 0600, so a web server running as another
user can serve what the package writes. A temporary file is named after its entry, this host and this
process (``.NAME.HOST.PID.RANDOM.tmp``); one left behind by a killed writer (``kill -9``) is removed by
the next write to the same entry once its process is gone, or by `remove_orphans` over a folder
(``make clean-cache``).

`to_jsonable` turns numpy scalars and arrays, tuples and paths into plain JSON values (NaN -> None).
"""
from __future__ import annotations

import math
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

_HOST = socket.gethostname().replace(".", "_") or "host"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _orphan(tmp: Path) -> bool:
    """A temporary file of ours whose writer (on this host) has exited."""
    parts = tmp.name[1:-len(".tmp")].rsplit(".", 3)
    if len(parts) != 4 or parts[1] != _HOST or not parts[2].isdigit():
        return False
    return not _alive(int(parts[2]))


def remove_orphans(folder: Path, name: str | None = None) -> int:
    """Delete temporary files left in `folder` by writers that were killed (of entry `name`, or all);
    returns how many were removed. Live writers' files and other hosts' are kept."""
    folder = Path(folder)
    pattern = f".{name}.*.tmp" if name is not None else ".*.tmp"
    removed = 0
    for tmp in folder.glob(pattern) if folder.is_dir() else ():
        if _orphan(tmp):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and an atomic rename.

    The file's mode is what `open()` would give (0666 & ~umask); orphans of earlier interrupted writes
    to `path` are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plain_name(name, what: str = "name") -> str:
    """`name` if it is a plain file name (no folder, no ``..``, not absolute, not hidden), else a ValueError
    naming it: an output name can never write outside the folder it is meant for."""
    if not isinstance(name, str) or not name or name in (".", "..") or name.startswith(".") or "\0" in name \
            or "/" in name or "\\" in name or (os.altsep and os.altsep in name) or os.path.isabs(name):
        raise ValueError(f"{what} {name!r}: expected a plain file name (letters, digits, '_', '-', '.'; no folder, "
                         "no '..', not absolute, not hidden)")
    return name


def to_jsonable(value: Any) -> Any:
    """Plain-JSON version of numpy scalars/arrays, tuples and paths (NaN becomes None)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
