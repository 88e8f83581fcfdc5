"""`make lab`: JupyterLab starts (as root too) and opens a notebook's py:percent source as a notebook.

The server listens on a free loopback port with a token, opens no browser, serves a temporary copy of one
notebook (nothing in the project is written), and is stopped at the end; every wait is bounded.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/01_causal_learning.py"
START_TIMEOUT = 90.0


def _lab_flags() -> list[str]:
    """The flags `make lab` passes to `jupyter lab` (from `make -n lab`, nothing run)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "--no-print-directory", "lab"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("jupyter lab"))
    return [f for f in line.split()[2:] if f.startswith("--") and not f.startswith("--notebook-dir")]


def test_make_lab_allows_root_where_it_runs_as_root():
    flags = _lab_flags()
    assert ("--allow-root" in flags) == (os.geteuid() == 0), flags


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, timeout: float = 10.0):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read().decode())


def test_lab_opens_a_py_notebook_through_the_contents_api(tmp_path):
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        pytest.skip("jupyter is not installed in this environment")
    root = tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / NOTEBOOK, root / NOTEBOOK)
    shutil.copy(ROOT / "jupytext.toml", root / "jupytext.toml")
    port, token = _free_port(), os.urandom(16).hex()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen([str(jupyter), "lab", *_lab_flags(), "--no-browser", "--ServerApp.ip=127.0.0.1",
                             f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
            try:
                if _get(f"{base}/api/status", token, timeout=2)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within {START_TIMEOUT:.0f} s:\n"
                            f"{(tmp_path / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        status, model = _get(f"{base}/api/contents/{NOTEBOOK}?type=notebook&content=1", token, timeout=60)
        assert status == 200 and model["type"] == "notebook", model.get("type")
        cells = model["content"]["cells"]
        assert len(cells) > 5 and cells[0]["cell_type"] == "markdown"
        assert "causal learning" in "".join(cells[0]["source"]).lower()
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells)
        with pytest.raises(urllib.error.HTTPError) as err:       # the token is required
            urllib.request.urlopen(f"{base}/api/contents/{NOTEBOOK}?type=notebook", timeout=10)
        assert err.value.code in (401, 403)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)   # the server's own process group (start_new_session)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
