"""tests/nbval_build.py: nbval executes a notebook once and the plugin keeps that run (what `make test` relies on)."""
import json
import subprocess
import sys

import nbformat
from nbformat import v4

from causadv_lib import config

PLUGIN_ROOT = config.PROJECT_ROOT


def _nbval(tmp_path, cells, name="nb"):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# Title\n")] + [v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = src / f"{name}.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.nbval_build",
                          "--nbval-lax", "--nbval-write", str(out), str(path)],
                         capture_output=True, text=True, timeout=300, cwd=PLUGIN_ROOT)
    return run, out


def test_a_passing_notebook_is_written_with_its_outputs_and_wall_time(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "nb.failed.ipynb").write_text("{}")        # left by an earlier failed run
    run, out = _nbval(tmp_path, ['print("hello")', "x = 6 * 7\nx", "import sys\nprint('warn', file=sys.stderr)",
                                 "from IPython.display import Markdown, display\ndisplay(Markdown('**m**'))"])
    assert run.returncode == 0 and "4 passed" in run.stdout, run.stdout[-3000:]
    nb = nbformat.read(out / "nb.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4]
    assert code[0].outputs == [v4.new_output("stream", name="stdout", text="hello\n")]
    assert code[1].outputs[0].output_type == "execute_result" and code[1].outputs[0].data["text/plain"] == "42"
    assert code[2].outputs[0].name == "stderr"
    assert code[3].outputs[0].output_type == "display_data" and code[3].outputs[0].data["text/markdown"] == "**m**"
    assert nb.metadata.papermill["exception"] is False and nb.metadata.papermill["duration"] > 0
    assert float((out / "nb.seconds").read_text()) > 0
    assert not (out / "nb.failed.ipynb").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]     # no temp files left


def test_a_failing_notebook_is_kept_as_failed_and_its_old_result_removed(tmp_path):
    run, out = _nbval(tmp_path, ["x = 1"])
    assert run.returncode == 0 and (out / "nb.ipynb").exists()
    run, out = _nbval(tmp_path, ["x = 1", "raise ValueError('bad input: expected 3 channels')", "print('after')"])
    assert run.returncode != 0 and "1 failed" in run.stdout, run.stdout[-3000:]
    assert not (out / "nb.ipynb").exists() and not (out / "nb.seconds").exists()
    nb = nbformat.read(out / "nb.failed.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[1].outputs[-1].output_type == "error" and code[1].outputs[-1].ename == "ValueError"
    assert nb.metadata.papermill["exception"] is True


def test_notebooks_are_written_each_under_its_own_name(tmp_path):
    run_a, out = _nbval(tmp_path, ["a = 1\na"], name="a")
    run_b, out = _nbval(tmp_path, ["b = 2\nb"], name="b")
    assert run_a.returncode == run_b.returncode == 0
    outs = {p: nbformat.read(out / f"{p}.ipynb", as_version=4).cells[1].outputs[0].data["text/plain"] for p in "ab"}
    assert outs == {"a": "1", "b": "2"}


def test_prepare_gives_the_notebook_papermill_executes(tmp_path):
    src = tmp_path / "01_x.py"
    src.write_text("# %% [markdown]\n# # X\n\n# %% tags=[\"parameters\"]\nprofile = \"paper\"\n\n# %%\nprint(profile)\n")
    run = subprocess.run([sys.executable, str(PLUGIN_ROOT / "tests" / "nbval_build.py"), "prepare", "--profile",
                          "smoke", "--out", str(tmp_path / "p"), str(src)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    nb = json.loads((tmp_path / "p" / "01_x.ipynb").read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    sources = ["".join(c["source"]) for c in nb["cells"]]
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and 'profile = "smoke"' in "".join(injected[0]["source"])
    assert sources.index("".join(injected[0]["source"])) == sources.index('profile = "paper"') + 1
