"""The manifest registry: every data file's entry (`Entry`), its name, and where it lives on disk.

Every file the project reads is named in ``data_manifest/*.json`` with its sha256 (`manifest`, `entry`,
`names_under`); `data_dir` is the folder it is looked for in and `_locate` the first existing copy.
`DataError` is the data layer's one error: its message says what is wrong and what to do.
"""
from __future__ import annotations

import difflib
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from causadv_lib import config

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
