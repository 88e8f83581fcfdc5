"""Execute each smoke notebook once, under nbval, and keep what that run produced.

`make test` (via `make nbval`) runs the smoke notebooks a single time: nbval executes every cell in a fresh
kernel, on an empty results cache, and fails on the first cell that raises. This pytest plugin (loaded with
`-p tests.nbval_build`) records each cell's outputs as nbval receives them and, when a notebook's last cell
has run, writes the executed notebook to `--nbval-write DIR`:

- `DIR/NAME.ipynb` when every cell passed (written atomically; a valid nbformat v4 notebook, with the run's end
  time and duration in `metadata.papermill` as `make paper` records them, so the web page shows them), and
  `DIR/NAME.seconds`, the notebook's wall time, for `timings.tsv`;
- `DIR/NAME.failed.ipynb` when a cell failed (with the error in that cell's outputs), and any `NAME.ipynb` of an
  earlier run is removed, so that no page or test reads a result this run did not produce.

It also prepares the notebooks nbval reads (`python tests/nbval_build.py prepare ...`): each jupytext source
`notebooks/NAME.py` becomes `NAME.ipynb` with the python3 kernel and papermill's injected `profile` parameter,
exactly the notebook `make paper` executes.
"""
import argparse
import copy
import datetime
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbval.plugin import IPyNbCell, coalesce_streams
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from causadv_lib import io

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def pytest_addoption(parser):
    parser.addoption("--nbval-write", metavar="DIR", default=None,
                     help="write each executed notebook (NAME.ipynb, or NAME.failed.ipynb) and NAME.seconds here")


class _Run:
    """What one notebook's run produced so far: the outputs of each code cell, and whether any cell failed."""

    def __init__(self):
        self.started = time.time()
        self.outputs: dict[int, list] = {}
        self.failed = False


_RUNS: dict[str, _Run] = {}


def _out_dir(config):
    value = config.getoption("--nbval-write")
    return Path(value) if value else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    if isinstance(item, IPyNbCell) and _out_dir(item.config) is not None:
        _RUNS.setdefault(str(item.parent.fspath), _Run())   # before the kernel starts: it is part of the run
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    run = _RUNS.get(str(getattr(item.parent, "fspath", "")))
    if not isinstance(item, IPyNbCell) or run is None:
        return
    if report.when == "call":
        run.outputs[item.cell_num] = coalesce_streams(list(getattr(item, "test_outputs", None) or []))
    if report.failed:
        run.failed = True


def pytest_runtest_teardown(item, nextitem):
    """After a notebook's last cell (the next item belongs to another file, or there is none), write it."""
    out_dir = _out_dir(item.config)
    if not isinstance(item, IPyNbCell) or out_dir is None:
        return
    if nextitem is not None and getattr(nextitem, "parent", None) is item.parent:
        return
    run = _RUNS.pop(str(item.parent.fspath), None)
    if run is not None:
        write_executed(item.parent.nb, run, out_dir, Path(str(item.parent.fspath)).stem)


def _output(out) -> nbformat.NotebookNode:
    """nbval's record of one output as an nbformat v4 output."""
    kind = out["output_type"]
    if kind == "stream":
        return nbformat.v4.new_output("stream", name=out["name"], text=out["text"])
    if kind == "error":
        return nbformat.v4.new_output("error", ename=out["ename"], evalue=out["evalue"], traceback=out["traceback"])
    fields = {"data": out.get("data", {}), "metadata": out.get("metadata", {})}
    if kind == "execute_result":
        fields["execution_count"] = out.get("execution_count")
    return nbformat.v4.new_output(kind, **fields)


def write_executed(nb, run: _Run, out_dir: Path, stem: str) -> Path:
    """Write the executed notebook (validated) and its wall time; see the module docstring for the names."""
    ended = time.time()
    nb = copy.deepcopy(nb)
    count = 0
    for cell_num, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        ran = cell_num in run.outputs
        count += ran
        cell.execution_count = count if ran else None
        cell.outputs = [_output(o) for o in run.outputs.get(cell_num, [])]
    meta = nb.metadata.setdefault("papermill", {})
    meta.update(end_time=datetime.datetime.fromtimestamp(ended, datetime.timezone.utc).isoformat(),
                duration=round(ended - run.started, 3), exception=run.failed, executor="nbval")
    nbformat.validate(nb)
    target = out_dir / (f"{stem}.failed.ipynb" if run.failed else f"{stem}.ipynb")
    io.atomic_write_bytes(target, nbformat.writes(nb).encode())
    if run.failed:
        (out_dir / f"{stem}.ipynb").unlink(missing_ok=True)
        (out_dir / f"{stem}.seconds").unlink(missing_ok=True)
    else:
        (out_dir / f"{stem}.failed.ipynb").unlink(missing_ok=True)
        io.atomic_write_bytes(out_dir / f"{stem}.seconds", f"{ended - run.started:.1f}\n".encode())
        print(f"\n{stem}: {ended - run.started:.1f} s", file=sys.stderr)
    return target


def prepare(sources: list[Path], out_dir: Path, profile: str) -> list[Path]:
    """Each jupytext source as the notebook papermill would execute: python3 kernel, `profile` injected."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sources:
        nb = jupytext.read(src)
        nb.metadata["kernelspec"] = dict(KERNELSPEC)
        target = out_dir / f"{Path(src).stem}.ipynb"
        io.atomic_write_bytes(target, nbformat.writes(nb).encode())
        nb = parameterize_notebook(load_notebook_node(str(target)), {"profile": profile}, kernel_name="python3")
        io.atomic_write_bytes(target, nbformat.writes(nb).encode())
        written.append(target)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description="prepare the notebooks that nbval executes")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="jupytext sources -> parameterised .ipynb files")
    p.add_argument("--profile", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("sources", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in prepare(args.sources, args.out, args.profile):
        print(path)


if __name__ == "__main__":
    main()
