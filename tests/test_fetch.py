"""`data.fetch` against a local HTTP mirror: good files arrive verified, a corrupted one leaves nothing."""
from __future__ import annotations

import functools
import hashlib
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from causadv_lib import config, data
from causadv_lib.data import download, verification

MIRROR = config.default_mirror()
pytestmark = pytest.mark.skipif(not (MIRROR / "MANIFEST.json").is_file(), reason="no data mirror here")

GOOD = ["synset_words", "vgg16_bn_cifar10_json", "samples-lossless/cifar10_00_3.png",
        "imagenet/sample-images/n02966687_carpenter's_kit.JPEG"]  # a name that needs URL quoting
BAD = "samples-lossless/cifar10_01_8.png"
CONVERTED = "resnet20_akamaster_weights"  # an .npz converted from an upstream .th checkpoint


class QuietHandler(SimpleHTTPRequestHandler):
    requests_seen: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        QuietHandler.requests_seen.append(self.path)
        super().do_GET()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Empty data dir and cache (so the real mirror does not count as present); no proxy for 127.0.0.1."""
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path / "empty"))
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(data.MIRROR_URL_ENV, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for memo in (verification._MEMO, verification._PENDING, verification._RECORD_CACHE):
        memo.clear()
    yield tmp_path
    verification._PENDING.clear()


@pytest.fixture
def server(env):
    """A mirror over HTTP serving copies of GOOD and a corrupted BAD; yields (base_url, actual sha of BAD)."""
    served = env / "served"
    for name in GOOD + [BAD, CONVERTED]:
        rel = data.entry(name).path
        (served / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MIRROR / rel, served / rel)
    bad = served / data.entry(BAD).path
    raw = bytearray(bad.read_bytes())
    raw[100] ^= 0xFF
    bad.write_bytes(bytes(raw))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    QuietHandler.requests_seen = []
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", hashlib.sha256(raw).hexdigest()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_good_files_arrive_and_a_corrupted_one_leaves_nothing(server, env, monkeypatch):
    base_url, bad_sha = server
    dest = env / "dest"
    with pytest.raises(data.DataError) as err:
        data.fetch(GOOD + [BAD], base_url=base_url, dest=dest, progress=False)
    msg = str(err.value)
    e = data.entry(BAD)
    assert msg.startswith("1 of 5") and e.sha256 in msg and bad_sha in msg and e.path in msg
    assert not (dest / e.path).exists()
    assert sorted(p.name for p in (dest / e.path).parent.iterdir()) == ["cifar10_00_3.png"]  # no temp files
    for name in GOOD:
        f = dest / data.entry(name).path
        assert hashlib.sha256(f.read_bytes()).hexdigest() == data.entry(name).sha256
    monkeypatch.setenv(config.DATA_ENV, str(dest))
    assert data.verify(GOOD, progress=False) == [dest / data.entry(n).path for n in GOOD]


def test_present_files_are_not_downloaded_again(server, env):
    base_url, _ = server
    dest = env / "dest"
    assert data.fetch(GOOD, base_url=base_url, dest=dest, progress=False) == [dest / data.entry(n).path for n in GOOD]
    assert len(QuietHandler.requests_seen) == len(GOOD)
    data.fetch(GOOD, base_url=base_url, dest=dest, progress=False)
    assert len(QuietHandler.requests_seen) == len(GOOD)


def test_a_corrupted_local_copy_is_replaced(server, env):
    base_url, _ = server
    dest = env / "dest"
    f = dest / data.entry("synset_words").path
    f.parent.mkdir(parents=True)
    f.write_text("garbage")
    data.fetch(["synset_words"], base_url=base_url, dest=dest, progress=False)
    assert hashlib.sha256(f.read_bytes()).hexdigest() == data.entry("synset_words").sha256


def test_missing_on_the_server(server, env):
    base_url, _ = server
    name = "imagenet_labels"
    with pytest.raises(data.DataError, match="404") as err:
        data.fetch([name], base_url=base_url, dest=env / "dest", progress=False)
    assert data.entry(name).path in str(err.value)
    assert not (env / "dest" / data.entry(name).path).exists()


def test_mirror_url_from_the_environment_and_the_cli(server, env, monkeypatch, capsys):
    base_url, _ = server
    monkeypatch.setenv(data.MIRROR_URL_ENV, base_url)
    assert data.main(["fetch", "-q"] + GOOD[:2]) == 0  # default dest: the fetched cache, then verify
    assert "2 files verified (2 fetched)" in capsys.readouterr().out
    assert (config.fetched_dir() / data.entry(GOOD[0]).path).is_file()
    assert data.main(["fetch", "-q", BAD]) == 1
    assert data.entry(BAD).sha256 in capsys.readouterr().err


def test_no_url_and_no_mirror_explains_how_to_get_it(env):
    with pytest.raises(data.DataError, match="pip download --no-deps foolbox"):
        data.fetch([BAD], dest=env / "dest", progress=False)


def test_a_converted_file_comes_only_from_a_mirror(env, monkeypatch):
    e = data.entry(CONVERTED)
    monkeypatch.setattr(download, "_download", lambda *a, **k: pytest.fail(f"downloaded {a[1]}"))
    with pytest.raises(data.DataError) as err:
        data.fetch([CONVERTED], dest=env / "dest", progress=False)
    msg = str(err.value)
    for part in (e.path, f"converted from {e.converted_from['url']}", "cannot redo the conversion",
                 "only from a mirror of the data folder", data.MIRROR_URL_ENV, e.sha256):
        assert part in msg, part
    assert not (env / "dest" / e.path).exists()


def test_a_converted_file_is_fetched_from_the_mirror(server, env, monkeypatch):
    base_url, _ = server
    e = data.entry(CONVERTED)
    monkeypatch.setenv(data.MIRROR_URL_ENV, base_url)
    assert data.fetch([CONVERTED], dest=env / "dest", progress=False) == [env / "dest" / e.path]
    assert QuietHandler.requests_seen == ["/" + e.path]  # the mirror's copy, never the upstream checkpoint
    assert hashlib.sha256((env / "dest" / e.path).read_bytes()).hexdigest() == e.sha256
