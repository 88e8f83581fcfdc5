"""The verified data layer: manifest, data_dir/path/verify errors, the verification record, images, pools."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from causadv_lib import config, data
from causadv_lib.data import images, verification

MIRROR = config.default_mirror()
needs_mirror = pytest.mark.skipif(not (MIRROR / "MANIFEST.json").is_file(), reason="no data mirror here")

SMALL = ["synset_words", "samples-lossless/cifar10_00_3.png", "samples-lossless/cifar10_01_8.png",
         "vgg16_bn_cifar10_json"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own cache dir (verified.json, fetched files) and a fresh in-process memo."""
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(config.DATA_ENV, raising=False)
    for memo in (verification._MEMO, verification._PENDING, verification._RECORD_CACHE):
        memo.clear()
    yield
    verification._PENDING.clear()  # never write a test's records at exit


@pytest.fixture
def farm(tmp_path, monkeypatch):
    """A data dir of symlinks to a few small mirror files, as CAUSADV_DATA; returns its path."""
    root = tmp_path / "farm"
    for name in SMALL:
        e = data.entry(name)
        (root / e.path).parent.mkdir(parents=True, exist_ok=True)
        (root / e.path).symlink_to(MIRROR / e.path)
    monkeypatch.setenv(config.DATA_ENV, str(root))
    return root


def corrupt(root, name):
    """Replace the farm's file `name` by a copy with one byte flipped; returns (path, actual sha256)."""
    f = root / data.entry(name).path
    raw = bytearray((MIRROR / data.entry(name).path).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.unlink()
    f.write_bytes(bytes(raw))
    return f, hashlib.sha256(raw).hexdigest()


# --------------------------------------------------------------------------- manifest

@needs_mirror
def test_manifest_matches_the_mirror_manifest():
    upstream = json.loads((MIRROR / "MANIFEST.json").read_text())
    entries = data.manifest()
    assert sorted(e.path for e in entries.values()) == sorted(upstream)
    for e in entries.values():
        assert (e.sha256, e.bytes) == (upstream[e.path]["sha256"], upstream[e.path]["bytes"]), e.path
        assert e.source == upstream[e.path]["source"]
        assert (e.url is None) != (e.how_to_get is None), e.path
        if e.source.startswith("github ") and e.path != "cifar10/cifar10-images.zip":
            commit = e.source.split("@")[1].split(":")[0]
            upstream_url = e.converted_from["url"] if e.converted_from else e.url
            assert upstream_url.startswith("https://raw.githubusercontent.com/") and f"/{commit}/" in upstream_url
            # a url is a download of these very bytes: the upstream file has the same type
            upstream_name = e.source.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
            if e.url is not None:
                assert os.path.splitext(upstream_name)[1] == os.path.splitext(e.path)[1], e.path
    for name in ("mobilenet_v2_tflite", "mobilenet_v1_tflite", "imagenet_labels", "synset_words",
                 "val1300_labels", "cifar10_images_zip", "vgg16_bn_cifar10_weights", "vgg16_bn_cifar10_json",
                 "resnet20_akamaster_weights", "resnet56_akamaster_weights"):
        assert name in entries
    assert entries["cifar10_images_zip"].url is None and "mirror" in entries["cifar10_images_zip"].how_to_get
    converted = {e.name for e in entries.values() if e.converted_from}
    assert converted == {"resnet20_akamaster_weights", "resnet56_akamaster_weights"}
    for name in converted:  # the .npz are conversions of the .th checkpoints: no url of their own
        e = entries[name]
        assert e.url is None and e.converted_from["url"].endswith(".th") and e.path.endswith(".npz")
        assert e.converted_from["how"] == upstream[e.path]["note"] and "state_dict" in e.converted_from["how"]
        assert "mirror" in e.how_to_get and "cannot redo the conversion" in e.how_to_get
    assert "pip download" in entries["samples-lossless/cifar10_00_3.png"].how_to_get


@needs_mirror
def test_committed_manifest_is_what_the_build_script_writes():
    spec = importlib.util.spec_from_file_location("build_manifest", config.MANIFEST_DIR / "build_manifest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    texts = mod.build(MIRROR)
    assert {config.MANIFEST_DIR / f for f in texts} == set(data.manifest_files())
    for fname, text in texts.items():
        assert text == (config.MANIFEST_DIR / fname).read_text(encoding="utf-8"), fname
        assert len(text) < 1024 * 1024, f"{fname} is over 1 MiB"


def test_unknown_name_lists_close_matches():
    with pytest.raises(data.DataError, match="mobilenet_v2_tflite"):
        data.entry("mobilenet_v2")


# --------------------------------------------------------------------------- data_dir / path errors

def test_data_env_pointing_nowhere(tmp_path, monkeypatch):
    nowhere = tmp_path / "nowhere"
    monkeypatch.setenv(config.DATA_ENV, str(nowhere))
    with pytest.raises(data.DataError, match=config.DATA_ENV) as err:
        data.data_dir()
    assert str(nowhere) in str(err.value)
    with pytest.raises(data.DataError, match="synset_words"):
        data.path("synset_words")


def test_data_env_pointing_at_a_file(tmp_path, monkeypatch):
    file = tmp_path / "data.zip"
    file.write_bytes(b"not a folder")
    monkeypatch.setenv(config.DATA_ENV, str(file))
    with pytest.raises(data.DataError) as err:
        data.data_dir()
    msg = str(err.value)
    assert f"{config.DATA_ENV}={file}" in msg and f"{file} is a file, expected a directory" in msg
    assert "does not exist" not in msg


def test_a_converted_entry_cannot_carry_a_url():
    fields = dict(name="w", path="w.npz", sha256="0" * 64, bytes=1, source="s", how_to_get=None, licence="l",
                  converted_from={"url": "https://example.org/w.th", "sha256": None, "how": "re-saved"})
    with pytest.raises(data.DataError, match=r"w is converted from https://example.org/w.th but has url"):
        data.Entry(url="https://example.org/w.th", **fields)
    assert data.Entry(url=None, **{**fields, "how_to_get": "mirror"}).converted_from["how"] == "re-saved"


def test_no_data_dir_at_all(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "default_mirror", lambda: tmp_path / "no-mirror")
    with pytest.raises(data.DataError, match="make data"):
        data.data_dir()


@needs_mirror
def test_missing_file_names_file_hash_and_remedy(farm):
    e = data.entry("imagenet_labels")
    with pytest.raises(data.DataError) as err:
        data.path("imagenet_labels")
    msg = str(err.value)
    for part in (e.name, e.path, e.sha256, "make data", config.DATA_ENV, e.url):
        assert part in msg


@needs_mirror
def test_corrupted_file_names_expected_and_actual_hash(farm):
    f, actual = corrupt(farm, "samples-lossless/cifar10_01_8.png")
    e = data.entry("samples-lossless/cifar10_01_8.png")
    with pytest.raises(data.DataError) as err:
        data.path(e.name)
    assert e.sha256 in str(err.value) and actual in str(err.value) and str(f) in str(err.value)
    with pytest.raises(data.DataError, match=actual):  # also through the image loader
        data.load_image(e.name)


@needs_mirror
def test_fetched_dir_is_searched_after_data_dir(farm):
    e = data.entry("imagenet_labels")
    fetched = config.fetched_dir() / e.path
    fetched.parent.mkdir(parents=True)
    shutil.copy(MIRROR / e.path, fetched)
    assert data.path("imagenet_labels") == fetched
    assert data.path("synset_words") == farm / data.entry("synset_words").path


@needs_mirror
def test_verify_checks_all_then_lists_every_failure(farm):
    _, actual = corrupt(farm, "samples-lossless/cifar10_01_8.png")
    good = ["synset_words", "samples-lossless/cifar10_00_3.png"]
    assert data.verify(good, progress=False) == [farm / data.entry(n).path for n in good]
    with pytest.raises(data.DataError) as err:
        data.verify(good + ["samples-lossless/cifar10_01_8.png", "imagenet_labels"], progress=False)
    msg = str(err.value)
    assert msg.startswith("2 of 4") and actual in msg and "imagenet_labels" in msg


# --------------------------------------------------------------------------- the verification record

@needs_mirror
def test_record_lets_a_later_process_skip_hashing(farm, monkeypatch):
    name = "vgg16_bn_cifar10_json"
    f = farm / data.entry(name).path
    f.unlink()
    shutil.copy(MIRROR / data.entry(name).path, f)  # a real file we may touch (never the mirror's)
    assert data.path(name) == f
    verification._flush_record()  # as at process exit (path() batches its writes)
    rec = json.loads((config.cache_dir() / "verified.json").read_text())
    key = str(f.resolve())
    assert rec[key]["sha256"] == data.entry(name).sha256 and rec[key]["size"] == f.stat().st_size

    verification._MEMO.clear()  # as a new process would start
    calls = []
    real = verification.sha256_of
    monkeypatch.setattr(verification, "sha256_of", lambda p: calls.append(p) or real(p))
    assert data.path(name) == f and calls == []

    verification._MEMO.clear()
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert data.path(name) == f and len(calls) == 1  # changed mtime: hashed again


@needs_mirror
@pytest.mark.parametrize("how", ["in_place", "renamed_over"])
def test_a_replaced_file_with_size_and_mtime_restored_is_caught(farm, how):
    """`touch -r` (os.utime) restores mtime but not ctime; a file renamed into place also has a new inode."""
    name = "vgg16_bn_cifar10_json"
    e = data.entry(name)
    f = farm / e.path
    f.unlink()
    shutil.copy(MIRROR / e.path, f)
    assert data.verify([name], progress=False) == [f]
    verification._flush_record()
    before = f.stat()
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # same size, other bytes
    time.sleep(0.05)  # past the coarse clock tick of file timestamps
    if how == "in_place":
        with open(f, "r+b") as fh:
            fh.write(raw)
    else:
        tmp = f.with_name(f.name + ".new")
        tmp.write_bytes(raw)
        os.replace(tmp, f)
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = f.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    actual = hashlib.sha256(raw).hexdigest()
    for fresh_process in (False, True):  # the in-process memo, then verified.json alone
        if fresh_process:
            verification._MEMO.clear()
            verification._PENDING.clear()
            verification._RECORD_CACHE.clear()
        with pytest.raises(data.DataError, match="1 of 1") as err:
            data.verify([name], progress=False)
        assert actual in str(err.value) and e.sha256 in str(err.value) and "corrupted" in str(err.value)
    rec = json.loads((config.cache_dir() / "verified.json").read_text())[str(f.resolve())]
    assert set(rec) == {"size", "mtime_ns", "ctime_ns", "ino", "dev", "sha256"}


@needs_mirror
def test_corrupt_or_missing_record_means_rehash(farm, monkeypatch):
    data.path("synset_words")
    verification._flush_record()
    record = config.cache_dir() / "verified.json"
    record.write_text("{not json")
    verification._MEMO.clear()
    calls = []
    real = verification.sha256_of
    monkeypatch.setattr(verification, "sha256_of", lambda p: calls.append(p) or real(p))
    data.path("synset_words")
    assert len(calls) == 1
    verification._flush_record()
    assert json.loads(record.read_text())  # rewritten as valid JSON
    assert not [p for p in record.parent.iterdir() if p.name.endswith(".tmp")]  # no temporary files left


@needs_mirror
def test_an_unwritable_record_only_costs_rehashing(farm):
    """A verified.json that cannot be replaced (a folder in its place) is no error and leaves no temporary file."""
    record = config.cache_dir() / "verified.json"
    record.mkdir(parents=True)
    assert data.path("synset_words") == farm / data.entry("synset_words").path
    verification._flush_record()  # os.replace onto a folder fails: the write is given up
    assert record.is_dir() and not verification._PENDING
    assert not [p for p in record.parent.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- images

def test_image_modes_become_uint8_rgb(tmp_path):
    palette = Image.new("P", (4, 3), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    transparent = palette.copy()
    transparent.info["transparency"] = 1
    cases = {  # mode -> (image, expected pixel)
        "L.png": (Image.new("L", (4, 3), 77), (77, 77, 77)),
        "LA.png": (Image.new("LA", (4, 3), (0, 0)), (255, 255, 255)),  # fully transparent: white
        "RGBA.png": (Image.new("RGBA", (4, 3), (255, 0, 0, 128)), (255, 127, 127)),
        "P.png": (palette, (10, 20, 30)),
        "Pt.png": (transparent, (255, 255, 255)),
        "I16.png": (Image.fromarray(np.full((3, 4), 0x8000, np.uint16)), (128, 128, 128)),
        "CMYK.jpg": (Image.new("CMYK", (4, 3), (0, 255, 255, 0)), (255, 0, 0)),
    }
    for fname, (img, pixel) in cases.items():
        img.save(tmp_path / fname, **({"quality": 100} if fname.endswith("jpg") else {}))
        arr = data.load_image(tmp_path / fname)
        assert arr.dtype == np.uint8 and arr.shape == (3, 4, 3), fname
        np.testing.assert_allclose(arr[0, 0], pixel, atol=2, err_msg=fname)


def test_undecodable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(data.DataError, match="broken.jpg"):
        data.load_image(bad)


@needs_mirror
def test_grayscale_mirror_jpeg_is_replicated():
    name = "imagenet/sample-images/n02096051_Airedale.JPEG"  # one of the 23 grayscale sample images
    with Image.open(data.path(name)) as img:
        assert img.mode == "L"
    arr = data.load_image(name)
    assert arr.ndim == 3 and arr.shape[2] == 3 and (arr[..., 0] == arr[..., 2]).all()


# --------------------------------------------------------------------------- pools

@needs_mirror
@pytest.mark.parametrize("name,size,n_classes", [
    ("imagenet_prototypes", 1000, 1000), ("imagenet_eval", 1300, 1000), ("cifar10_prototypes", 10000, 10),
    ("cifar10_eval", 10000, 10), ("lossless_cifar10", 20, 10), ("lossless_imagenet", 20, 1000)])
def test_pool_sizes_labels_and_ids(name, size, n_classes):
    p = data.pool(name)
    assert len(p) == len(p.ids) == len(p.labels) == size
    assert p.labels.dtype == np.int64 and len(p.class_names) == n_classes
    assert 0 <= p.labels.min() and p.labels.max() < n_classes
    assert list(p.ids) == sorted(p.ids) and len(set(p.ids)) == size  # ordered, unique
    np.testing.assert_array_equal(p.index_of(p.ids[::97]), np.arange(size)[::97])
    with pytest.raises(ValueError):
        p.labels[0] = 0  # read-only


@needs_mirror
def test_pool_contents():
    protos = data.pool("imagenet_prototypes")
    np.testing.assert_array_equal(protos.labels, np.arange(1000))
    assert protos.ids[0] == "n01440764_tench.JPEG" and protos.class_names[0] == "tench"
    ev = data.pool("imagenet_eval")
    assert ev.labels[ev.index_of(["ILSVRC2012_val_00000347.JPEG"])[0]] == 472  # first row of labels.txt
    assert len(set(ev.labels.tolist())) == 725
    for name in ("cifar10_prototypes", "cifar10_eval"):
        p = data.pool(name)
        assert np.bincount(p.labels).tolist() == [1000] * 10
        assert p.class_names == ("airplane", "automobile", "bird", "cat", "deer",
                                 "dog", "frog", "horse", "ship", "truck")
        assert p.ids[1000] == f"{'train' if name == 'cifar10_prototypes' else 'test'}/automobile/0000.jpg"
    lossless = data.pool("lossless_imagenet")
    assert lossless.ids[0] == "imagenet_00_243.jpg" and lossless.labels[0] == 243
    assert data.pool("lossless_cifar10").labels[:4].tolist() == [3, 8, 8, 0]


@needs_mirror
def test_pool_loading():
    cifar = data.pool("cifar10_eval")
    x = cifar.load([0, 9999, 5])
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8 and x.flags.writeable
    np.testing.assert_array_equal(x[0], images._decode(_zip_member("test/airplane/0000.jpg"), "member"))
    imgs = data.pool("imagenet_prototypes").load([0, 1])
    assert isinstance(imgs, list) and all(i.dtype == np.uint8 and i.ndim == 3 and i.shape[2] == 3 for i in imgs)
    lossless = data.pool("lossless_cifar10").load()
    assert lossless.shape == (20, 32, 32, 3)
    with pytest.raises(IndexError):
        cifar.load([10000])
    with pytest.raises(data.DataError, match="no images with ids"):
        cifar.index_of(["test/airplane/9999.jpg"])
    with pytest.raises(data.DataError, match="cifar10_eval"):
        data.pool("cifar_eval")


def _zip_member(member):
    with zipfile.ZipFile(data.path("cifar10_images_zip")) as zf:
        return zf.read(member)


# --------------------------------------------------------------------------- command line

@needs_mirror
def test_cli_verify(farm, capsys):
    assert data.main(["verify", "-q", "synset_words", "vgg16_bn_cifar10_json"]) == 0
    assert "2 files verified" in capsys.readouterr().out
    corrupt(farm, "synset_words")
    assert data.main(["verify", "-q", "synset_words"]) == 1
    assert "corrupted" in capsys.readouterr().err


@needs_mirror
def test_cli_as_module(farm):
    run = subprocess.run([sys.executable, "-m", "causadv_lib.data", "verify", "-q", "synset_words"],
                         capture_output=True, text=True, cwd=config.PROJECT_ROOT, env=os.environ.copy())
    assert run.returncode == 0 and "1 file verified" in run.stdout, run.stderr


# --------------------------------------------------------------------------- full scale

@needs_mirror
@pytest.mark.slow
def test_every_mirror_file_verifies_and_every_image_decodes():
    assert len(data.verify(progress=False)) == len(data.manifest())
    for name in ("imagenet_prototypes", "imagenet_eval", "lossless_imagenet"):
        p = data.pool(name)
        for start in range(0, len(p), 100):
            assert all(i.dtype == np.uint8 and i.shape[2] == 3 for i in p.load(range(start, min(start + 100, len(p)))))
    assert data.pool("cifar10_prototypes").load().shape == (10000, 32, 32, 3)
