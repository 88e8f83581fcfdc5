"""The whole reproduction as one web page: every executed notebook, in paper order, with its figures.

    python -m causadv_lib.webpage --profile paper     # build/*.ipynb       -> paper_figures/index.html
    python -m causadv_lib.webpage --profile smoke     # build/smoke/*.ipynb -> paper_figures/smoke/index.html

`make paper` runs it last. The page is written into the profile's figures folder, so figures are referenced
relative to it (``<img src="fig04_roc_imagenet.png">``) and load from a plain file: a reader needs only a
browser and that folder. What it holds:

* a contents list, one entry per notebook (``NN_name``, in file-name order, which is paper order); a notebook
  whose source exists but that has not been executed is listed as such;
* each executed notebook rendered by nbconvert (its ``basic`` template, code collapsed under "code",
  stderr streams dropped): Markdown text, printed output and the Markdown tables the notebooks display
  (rendered as HTML tables);
* each figure (``NAME.png``, with a link to ``NAME.pdf``) placed at the notebook output that shows it:
  `report.Report.figure` displays every figure it saves as an image output whose display metadata names it
  (``{"causadv": {"figure": NAME}}``, `report.displayed_figure`), and the page puts the folder's NAME.png
  there instead of the image embedded in the notebook. Figures that the notebook's results JSON lists but no
  output shows (a notebook executed before figures were tagged) follow the notebook; PNGs of the folder that
  no notebook lists go to a last section, so every figure of the folder is on the page;
* the tables each notebook wrote (CSV links), and a footer with the profile, when each notebook ran
  (papermill's end time), when the page was built, and the package versions.

Nothing is fetched from the network (no MathJax: formulas show as TeX source).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import os
import re
import sys
from importlib import metadata
from pathlib import Path

import jinja2
import nbformat
from nbconvert import HTMLExporter

from . import config
from .io import atomic_write_bytes
from .report import displayed_figure

__all__ = ["build", "notebook_paths", "figure_outputs", "PACKAGES", "main"]

#: packages whose versions the footer lists
PACKAGES = ("causadv", "numpy", "scipy", "tensorflow-cpu", "tensorflow", "keras", "adversarial-robustness-toolbox",
            "scikit-learn", "matplotlib", "papermill", "nbconvert")

_TEMPLATE = r"""{%- extends 'basic/index.html.j2' -%}
{% block input_group -%}
<details class="code"><summary>code</summary>
{{ super() }}
</details>
{%- endblock input_group %}
"""

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; line-height: 1.5; color: #1f2328;
       max-width: 1100px; margin: 0 auto; padding: 1em 2em 4em; }
h1, h2, h3 { line-height: 1.25; } h1 { border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
section.notebook { margin-top: 3em; }
nav.contents { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .5em 1.5em; }
nav.contents li.missing { color: #6e7781; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; } th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfcfd; }
pre { background: #f6f8fa; padding: .6em; overflow-x: auto; font-size: 12px; border-radius: 4px; }
code { background: #f6f8fa; padding: 0 .2em; border-radius: 3px; font-size: 90%; }
details.code > summary { cursor: pointer; color: #57606a; font-size: 12px; }
.output_stdout pre, .output_text pre { background: #fff; border-left: 3px solid #d0d7de; }
.anchor-link { display: none; } .prompt { display: none; }
figure.paper-figure { margin: 1em 0 2em; text-align: center; }
figure.paper-figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figure.paper-figure figcaption { font-size: 12px; color: #57606a; }
footer { margin-top: 4em; border-top: 1px solid #d0d7de; font-size: 12px; color: #57606a; }
footer table { font-size: 12px; }
"""

_NOTEBOOK = re.compile(r"^(\d+)_[A-Za-z0-9_]+\.ipynb$")


def notebook_paths(build_dir: Path) -> list[Path]:
    """Executed notebooks ``NN_name.ipynb`` of `build_dir`, in paper (file-name) order."""
    return sorted(p for p in Path(build_dir).glob("*.ipynb") if _NOTEBOOK.match(p.name))


def figure_outputs(cells) -> dict[str, tuple[int, int]]:
    """{figure name: (cell index, output index) of the last output that shows it} over the cells' outputs.

    The last one: a figure saved twice shows its file's (final) version there; an earlier output keeps its own
    embedded image.
    """
    out = {}
    for i, cell in enumerate(cells):
        for j, output in enumerate(cell.get("outputs", []) if cell.get("cell_type") == "code" else []):
            name = displayed_figure(output)
            if name is not None:
                out[name] = (i, j)
    return out


def _figure_html(name: str, fig_dir: Path, prefix: str = "") -> str:
    """A <figure> with NAME.png (and a link to NAME.pdf when it exists); `prefix`: fig_dir relative to the page."""
    pdf = (fig_dir / f"{name}.pdf").exists()
    src = html.escape(prefix + name)
    link = f' (<a href="{src}.pdf">PDF</a>)' if pdf else ""
    return (f'<figure class="paper-figure" id="fig-{html.escape(name)}"><img src="{src}.png" '
            f'alt="{html.escape(name)}" loading="eager"><figcaption><code>{html.escape(name)}.png</code>{link}'
            f'</figcaption></figure>')


def _results(fig_dir: Path, stem: str) -> dict:
    path = fig_dir / f"{stem}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _title(nb, stem: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return stem


def _versions() -> list[tuple[str, str]]:
    rows = [("python", sys.version.split()[0])]
    for p in PACKAGES:
        try:
            rows.append((p, metadata.version(p)))
        except metadata.PackageNotFoundError:
            continue
    return rows


def _exporter():
    ex = HTMLExporter(template_name="basic", extra_loaders=[jinja2.DictLoader({"causadv_page.html.j2": _TEMPLATE})])
    ex.template_file = "causadv_page.html.j2"
    ex.exclude_input_prompt = True
    ex.exclude_output_prompt = True
    return ex


def _render(nb, figures: list[str], fig_dir: Path, exporter, prefix: str = "") -> tuple[str, list[str]]:
    """HTML of notebook `nb` with each figure whose PNG is in `fig_dir` at the output that shows it; `figures`
    (the results JSON's list) shown by no output follow the notebook. Also the names placed."""
    cells = nb.cells
    for cell in cells:                        # drop stderr (TensorFlow and tqdm chatter)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", [])
                            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    placed = []
    for name, (i, j) in figure_outputs(cells).items():
        if (fig_dir / f"{name}.png").exists():
            cells[i].outputs[j] = nbformat.v4.new_output("display_data",
                                                         data={"text/html": _figure_html(name, fig_dir, prefix)})
            placed.append(name)
    leftover = [f for f in figures if f not in placed and (fig_dir / f"{f}.png").exists()]
    body, _ = exporter.from_notebook_node(nb)
    if leftover:
        body += "<h3>Other figures of this notebook</h3>" + "".join(_figure_html(f, fig_dir, prefix) for f in leftover)
    return body, placed + leftover


def build(profile: str = "paper", build_dir: Path | None = None, fig_dir: Path | None = None,
          out: Path | None = None, notebooks_dir: Path | None = None) -> Path:
    """Write the page (default ``figures_dir(profile)/index.html``) from the executed notebooks; returns its path."""
    config.get_profile(profile)
    build_dir = Path(build_dir) if build_dir is not None else (
        config.BUILD_DIR if profile == "paper" else config.BUILD_DIR / profile)
    fig_dir = Path(fig_dir) if fig_dir is not None else config.figures_dir(profile)
    out = Path(out) if out is not None else fig_dir / "index.html"
    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else config.NOTEBOOKS_DIR
    rel = os.path.relpath(fig_dir.resolve(), out.parent.resolve()).replace(os.sep, "/")
    prefix = "" if rel == "." else rel + "/"
    paths = notebook_paths(build_dir)
    executed = {p.stem for p in paths}
    sources = sorted(p.stem for p in Path(notebooks_dir).glob("[0-9]*.py")) if Path(notebooks_dir).is_dir() else []
    exporter = _exporter()
    sections, contents, runs, shown = [], [], [], set()
    for stem in sorted(executed | set(sources)):
        if stem not in executed:
            contents.append(f'<li class="missing">{html.escape(stem)}: not executed in this profile</li>')
            continue
        nb = nbformat.read(build_dir / f"{stem}.ipynb", as_version=4)
        res = _results(fig_dir, stem)
        title = _title(nb, stem)
        body, placed = _render(nb, list(res.get("figures", [])), fig_dir, exporter, prefix)
        shown |= set(placed)
        tables = sorted(res.get("tables", {}))
        files = ""
        if tables:
            links = ", ".join(f'<a href="{html.escape(prefix + t)}.csv">{html.escape(t)}</a>'
                              for t in tables if (fig_dir / f"{t}.csv").exists())
            files = f'<p class="files">Tables written by this notebook (CSV): {links}</p>' if links else ""
        ran = nb.metadata.get("papermill", {}).get("end_time") or "unknown"
        runs.append((stem, str(ran)[:19].replace("T", " "), nb.metadata.get("papermill", {}).get("duration")))
        anchor = f"nb-{stem}"
        contents.append(f'<li><a href="#{anchor}">{html.escape(title)}</a> <small>({html.escape(stem)})</small></li>')
        sections.append(f'<section class="notebook" id="{anchor}">{body}{files}</section>')
    others = sorted(p.stem for p in fig_dir.glob("*.png") if p.stem not in shown)
    if others:
        contents.append('<li><a href="#other-figures">Other figures</a></li>')
        sections.append('<section class="notebook" id="other-figures"><h1>Other figures</h1>'
                        '<p>Figures of this folder that no executed notebook lists.</p>'
                        + "".join(_figure_html(f, fig_dir, prefix) for f in others) + "</section>")
    try:
        shown_dir = str(build_dir.resolve().relative_to(config.PROJECT_ROOT))
    except ValueError:
        shown_dir = str(build_dir)
    built = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    run_rows = "".join(f"<tr><td>{html.escape(s)}</td><td>{html.escape(t)} UTC</td><td>"
                       f"{'' if d is None else f'{float(d):.0f} s'}</td></tr>" for s, t, d in runs)
    ver_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in _versions())
    footer = (f'<footer><p>Profile <b>{html.escape(profile)}</b>; page built {built} from '
              f'<code>{html.escape(shown_dir)}</code>.</p>'
              f"<table><tr><th>notebook</th><th>executed (end)</th><th>duration</th></tr>{run_rows}</table>"
              f"<table><tr><th>package</th><th>version</th></tr>{ver_rows}</table></footer>")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>CausAdv reproduction ({html.escape(profile)} profile)</title><style>{_CSS}</style></head><body>"
            f"<header><h1>CausAdv: a causal-based framework for detecting adversarial examples, reproduced</h1>"
            f"<p>Every notebook of the <b>{html.escape(profile)}</b> profile, executed, in paper order. Figures are "
            f"the PNG files of this folder; code cells are collapsed under <i>code</i>.</p>"
            f'<nav class="contents"><h2>Contents</h2><ul>{"".join(contents)}</ul></nav></header>'
            f"{''.join(sections)}{footer}</body></html>\n")
    atomic_write_bytes(out, page.encode("utf-8"))
    os.chmod(out, 0o644)                     # readable by a web server, like any page
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m causadv_lib.webpage", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="paper", choices=sorted(config.PROFILES))
    ap.add_argument("--build-dir", type=Path, default=None, help="executed notebooks (default: build[/PROFILE])")
    ap.add_argument("--figures-dir", type=Path, default=None, help="figures folder (default: paper_figures[/PROFILE])")
    ap.add_argument("--out", type=Path, default=None, help="the page (default: FIGURES_DIR/index.html)")
    args = ap.parse_args(argv)
    path = build(args.profile, args.build_dir, args.figures_dir, args.out)
    print(f"web page: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
