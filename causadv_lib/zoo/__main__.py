"""``python -m causadv_lib.zoo check [--models ...] [--limit N]``: top-1 of zoo models on their pools.

Prints one line per model and pool, ``MODEL POOL top1=0.xxxx n=N``. A model that cannot be built
here (`ModelUnavailableError`, e.g. vgg16_imagenet offline) prints ``MODEL unavailable: why`` and is
skipped; it makes the exit status 1 only when it was asked for by name with ``--models``. Bad
arguments (an unknown model, ``--limit``/``--batch-size`` not a positive integer) exit with status 2.
"""
from __future__ import annotations

import argparse
import sys

from .evaluate import CHECK_POOLS, top1
from .keras_apps import ModelUnavailableError
from .registry import UnknownModelError, get, names


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--limit 0`` would give top1=nan; a negative batch size crashes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive integer (1, 2, ...)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value}: expected a positive integer (1, 2, ...)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m causadv_lib.zoo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="top-1 accuracy of each model on its dataset's pools")
    check.add_argument("--models", nargs="+", default=None, help=f"default: all ({', '.join(names())})")
    check.add_argument("--limit", type=positive_int, default=None, metavar="N",
                       help="at most N images per pool, evenly spread (N >= 1; default: all)")
    check.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                       help="images per batch (N >= 1; default 32 for ImageNet-size inputs, 500 for CIFAR)")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    status = 0
    for name in args.models or names():
        try:
            zm = get(name)
        except UnknownModelError as err:
            print(f"zoo: {err}", file=sys.stderr)
            return 2
        except ModelUnavailableError as err:
            print(f"{name} unavailable: {err}", flush=True)
            status |= int(args.models is not None)
            continue
        for pool in CHECK_POOLS[zm.dataset]:
            r = top1(zm, pool, limit=args.limit, batch_size=args.batch_size, progress=not args.quiet)
            print(r.line(), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
