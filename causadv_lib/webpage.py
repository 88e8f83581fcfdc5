"""The whole reproduction as one web page: the claims at a glance, then every executed notebook, in paper order.

    python -m causadv_lib.webpage --profile paper     # build/*.ipynb       -> paper_figures/index.html
    python -m causadv_lib.webpage --profile smoke     # build/smoke/*.ipynb -> paper_figures/smoke/index.html

`make paper` runs it last. The page is written into the profile's figures folder, so figures are referenced
relative to it (``<img src="fig04_roc_imagenet.png">``) and load from a plain file: a reader needs only a
browser and that folder. What it holds:

* first, *Reproduction at a glance*: one row per claim of the paper's sections 4.2-5 with the paper's number,
  ours, the verdict and its reason, and a link to the cell that computes it (`analysis.reproduction`, from the
  folder's results JSON files), the verdict rule, and the *beyond the paper* block (best strategy against maximum
  softmax probability, notebook 08's verdict); the same table is written as ``reproduction.md`` beside the page;
* a sidebar (a top bar on a narrow window) with, one entry per notebook (``NN_name``, in file-name order, which is paper order); a notebook
  whose source exists but that has not been executed is listed as such;
* each executed notebook rendered by nbconvert (its ``basic`` template, code collapsed under "code",
  stderr streams dropped, library warnings in printed output dropped, `NOISE`): Markdown text with its formulas
  typeset offline (matplotlib's mathtext as inline SVG, `math_svg`), printed output and the Markdown tables the
  notebooks display (rendered as HTML tables; one longer than `FOLD_ROWS` rows shows its first rows, the rest
  behind "show all", with the table's CSV linked);
* each figure (``NAME.png``, with a link to ``NAME.pdf``) placed at the notebook output that shows it:
  `report.Report.figure` displays every figure it saves as an image output whose display metadata names it
  (``{"causadv": {"figure": NAME}}``, `report.displayed_figure`), and the page puts the folder's NAME.png
  there instead of the image embedded in the notebook, numbered, with its caption (the paper's figure number
  where it has a counterpart, `FIGURES`), opening at full size when clicked. Figures that the notebook's results JSON lists but no
  output shows (a notebook executed before figures were tagged) follow the notebook; PNGs of the folder that
  no notebook lists go to a last section, so every figure of the folder is on the page;
* the tables each notebook wrote (CSV links), and a footer with the profile, when each notebook ran
  (papermill's end time), when the page was built, and the package versions.

Nothing is fetched from the network: no script, font or style sheet from elsewhere; formulas are SVG paths in the
page.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import functools
import html
import io
import itertools
import json
import os
import re
import sys
from importlib import metadata
from pathlib import Path

import jinja2
import matplotlib
import nbformat
from matplotlib import mathtext
from matplotlib.font_manager import FontProperties
from nbconvert import HTMLExporter

from . import config
from .analysis import reproduction
from .io import atomic_write_bytes
from .report import displayed_figure

__all__ = ["build", "notebook_paths", "figure_outputs", "math_svg", "typeset", "clean_stream", "fold_tables",
           "figure_caption", "PACKAGES", "FIGURES", "GAPS", "NOISE", "FOLD_ROWS", "main"]

#: packages whose versions the footer lists
PACKAGES = ("causadv", "numpy", "scipy", "tensorflow-cpu", "tensorflow", "keras", "adversarial-robustness-toolbox",
            "scikit-learn", "matplotlib", "papermill", "nbconvert")

_TEMPLATE = r"""{%- extends 'basic/index.html.j2' -%}
{% block any_cell scoped -%}
{%- for a in cell.metadata.get('causadv_anchors', []) %}<span class="cell-anchor" id="{{ a | e }}"></span>{% endfor -%}
{{ super() }}
{%- endblock any_cell %}
{% block data_markdown scoped -%}
<div class="output_markdown rendered_html output_subarea {{ extra_class }}">
{{ output.data['text/markdown'] | markdown2html | causadv_fold(cell.metadata.get('causadv_csv', '')) }}
</div>
{%- endblock data_markdown %}
{% block input_group -%}
<details class="code"><summary>code</summary>
{{ super() }}
</details>
{%- endblock input_group %}
"""

_CSS = """
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; line-height: 1.5; color: #1f2328;
       margin: 0; overflow-wrap: break-word; }
main { max-width: 1100px; margin: 0 0 0 260px; padding: 1em 2em 4em; min-width: 0; }
h1, h2, h3 { line-height: 1.25; } h1 { border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
section.notebook { margin-top: 3em; }
nav.contents { position: fixed; top: 0; left: 0; bottom: 0; width: 250px; overflow-y: auto; background: #f6f8fa;
               border-right: 1px solid #d0d7de; padding: .5em 1em; font-size: 13px; }
nav.contents ul { padding-left: 1.1em; margin: .3em 0; } nav.contents li { margin: .25em 0; }
nav.contents li.missing, nav.contents li.gap { color: #6e7781; }
nav.contents h2 { font-size: 15px; margin: .6em 0 .3em; }
@media (max-width: 800px) {
  nav.contents { position: static; width: auto; max-height: 9.5em; border-right: none;
                 border-bottom: 1px solid #d0d7de; }
  main { margin: 0; padding: .5em .8em 3em; }
}
svg.math { vertical-align: middle; max-width: 100%; } span.math-display { display: block; text-align: center;
  margin: .6em 0; overflow-x: auto; }
table.glance { display: table; width: 100%; font-size: 13px; } table.glance td { vertical-align: top; }
.verdict { font-weight: 600; padding: 0 .35em; border-radius: 3px; white-space: nowrap; }
.verdict-reproduced { background: #dafbe1; color: #116329; } .verdict-partly { background: #fff8c5; color: #7d4e00; }
.verdict-not-reproduced { background: #ffebe9; color: #a40e26; } .verdict-not-tested { background: #eaeef2; color: #57606a; }
@media (max-width: 800px) {
  table.glance, table.glance tbody, table.glance tr, table.glance td { display: block; width: 100%; }
  table.glance thead { display: none; } table.glance tr { border: 1px solid #d0d7de; margin: .6em 0; }
  table.glance td { border: none; border-top: 1px solid #eaeef2; }
  table.glance td::before { content: attr(data-label) ": "; font-weight: 600; color: #57606a; }
}
.fold > input { position: absolute; opacity: 0; width: 1px; height: 1px; }
.fold > label { cursor: pointer; color: #0969da; font-size: 12px; user-select: none; }
.fold > label .fewer { display: none; } .fold > input:checked ~ label .fewer { display: inline; }
.fold > input:checked ~ label .all { display: none; }
.fold > input:not(:checked) ~ table tr.more { display: none; }
.fold .csv { font-size: 12px; margin-left: 1em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; } th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfcfd; }
pre { background: #f6f8fa; padding: .6em; overflow-x: auto; font-size: 12px; border-radius: 4px; }
code { background: #f6f8fa; padding: 0 .2em; border-radius: 3px; font-size: 90%; }
details.code > summary { cursor: pointer; color: #57606a; font-size: 12px; }
.output_stdout pre, .output_text pre { background: #fff; border-left: 3px solid #d0d7de; }
.anchor-link { display: none; } .prompt { display: none; }
figure.paper-figure { margin: 1em 0 2em; text-align: center; }
figure.paper-figure a.full { cursor: zoom-in; }
figure.paper-figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figure.paper-figure figcaption { font-size: 13px; color: #3d444d; text-align: left; max-width: 60em;
  margin: .4em auto; } figure.paper-figure figcaption code { font-size: 11px; }
footer { margin-top: 4em; border-top: 1px solid #d0d7de; font-size: 12px; color: #57606a; }
footer table { font-size: 12px; }
"""

_NOTEBOOK = re.compile(r"^(\d+)_[A-Za-z0-9_]+\.ipynb$")

#: a printed line that is a library's warning or log chatter, kept off the page: TensorFlow's retracing warning
#: (printed through absl to stdout), absl's and TensorFlow's C++ log lines, oneDNN notes, Python warnings
NOISE = re.compile(r"^(WARNING:tensorflow:|WARNING: All log messages before absl|[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s|"
                   r".*triggered tf\.function retracing|.*oneDNN|.*\b\w*Warning: |\s+warnings\.warn\()")
#: a Markdown table longer than this many rows shows these first, the rest behind "show all"
FOLD_ROWS = 8
#: numbering gaps of the notebooks, explained: {number: why there is no notebook}
GAPS = {7: "no notebook 07 yet: the number is kept for the learned detector on CI vectors (an open issue adds "
           "it), so that the later notebooks keep their numbers"}
#: figure-name prefix -> (the paper's figure number or None, caption); the dataset (and budget) the name ends
#: with is added to the caption
FIGURES = {
    "fig00_samples": (None, "The evaluation samples: one image per class of the committed sample list."),
    "fig01_ci": (None, "CI vectors (counterfactual information of every filter of the CI layer) of example images, "
                       "for each definition of CI."),
    "fig01_prototypes": (None, "CI vectors of the first class prototypes."),
    "fig02_examples": (None, "Adversarial examples of one image, each attack, with the predicted class and its "
                             "probability."),
    "fig03_ci_vectors": (2, "Histograms of CI vectors of prototypes, clean samples and adversarial examples."),
    "fig03_statistics": (None, "Causal filters, zero filters and Pearson's rho with the prototype, per group."),
    "fig04_common_features": (3, "Top common causal features of clean and adversarial samples for the n/m values "
                                 "of strategy 4, ours beside the paper's bars."),
    "fig04_roc": (None, "ROC curves of every strategy against each attack (threshold on clean samples)."),
    "fig05_recovery": (None, "Share of adversarial examples whose true class each purifier recovers, against the "
                             "purifier's clean accuracy (Table 4's experiment)."),
    "fig06_heatmaps": (4, "Causal features as attention maps on clean and adversarial samples: the CI-weighted "
                          "causal heatmap, the authors' binary-mask map and Grad-CAM."),
    "fig06_consistency": (None, "Heatmap-consistency score per group (1 - agreement between the sample's own "
                                "causal map and its prototype's)."),
    "fig07_peers": (None, "ROC-AUC of every CausAdv strategy, the combined detector and the peers against every "
                    "attack (successful examples, paired clean sources)."),
    "fig07_adaptive": (None, "The adaptive attacker against the real detector: attack success, the detector's TPR "
                       "and the defended system's accuracy against the number of attack iterations."),
    "fig07_eps_sweep": (None, "Attack success and detection ROC-AUC (best strategy, combined detector, maximum "
                        "softmax) against the budget eps."),
    "fig08_causal_or_confident": (None, "Strategy scores against confidence baselines: ROC-AUC per attack."),
    "fig08_within_bin": (None, "ROC-AUC of the strategies within bins of equal confidence."),
    "fig09_ci": (None, "CI vectors of your own model's images."),
}
_DATASET_WORDS = {"imagenet": "ImageNet", "cifar10": "CIFAR-10"}


def figure_caption(name: str) -> tuple[int | None, str]:
    """(the paper's figure number or None, caption) of figure `name` (longest matching `FIGURES` prefix; the rest
    of the name, e.g. ``_cifar10_24``, says the dataset and budget)."""
    prefix = max((p for p in FIGURES if name == p or name.startswith(p + "_")), key=len, default=None)
    if prefix is None:
        return None, ""
    number, text = FIGURES[prefix]
    rest = [w for w in name[len(prefix):].split("_") if w]
    words = [_DATASET_WORDS.get(w, w) for w in rest]
    if len(words) == 2 and words[1].isdigit():
        words = [f"{words[0]}, eps {words[1]}/255"]
    return number, text + (f" {', '.join(words)}." if words else "")


def clean_stream(text: str) -> str:
    """`text` (printed output) without the lines `NOISE` matches."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.match(line))


@functools.lru_cache(maxsize=None)
def math_svg(tex: str, display: bool = False) -> str:
    """TeX `tex` (no dollars) typeset by matplotlib's mathtext as an inline ``<svg>`` (glyphs as paths, so no font
    is fetched); raises ValueError where mathtext cannot parse it."""
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "causadv", "mathtext.fontset": "dejavusans"}):
        depth = mathtext.math_to_image(f"${tex}$", buf, prop=FontProperties(size=15 if display else 12.5),
                                       format="svg")
    svg = buf.getvalue().decode("utf-8")
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>|<!--.*?-->", "", svg, flags=re.S)   # the TeX source comment: no raw $
    label = html.escape(tex, quote=True)
    style = "" if display else f' style="vertical-align: -{float(depth):.2f}pt"'
    return svg.replace("<svg ", f'<svg class="math" role="img" aria-label="{label}"{style} ', 1).strip()


_MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(?!\s)([^$\n]+?)(?<![\s\\])\$(?!\d)", re.S)


def typeset(text: str, store: list) -> str:
    """`text` (Markdown) with each ``$...$`` / ``$$...$$`` replaced by a placeholder; the placeholder's HTML (an
    SVG, or the plain TeX where mathtext fails) is appended to `store`. `_unplace` puts them in the page."""
    def repl(m):
        tex, display = (m.group(1), True) if m.group(1) is not None else (m.group(2), False)
        try:
            body = math_svg(tex.strip(), display)
        except ValueError:
            body = f'<span class="tex">{html.escape(tex)}</span>'
        store.append(f'<span class="math-display">{body}</span>' if display else body)
        return f"CAUSADVMATH{len(store) - 1}X"
    return _MATH.sub(repl, text)


def _unplace(body: str, store: list) -> str:
    return re.sub(r"CAUSADVMATH(\d+)X", lambda m: store[int(m.group(1))], body)


_FOLD_IDS = itertools.count()   # ids of the fold controls, unique in a page (reset by `build`)


def fold_tables(fragment: str, csv: str = "") -> str:
    """Every ``<table>`` of the HTML `fragment` with more than `FOLD_ROWS` body rows shows the first ones; the rest
    are behind a "show all" control (a checkbox, no script); `csv`: the table's CSV file, linked beside it."""
    def fold(m):
        table = m.group(0)
        rows = list(re.finditer(r"<tr\b", table))
        head = 1 if "<thead" in table else 0
        body = rows[head:]
        if len(body) <= FOLD_ROWS:
            return table
        out, last = [], 0
        for r in body[FOLD_ROWS:]:
            out.append(table[last:r.start()] + '<tr class="more"')
            last = r.end()
        table = "".join(out) + table[last:]
        fold.n += 1
        key = f"fold-{next(_FOLD_IDS)}"
        link = f'<a class="csv" href="{html.escape(csv)}">CSV</a>' if csv else ""
        return (f'<div class="fold"><input type="checkbox" id="{key}"><label for="{key}"><span class="all">show all '
                f'{len(body)} rows</span><span class="fewer">show the first {FOLD_ROWS} rows</span></label>{link}'
                f'{table}</div>')
    fold.n = 0
    return re.sub(r"<table\b.*?</table>", fold, fragment, flags=re.S)


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


def _figure_html(name: str, fig_dir: Path, prefix: str = "", number: int | None = None) -> str:
    """A <figure> with NAME.png, opening at full size when clicked, its caption (numbered `number`, with the paper's
    figure number where it has a counterpart) and a link to NAME.pdf when it exists; `prefix`: fig_dir relative to
    the page."""
    pdf = (fig_dir / f"{name}.pdf").exists()
    src = html.escape(prefix + name)
    link = f' (<a href="{src}.pdf">PDF</a>)' if pdf else ""
    paper_number, text = figure_caption(name)
    label = f"Figure {number}" if number is not None else "Figure"
    if paper_number is not None:
        label += f" (the paper's Figure {paper_number})"
    return (f'<figure class="paper-figure" id="fig-{html.escape(name)}"><a class="full" href="{src}.png" '
            f'title="open at full size"><img src="{src}.png" alt="{html.escape(text or name)}" loading="eager"></a>'
            f"<figcaption><b>{html.escape(label)}.</b> {html.escape(text)} <code>{html.escape(name)}.png</code>"
            f"{link}</figcaption></figure>")


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
    ex.register_filter("causadv_fold", fold_tables)
    return ex


_TABLE_NAME = re.compile(r"""["'](table\d+_[A-Za-z0-9_]+)["']""")


def _render(nb, res: dict, fig_dir: Path, exporter, prefix: str = "", first_number: int = 1) -> tuple[str, list[str]]:
    """HTML of notebook `nb` with each figure whose PNG is in `fig_dir` at the output that shows it, numbered from
    `first_number`; figures of `res["figures"]` (the results JSON's list) shown by no output follow the notebook.
    Also the names placed. Library warnings are dropped (`clean_stream`), formulas typeset (`typeset`), a cell
    that writes results table NAME gets the anchor ``tbl-NAME`` (and its long table the CSV link)."""
    figures, tables = list(res.get("figures", [])), set(res.get("tables", {}))
    cells = nb.cells
    math: list[str] = []
    for cell in cells:
        if cell.cell_type == "markdown":
            cell.source = typeset(cell.source, math)
            continue
        if cell.cell_type != "code":
            continue
        outputs = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                if o.get("name") == "stderr":         # TensorFlow and tqdm chatter
                    continue
                o["text"] = clean_stream(o.get("text", ""))
                if not o["text"].strip():
                    continue
            elif "text/markdown" in (o.get("data") or {}):
                o["data"]["text/markdown"] = typeset(o["data"]["text/markdown"], math)
            outputs.append(o)
        cell.outputs = outputs
        named = [t for t in dict.fromkeys(_TABLE_NAME.findall(cell.source)) if t in tables]
        if named:
            cell.metadata["causadv_anchors"] = [f"tbl-{t}" for t in named]
            csv = [t for t in named if (fig_dir / f"{t}.csv").exists()]
            if len(csv) == 1:
                cell.metadata["causadv_csv"] = prefix + csv[0] + ".csv"
    placed = []
    for name, (i, j) in sorted(figure_outputs(cells).items(), key=lambda kv: kv[1]):
        if (fig_dir / f"{name}.png").exists():
            html_ = _figure_html(name, fig_dir, prefix, first_number + len(placed))
            cells[i].outputs[j] = nbformat.v4.new_output("display_data", data={"text/html": html_})
            placed.append(name)
    leftover = [f for f in figures if f not in placed and (fig_dir / f"{f}.png").exists()]
    body, _ = exporter.from_notebook_node(nb)
    if leftover:
        body += "<h3>Other figures of this notebook</h3>" + "".join(
            _figure_html(f, fig_dir, prefix, first_number + len(placed) + k) for k, f in enumerate(leftover))
    return _unplace(body, math), placed + leftover


def _verdict(v: str) -> str:
    return f'<span class="verdict verdict-{v.replace(" ", "-")}">{html.escape(v)}</span>'


def _glance_html(claims, extra: dict, prefix: str) -> str:
    """The at-a-glance section: the claims table (the page's first table), the verdict rule, the beyond block."""
    heads = ("claim", "paper", "ours", "verdict", "reason", "computed in")
    rows = []
    for c in claims:
        r = c.as_row()
        link = (f'<a href="#tbl-{html.escape(c.table)}">{html.escape(c.notebook)}</a>' if c.notebook
                else "not in this run")
        cells = [html.escape(r["claim"]), html.escape(r["paper"]), html.escape(r["ours"]), _verdict(c.verdict),
                 html.escape(r["reason"]), link]
        rows.append('<tr class="claim">' + "".join(f'<td data-label="{h}">{v}</td>' for h, v in zip(heads, cells))
                    + "</tr>")
    counts = ", ".join(f"{n} {v}" for v in reproduction.VERDICTS
                       if (n := sum(c.verdict == v for c in claims)))
    rule = html.escape(reproduction.VERDICT_RULE)
    rule = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", rule)
    out = [f'<section id="glance"><h1>Reproduction at a glance</h1><p>One row per claim of the paper\'s sections '
           f"4.2-5, computed from this run's results files ({html.escape(counts)}). The same table: "
           f'<a href="{html.escape(prefix)}reproduction.md">reproduction.md</a>.</p>',
           '<table class="glance" id="glance-table"><thead><tr>' + "".join(f"<th>{h}</th>" for h in heads)
           + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>",
           f'<p class="rule"><b>Verdict rule.</b> {rule}</p></section>']
    if extra.get("rows") or extra.get("verdict"):
        cols = extra["columns"]
        table = ("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr></thead><tbody>"
                 + "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in cols) + "</tr>"
                           for r in extra["rows"]) + "</tbody></table>")
        nbs = extra["notebooks"]
        out.append('<section id="beyond"><h2>Beyond the paper</h2><p>ROC-AUC over all thresholds (0.5 = chance), '
                   "clean samples against each attack's successes: the best of the paper's strategies per attack "
                   "(chosen after seeing the results, so optimistic) beside the maximum softmax probability (MSP), a "
                   f'baseline that needs no causal analysis (<a href="#nb-{html.escape(nbs["roc"])}">notebook '
                   f'{html.escape(nbs["roc"][:2])}</a>, <a href="#nb-{html.escape(nbs["confidence"])}">notebook '
                   f'{html.escape(nbs["confidence"][:2])}</a>).</p>' + fold_tables(table))
        if extra.get("verdict"):
            out.append("<p>Causal or confident (notebook 08): does CI add to confidence?</p><ul>"
                       + "".join(f"<li>{html.escape(v)}</li>" for v in extra["verdict"]) + "</ul>")
        out.append("</section>")
    return "".join(out)


def build(profile: str = "paper", build_dir: Path | None = None, fig_dir: Path | None = None,
          out: Path | None = None, notebooks_dir: Path | None = None) -> Path:
    """Write the page (default ``figures_dir(profile)/index.html``) from the executed notebooks, and the at-a-glance
    table as ``reproduction.md`` in the figures folder; returns the page's path."""
    global _FOLD_IDS
    _FOLD_IDS = itertools.count()
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
    stems = sorted(executed | set(sources))
    numbers = {int(_NOTEBOOK.match(f"{s}.ipynb").group(1)): s for s in stems if _NOTEBOOK.match(f"{s}.ipynb")}
    gaps = {n: GAPS.get(n, "no notebook with this number") for n in range(min(numbers, default=0),
                                                                        max(numbers, default=-1)) if n not in numbers}
    for stem in stems:
        number = int(_NOTEBOOK.match(f"{stem}.ipynb").group(1)) if _NOTEBOOK.match(f"{stem}.ipynb") else None
        for n in [g for g in gaps if number is not None and g < number]:
            contents.append(f'<li class="gap">{n:02d}: {html.escape(gaps.pop(n))}</li>')
        if stem not in executed:
            contents.append(f'<li class="missing">{html.escape(stem)}: not executed in this profile</li>')
            continue
        nb = nbformat.read(build_dir / f"{stem}.ipynb", as_version=4)
        res = _results(fig_dir, stem)
        title = _title(nb, stem)
        body, placed = _render(nb, res, fig_dir, exporter, prefix, first_number=len(shown) + 1)
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
                        + "".join(_figure_html(f, fig_dir, prefix, len(shown) + 1 + k) for k, f in enumerate(others))
                        + "</section>")
    try:
        shown_dir = str(build_dir.resolve().relative_to(config.PROJECT_ROOT))
    except ValueError:
        shown_dir = str(build_dir)
    built = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    run_rows = "".join(f"<tr><td>{html.escape(s)}</td><td>{html.escape(t)} UTC</td><td>"
                       f"{'' if d is None else f'{float(d):.0f} s'}</td></tr>" for s, t, d in runs)
    ver_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in _versions())
    footer = (f'<footer id="run"><p>Profile <b>{html.escape(profile)}</b>; page built {built} from '
              f'<code>{html.escape(shown_dir)}</code>.</p>'
              f"<table><tr><th>notebook</th><th>executed (end)</th><th>duration</th></tr>{run_rows}</table>"
              f"<table><tr><th>package</th><th>version</th></tr>{ver_rows}</table></footer>")
    results = reproduction.load(fig_dir)
    claims, extra = reproduction.claims(results), reproduction.beyond(results)
    atomic_write_bytes(fig_dir / "reproduction.md", reproduction.markdown(claims, extra).encode("utf-8"))
    nav = (f'<nav class="contents"><h2>Contents</h2><ul><li><a href="#glance">Reproduction at a glance</a></li>'
           f'<li><a href="#beyond">Beyond the paper</a></li></ul><h2>Notebooks</h2><ul>{"".join(contents)}</ul>'
           f'<ul><li><a href="#run">The run</a></li></ul></nav>')
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>CausAdv reproduction ({html.escape(profile)} profile)</title><style>{_CSS}</style></head><body>"
            f"{nav}<main><header><p><b>CausAdv: a causal-based framework for detecting adversarial examples</b> "
            f"(H. Debbi), reproduced: the <b>{html.escape(profile)}</b> profile. First the paper's claims and our "
            f"verdicts, then every notebook, executed, in paper order; code cells are collapsed under <i>code</i>, "
            f"figures open at full size when clicked.</p></header>{_glance_html(claims, extra, prefix)}"
            f"{''.join(sections)}{footer}</main></body></html>\n")
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
