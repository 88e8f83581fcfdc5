"""Verified data: the manifest registry, sha256-checked file access, fetching, image pools.

Every file the project reads is named in ``data_manifest/*.json`` with its sha256. `path(name)`
finds it in the data directory (see `data_dir`), checks its sha256 before first use and remembers
the check in ``cache_dir()/verified.json`` (keyed by absolute path; trusted only while the file's size,
mtime, ctime, inode and device are unchanged) so later runs do not re-hash. Network access happens
only in `fetch` (``make data``). Pools (`pool`) are the image sets the notebooks use::

    >>> p = pool("cifar10_eval")
    >>> x = p.load(range(8))          # (8, 32, 32, 3) uint8 RGB
    >>> p.class_names[p.labels[0]]
    'airplane'

The data layer knows nothing of models. Modules, one concept each:
  registry      the manifest (`Entry`, `entry`, `names_under`), the data directory, `DataError`
  verification  sha256 checks and the verification record (`path`, `verify`)
  download      fetching missing files, the only network access (`fetch`)
  images        decoding an image to uint8 RGB (`load_image`)
  pools         labelled image sets (`ImagePool`) and the named pools (`pool`)
  cli           ``python -m causadv_lib.data {verify,fetch}`` (`main`)
"""
from .cli import main
from .download import MIRROR_URL_ENV, fetch
from .images import load_image
from .pools import CIFAR10_CLASSES, POOLS, ImagePool, imagenet_class_names, pool
from .registry import HOW_TO_FIX, DataError, Entry, data_dir, entry, manifest, manifest_files, names_under
from .verification import path, sha256_of, verify

__all__ = ["CIFAR10_CLASSES", "HOW_TO_FIX", "MIRROR_URL_ENV", "POOLS", "DataError", "Entry", "ImagePool",
           "data_dir", "entry", "fetch", "imagenet_class_names", "load_image", "main", "manifest",
           "manifest_files", "names_under", "path", "pool", "sha256_of", "verify"]
