"""causadv_lib.io: atomic writes (mode, orphans, failure) and JSON conversion."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from causadv_lib import io


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    target.write_text("old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", boom)
    with pytest.raises(OSError):
        io.atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        io.atomic_write_bytes(tmp_path / "a.png", b"x")
        with open(tmp_path / "b.png", "wb") as fh:
            fh.write(b"x")
    finally:
        os.umask(old)
    mode = (tmp_path / "a.png").stat().st_mode & 0o777
    assert mode == (tmp_path / "b.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_orphan_of_a_killed_writer_is_removed_on_the_next_write(tmp_path):
    target = tmp_path / "entry.npz"
    # a writer killed with SIGKILL in the middle of its write leaves its temporary file behind
    code = ("import os, signal, sys; from causadv_lib import io; "
            "io.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL); "
            f"io.atomic_write_bytes({str(target)!r}, b'x' * 1000)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == -9
    left = list(tmp_path.glob(".entry.npz.*.tmp"))
    assert len(left) == 1 and not target.exists()
    other = tmp_path / ".other.npz.somehost.1.abc.tmp"      # another host's: never touched
    other.write_bytes(b"y")
    io.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, other.name])


def test_live_writers_temporary_file_is_kept(tmp_path):
    mine = tmp_path / f".e.npz.{io._HOST}.{os.getpid()}.abc.tmp"   # this process is alive
    mine.write_bytes(b"partial")
    io.atomic_write_bytes(tmp_path / "e.npz", b"new")
    assert mine.exists()
    assert io.remove_orphans(tmp_path) == 0


def test_to_jsonable():
    v = io.to_jsonable({"a": np.float32(1.5), "b": (np.arange(2), Path("x")), 3: math.nan})
    assert v == {"a": 1.5, "b": [[0, 1], "x"], "3": None}


@pytest.mark.parametrize("bad", ["../../x", "/tmp/x", "a/b", "a\\b", "..", ".", "", ".hidden", "x\0y", None, 3])
def test_output_names_are_plain(bad):
    with pytest.raises(ValueError, match="plain file name"):
        io.plain_name(bad, "table name")


def test_report_refuses_names_that_escape_its_folder(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from causadv_lib import report
    rep = report.Report("nb", "smoke", out_dir=tmp_path / "out")
    fig = plt.figure()
    for call in (lambda: rep.figure(fig, "../../x"), lambda: rep.table("../../x", [{"a": 1}]),
                 lambda: rep.table("/tmp/abs", [{"a": 1}]), lambda: rep.side_table("../x", [], ["a"])):
        with pytest.raises(ValueError, match="plain file name"):
            call()
    plt.close(fig)
    with pytest.raises(ValueError, match="notebook name '../../x'"):
        report.Report("../../x", "smoke", out_dir=tmp_path)
    assert not any(tmp_path.rglob("*")) or all(p.is_relative_to(tmp_path / "out") for p in tmp_path.rglob("*.*"))
    assert not (tmp_path.parent / "x.png").exists()


def test_markdown_shows_what_the_data_says():
    from causadv_lib import report
    md = report.markdown_table([{"class": "<img src=x onerror=alert(2)>", "n": "a|b\nc", "x": "A & B"}],
                               ["class", "n", "x"], caption="<script>1</script>")
    assert "<img" not in md and "<script" not in md and "&lt;img src=x onerror=alert(2)>" in md
    lines = md.splitlines()
    assert lines[0] == "**&lt;script>1&lt;/script>**"
    assert lines[-1] == "| &lt;img src=x onerror=alert(2)> | a\\|b c | A &amp; B |"    # one row, three cells


def test_clean_cache_removes_orphans_in_every_namespace(tmp_path, monkeypatch):
    from causadv_lib import cache
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    dead = 2 ** 22 + 12345           # above the default pid_max: never a live process
    for ns in ("ci", "attacks"):
        (tmp_path / ns).mkdir()
        (tmp_path / ns / f".e.npz.{io._HOST}.{dead}.abc.tmp").write_bytes(b"x")
        (tmp_path / ns / "e.npz").write_bytes(b"kept")
    assert cache.clean_orphans() == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["attacks", "ci", "e.npz", "e.npz"]
