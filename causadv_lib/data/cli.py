"""The data layer's command line: ``python -m causadv_lib.data {verify,fetch}``."""
from __future__ import annotations

import argparse
import sys
import time

from .download import MIRROR_URL_ENV, _fetch
from .registry import DataError, entry, manifest
from .verification import verify


def main(argv: list[str] | None = None) -> int:
    """``python -m causadv_lib.data {verify,fetch}``: exit status 0 when every file is present and valid."""
    parser = argparse.ArgumentParser(prog="python -m causadv_lib.data",
                                     description="Verify (sha256) or fetch the data files of data_manifest/*.json.")
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
