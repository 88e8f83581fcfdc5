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
