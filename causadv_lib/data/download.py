"""Fetching missing data files (``make data``): the data layer's only network access.

`fetch` downloads each entry from a mirror with the data folder's layout (``$CAUSADV_MIRROR_URL`` or
``base_url``) or from its upstream `url`, checking its sha256 as it arrives.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable
from urllib.parse import quote

from tqdm import tqdm

from causadv_lib import config

from .registry import DataError, Entry, _search_dirs, entry, manifest
from .verification import _check, _flush_record, _read_record, _remember

MIRROR_URL_ENV = "CAUSADV_MIRROR_URL"


_HASH_IN_MESSAGE = re.compile(r"got ([0-9a-fA-F]{64})")


def _download(e: Entry, url: str, dest: Path, progress: bool) -> Path:
    """Download one entry to dest/e.path with pooch; a hash mismatch leaves nothing behind."""
    # imported here, not at the top: only the explicit download command (`make data`) uses the HTTP
    # stack, and every other run that imports the data layer would pay ~0.3 s for pooch and requests
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
    import pooch  # only the download command uses it (see `_download`)

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
