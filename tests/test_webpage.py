"""The paper as one web page (`causadv_lib.webpage`): built from a small generated folder, then rendered in
headless Chromium, which must load every figure PNG of the folder; screenshots go to build/test-artifacts/.

Figures are placed by the display metadata `report.Report.figure` tags its image output with (checked in a real
kernel here). The real smoke page (build/smoke, paper_figures/smoke) is checked when it exists; `make test`
builds it first and sets CAUSADV_REQUIRE_SMOKE=1, so there a missing smoke build fails instead of skipping.
Without Chromium (a system package: Debian's `chromium`, which .ci/run installs) only the two rendering tests
skip; the real smoke page is still built and checked for every figure at its output."""
import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbclient  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from causadv_lib import config, report, webpage  # noqa: E402
from causadv_lib.analysis import reproduction  # noqa: E402

ARTIFACTS = config.BUILD_DIR / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: the headless rendering check "
                                                              "needs Debian's chromium package (.ci/run installs it)")
REQUIRE_SMOKE = os.environ.get("CAUSADV_REQUIRE_SMOKE") == "1"
v4 = nbformat.v4

_CHECK = """<script>
window.addEventListener('load', function () {
  var rows = Array.prototype.map.call(document.images, function (i) {
    return {src: i.getAttribute('src'), width: i.naturalWidth, complete: i.complete};
  });
  var raw = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT), node;
  while ((node = walker.nextNode())) {         // text a reader sees (code and printed output excepted)
    var p = node.parentElement;
    if (p && p.closest('pre, code, script, style, details.code')) continue;
    if (node.nodeValue.indexOf('$') >= 0) raw.push(node.nodeValue.slice(0, 160));
  }
  var first = document.querySelector('table');
  var pre = document.createElement('pre');
  pre.id = 'image-check';
  pre.textContent = JSON.stringify({images: rows, tables: document.querySelectorAll('table').length,
    raw_math: raw, math_svgs: document.querySelectorAll('svg.math').length,
    first_table: first ? {id: first.id, rows: first.querySelectorAll('tbody tr').length,
                          verdicts: Array.prototype.map.call(first.querySelectorAll('tbody tr .verdict'),
                                                             function (v) { return v.textContent; })} : null,
    resources: performance.getEntriesByType('resource').map(function (e) { return e.name; }),
    scroll_width: document.documentElement.scrollWidth, inner_width: window.innerWidth});
  document.body.appendChild(pre);
  if (window.parent !== window) window.parent.postMessage(pre.textContent, '*');   // from a phone-width frame
});
</script>"""
#: a page holding the checked page in a phone-width frame (headless Chromium's window is at least 500 px wide);
#: it shows the frame's check results as its own
_FRAME = """<!DOCTYPE html><html><body style="margin:0"><iframe src="{src}" style="width:{w}px;height:{h}px;border:0">
</iframe><script>window.addEventListener('message', function (e) {{
  var pre = document.createElement('pre'); pre.id = 'image-check'; pre.textContent = e.data;
  document.body.appendChild(pre); }});</script></body></html>"""
#: Chromium's own background traffic (updates, sync, the clock) switched off, so that its net log holds the page's
BROWSER_QUIET = ["--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
                 "--disable-client-side-phishing-detection", "--disable-features=Translate,OptimizationHints,MediaRouter"]


def _png(path, color):
    """Write PATH (PNG) and its PDF; returns the PNG's bytes."""
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar([0, 1, 2], [1, 3, 2], color=color)
    ax.set_title(path.stem)
    fig.savefig(path, dpi=60)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
    return path.read_bytes()


def _shown(png, name):
    """The output `report.Report.figure` displays for figure `name`."""
    data, metadata = report.figure_display(png, name)
    return v4.new_output("display_data", data=data, metadata=metadata)


def _stdout(text):
    return v4.new_output("stream", name="stdout", text=text)


def _notebook(path, title, cells):
    """An executed notebook: a title cell, code cells (source, outputs), then a cell displaying a Markdown table."""
    nb = v4.new_notebook()
    code = []
    for k, (source, outputs) in enumerate(cells):
        cell = v4.new_code_cell(source, execution_count=k + 2)
        cell.outputs = [v4.new_output("stream", name="stderr", text="TensorFlow chatter\n")] + outputs
        code.append(cell)
    table = v4.new_code_cell("display(Markdown(rep.table(...)))", execution_count=len(cells) + 2)
    table.outputs = [v4.new_output("display_data", data={"text/markdown": "| a | b |\n|---|---|\n| 1 | 2 |\n",
                                                          "text/plain": "<Markdown>"})]
    nb.cells = [v4.new_markdown_cell(f"# {title}\n\nSome *text*."), *code, table]
    nb.metadata["papermill"] = {"end_time": "2026-01-02T03:04:05.000000+00:00", "duration": 12.5,
                                "parameters": {"profile": "smoke"}}
    nbformat.write(nb, path)


def _folder(tmp_path):
    """build/ with two executed notebooks and one not executed; figures/ with PNGs: shown at outputs, one listed
    by a notebook's JSON but shown by no output, one listed by nobody; one shown figure has no PNG."""
    build, figs, srcs = tmp_path / "build", tmp_path / "figures", tmp_path / "notebooks"
    for d in (build, figs, srcs):
        d.mkdir()
    png = {name: _png(figs / f"{name}.png", color) for name, color in
           [("figA_one", "C0"), ("figA_two", "C1"), ("figB", "C2"), ("figB_unshown", "C4"), ("stray", "C3")]}
    gone = png["figB"]                                        # shown, but its PNG is not in the folder
    _notebook(build / "01_first.ipynb", "1 First section", [
        ('for d in ("one", "two"):\n    rep.figure(fig, f"figA_{d}")',
         [_stdout("printed output\n"), _shown(png["figA_one"], "figA_one"), _stdout("between the figures\n"),
          _shown(png["figA_two"], "figA_two"), _stdout("after the figures\n")])])
    _notebook(build / "02_second.ipynb", "2 Second section", [
        ("rep.figure(fig, name)", [_shown(png["figB"], "figB"), _shown(gone, "figGone")]),
        ("rep.figure(fig, name)  # saved again", [_stdout("saved again\n"), _shown(png["figB"], "figB")])])
    (figs / "01_first.json").write_text(json.dumps({"figures": ["figA_one", "figA_two"],
                                                     "tables": {"table01_x": {}}}))
    (figs / "table01_x.csv").write_text("a,b\n1,2\n")
    (figs / "02_second.json").write_text(json.dumps({"figures": ["figB", "figGone", "figB_unshown"], "tables": {}}))
    for stem in ("01_first", "02_second", "03_third"):
        (srcs / f"{stem}.py").write_text("# %%\n")
    (build / "02_second.failed.ipynb").write_text("{}")      # not a page section
    return build, figs, srcs


def _chromium(page, tmp_path, screenshot=None, window="1280,3000", netlog=None, frame=None):
    """The JSON the check script writes into the DOM of `page` (a copy with the script sits beside it), rendered in a
    `window` ("W,H") viewport; `screenshot`: also a PNG of the page's first screen; `netlog`: Chromium's network log
    of the check run is written there (`_page_requests` reads it); `frame` ("W,H"): the page is shown in a frame of
    that size instead (narrower than the browser's smallest window)."""
    check = page.with_name(f"_check_{page.name}")
    check.write_text(page.read_text().replace("</body>", _CHECK + "</body>"))
    shown = check
    if frame is not None:
        w, h = frame.split(",")
        shown = page.with_name(f"_frame_{page.name}")
        shown.write_text(_FRAME.format(src=html.escape(check.name), w=w, h=h))
        window = f"{max(int(w), 500)},{h}"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            *BROWSER_QUIET, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=15000",
            f"--window-size={window}"]
    try:
        log = [f"--log-net-log={netlog}"] if netlog is not None else []
        out = subprocess.run(base + log + ["--dump-dom", shown.as_uri()], capture_output=True, text=True, timeout=180)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(base + [f"--screenshot={screenshot}", (page if frame is None else shown).as_uri()],
                           capture_output=True, text=True, timeout=180)
    finally:
        check.unlink(missing_ok=True)
        shown.unlink(missing_ok=True)
    m = re.search(r'<pre id="image-check">(.*?)</pre>', out.stdout, re.S)
    assert m, f"chromium wrote no check results (rc {out.returncode}): {out.stderr[-2000:]}"
    return json.loads(html.unescape(m.group(1)))


def _page_requests(netlog):
    """URLs of the network requests the page made, from Chromium's net log: the URL_REQUEST_START_JOB-style events
    that carry an initiator (the browser's own requests say "not an origin"). file: URLs do not go through the
    network stack and so are not listed."""
    events = json.loads(netlog.read_text()).get("events", [])
    return sorted({e["params"]["url"] for e in events if isinstance(e.get("params"), dict) and "url" in e["params"]
                   and e["params"].get("initiator") not in (None, "not an origin")})


def _loaded(result, fig_dir, prefix=""):
    """{png name: natural width} of the images in the page, keyed by the figure's file name."""
    return {os.path.basename(r["src"]): r["width"] for r in result["images"]
            if r["src"] and r["src"].startswith(prefix)}


# ------------------------------------------------------------------------------------------- tests
def test_figure_outputs_find_the_last_output_showing_each_figure():
    png = b"\x89PNG fake"
    cells = [{"cell_type": "markdown", "source": 'rep.figure(fig, "nope")'},
             {"cell_type": "code", "source": 'rep.figure(fig, "not read")',
              "outputs": [_stdout("x"), _shown(png, "a")]},
             {"cell_type": "code", "source": "", "outputs": [_shown(png, "b"), _stdout("y"), _shown(png, "c")]},
             {"cell_type": "code", "source": "", "outputs": [
                 v4.new_output("display_data", data={"image/png": "", "text/plain": "an untagged image"}),
                 v4.new_output("display_data", data={"text/plain": ""}, metadata={"causadv": "no name"}),
                 _shown(png, "a")]}]
    assert webpage.figure_outputs(cells) == {"a": (3, 2), "b": (2, 0), "c": (2, 2)}


def test_page_structure(tmp_path):
    build, figs, srcs = _folder(tmp_path)
    page = webpage.build("smoke", build, figs, notebooks_dir=srcs)
    assert page == figs / "index.html"
    text = page.read_text()
    # contents in paper order, the unexecuted notebook listed as such, the failed run left out
    assert text.index('href="#nb-01_first"') < text.index('href="#nb-02_second"') < text.index("03_third: not executed")
    assert "failed" not in text
    # each figure at the output that shows it (the folder's PNG, not the notebook's embedded copy), before the
    # next cell's table
    order = ["printed output", 'src="figA_one.png"', "between the figures", 'src="figA_two.png"',
             "after the figures", "<table"]
    nb1 = text.index('id="nb-01_first"')                    # the notebook's section (the at-a-glance table is first)
    assert [text.index(k, nb1) for k in order] == sorted(text.index(k, nb1) for k in order)
    assert 'href="figA_one.pdf"' in text
    # a figure shown twice: its file at the last output, once; a shown figure without a PNG keeps its own image
    assert text.count('src="figB.png"') == text.count('id="fig-figB"') == 1
    assert text.index("saved again") < text.index('src="figB.png"')
    assert 'src="figGone.png"' not in text and text.count('src="data:image/png;base64,') == 2
    # listed by the JSON, shown by no output: after the notebook; the stray PNG in its own section
    assert text.index("Other figures of this notebook") < text.index('src="figB_unshown.png"') < text.index(
        'id="other-figures"') < text.index('src="stray.png"')
    assert text.count("Other figures of this notebook") == 1
    # markdown tables as tables, stderr dropped, code collapsed, footer
    assert "<td>1</td>" in text and "TensorFlow chatter" not in text and "<details" in text
    assert "Profile <b>smoke</b>" in text and "2026-01-02 03:04:05" in text and "nbconvert" in text
    assert 'href="table01_x.csv"' in text
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text  # nothing fetched
    # a page written elsewhere points at the figures folder relative to itself
    other = webpage.build("smoke", build, figs, out=tmp_path / "site" / "page.html", notebooks_dir=srcs)
    assert 'src="../figures/figA_one.png"' in other.read_text()


def test_report_figure_in_a_kernel_shows_one_tagged_image_that_the_page_replaces(tmp_path):
    """`Report.figure` run by a real IPython kernel: one image output, the PNG file's bytes, tagged with its name;
    the page built from that notebook shows the folder's PNG there; nbval, re-executing the saved notebook, passes
    the cell checked with `# NBVAL_CHECK_OUTPUT` (the tagged image output compares by its text/plain)."""
    build, figs = tmp_path / "build", tmp_path / "figures"
    build.mkdir()
    source = "\n".join([
        "# NBVAL_CHECK_OUTPUT", "import sys",
        f"sys.path.insert(0, {str(config.PROJECT_ROOT)!r})   # this checkout's causadv_lib",
        "import matplotlib", 'matplotlib.use("Agg")', "import matplotlib.pyplot as plt",
        "from causadv_lib import report",
        f'rep = report.Report("01_kernel", "smoke", out_dir={str(figs)!r})',
        "fig, ax = plt.subplots(figsize=(2, 2))", "ax.plot([0, 1], [1, 0])",
        'rep.figure(fig, "figK")', "plt.close(fig)", 'print("after", "the figure")', "rep.save()", "pass"])
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# K\n"), v4.new_code_cell(source)])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for o in nb.cells[1].outputs if not (o.output_type == "stream" and o.name == "stderr")]
    assert [o.output_type for o in outputs] == ["display_data", "stream"], outputs
    assert report.displayed_figure(outputs[0]) == "figK"
    assert base64.b64decode(outputs[0].data["image/png"]) == (figs / "figK.png").read_bytes()
    nbformat.write(nb, build / "01_kernel.ipynb")
    text = webpage.build("smoke", build, figs, notebooks_dir=tmp_path / "none").read_text()
    assert text.count('src="figK.png"') == 1 and "data:image" not in text
    assert text.index('src="figK.png"') < text.index("after the figure")
    assert "Other figures" not in text
    nbval = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                            "--nbval-sanitize-with", str(config.PROJECT_ROOT / "tests" / "nbval_sanitize.cfg"),
                            str(build / "01_kernel.ipynb")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert nbval.returncode == 0 and "1 passed" in nbval.stdout, nbval.stdout[-3000:]


def test_report_figure_outside_ipython_displays_nothing(tmp_path, capsys):
    fig, ax = plt.subplots()
    paths = report.Report("nb", "smoke", out_dir=tmp_path).figure(fig, "f")
    plt.close(fig)
    assert [p.name for p in paths] == ["f.png", "f.pdf"] and capsys.readouterr().out == ""


def test_cli_writes_the_page(tmp_path, capsys):
    build, figs, _ = _folder(tmp_path)
    assert webpage.main(["--profile", "smoke", "--build-dir", str(build), "--figures-dir", str(figs)]) == 0
    assert (figs / "index.html").exists() and "web page:" in capsys.readouterr().out


@needs_chromium
def test_every_figure_loads_in_headless_chromium(tmp_path):
    build, figs, srcs = _folder(tmp_path)
    page = webpage.build("smoke", build, figs, notebooks_dir=srcs)
    res = _chromium(page, tmp_path, ARTIFACTS / "webpage_synthetic.png")
    widths = _loaded(res, figs)
    for png in sorted(figs.glob("*.png")):
        assert png.name in widths, f"{png.name} is not on the page"
        assert widths[png.name] > 0, f"{png.name} did not load"
    assert res["tables"] >= 3                                  # markdown tables and the footer's
    assert (ARTIFACTS / "webpage_synthetic.png").stat().st_size > 10_000


def _smoke_page(tmp_path):
    """The real smoke page, built beside the test (the real one untouched), with its folders."""
    build, figs = config.BUILD_DIR / "smoke", config.figures_dir("smoke")
    if not webpage.notebook_paths(build) or not list(figs.glob("*.png")):
        message = f"no executed smoke notebooks in {build} or no figures in {figs} (make paper PROFILE=smoke)"
        if REQUIRE_SMOKE:
            pytest.fail(message + ": CAUSADV_REQUIRE_SMOKE=1 (make test builds them before pytest)")
        pytest.skip(message)
    return webpage.build("smoke", out=tmp_path / "index.html"), build, figs


def test_smoke_profile_page_shows_every_figure_at_its_output(tmp_path):
    """Every figure a smoke notebook saved is shown by one of its outputs, and the page puts the PNG there:
    each PNG of the folder once, none left to "Other figures of this notebook"."""
    page, build, figs = _smoke_page(tmp_path)
    text = page.read_text()
    for path in webpage.notebook_paths(build):
        listed = json.loads((figs / f"{path.stem}.json").read_text())["figures"]
        shown = webpage.figure_outputs(nbformat.read(path, as_version=4).cells)
        assert sorted(shown) == sorted(listed), (f"{path.name}: figures saved {listed}, shown {sorted(shown)} "
                                                 "(executed by an older causadv? make paper PROFILE=smoke)")
    assert "Other figures of this notebook" not in text
    prefix = os.path.relpath(figs, tmp_path).replace(os.sep, "/") + "/"
    for png in sorted(figs.glob("*.png")):
        assert text.count(f'src="{html.escape(prefix + png.name)}"') == 1, f"{png.name} not on the page once"


#: library chatter that must not reach a notebook's outputs (issue 17): TensorFlow's C++ core before absl's
#: logging starts, tqdm asking for ipywidgets, ART's certification package without PyTorch, TF's retracing
LIBRARY_WARNINGS = ("absl::InitializeLog", "oneDNN custom operations", "TqdmWarning", "IProgress not found",
                    "PyTorch not found", "retracing")


def test_smoke_notebooks_outputs_hold_no_library_warnings(tmp_path):
    """No output of an executed smoke notebook (stdout, stderr, displays) carries the library warnings above."""
    _, build, _ = _smoke_page(tmp_path)
    found = []
    for path in webpage.notebook_paths(build):
        for k, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for out in cell.get("outputs", []):
                text = json.dumps(out)
                found += [f"{path.name} cell {k}: {w}" for w in LIBRARY_WARNINGS if w in text]
    assert not found, found


def test_a_project_kernel_keeps_fd_level_output_out_of_the_cell(tmp_path):
    """The venv's kernel config (etc/ipython_kernel_config.py, installed by `make env`): what a C library writes
    to file descriptor 2 (as TensorFlow's core does at import) does not become a cell output; Python's own
    stdout and stderr still do."""
    assert (Path(sys.prefix) / "etc" / "ipython" / "ipython_kernel_config.py").read_bytes() == \
        (config.PROJECT_ROOT / "etc" / "ipython_kernel_config.py").read_bytes(), "make env installs it"
    cell = v4.new_code_cell("import os, sys\nos.write(2, b'fd-level line\\n')\nprint('python stderr', file=sys.stderr)"
                            "\nprint('python stdout')")
    nb = v4.new_notebook(cells=[cell])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert "python stderr" in text and "python stdout" in text
    assert "fd-level line" not in text


@needs_chromium
def test_smoke_profile_page_as_a_reader_sees_it(tmp_path):
    """The real smoke page in headless Chromium (issue 17): every PNG of paper_figures/smoke loads; no text a
    reader sees holds a raw `$` (formulas are typeset, as SVG); the page requests nothing but files (Chromium's net
    log and the page's own resource list); the first table is the at-a-glance table, one row per claim, each with
    its verdict; at phone width (390 px) the page does not scroll sideways. Screenshots of the first screen, wide
    and narrow, go to build/test-artifacts/."""
    page, build, figs = _smoke_page(tmp_path)
    res = _chromium(page, tmp_path, ARTIFACTS / "webpage_smoke.png", window="1280,1000", netlog=tmp_path / "net.json")
    prefix = os.path.relpath(figs, tmp_path).replace(os.sep, "/") + "/"
    widths = _loaded(res, figs, prefix)
    missing = [p.name for p in sorted(figs.glob("*.png")) if widths.get(p.name, 0) <= 0]
    assert not missing, f"figures missing from the page or not loaded: {missing}"
    assert all(r["width"] > 0 and r["complete"] for r in res["images"]), [r for r in res["images"] if not r["width"]]
    assert not res["raw_math"], f"raw TeX on the page: {res['raw_math'][:5]}"
    assert res["math_svgs"] > 10                               # the notebooks' formulas, typeset
    assert _page_requests(tmp_path / "net.json") == []
    assert all(u.startswith("file:") for u in res["resources"]), res["resources"][:5]
    claims = reproduction.claims(reproduction.load(figs))
    assert res["first_table"]["id"] == "glance-table"
    assert res["first_table"]["rows"] == len(claims) >= 8
    assert res["first_table"]["verdicts"] == [c.verdict for c in claims]
    assert (ARTIFACTS / "webpage_smoke.png").stat().st_size > 10_000
    narrow = _chromium(page, tmp_path, ARTIFACTS / "webpage_smoke_390px.png", frame="390,844")
    assert narrow["inner_width"] == 390
    assert narrow["scroll_width"] <= narrow["inner_width"], f"scrolls sideways: {narrow['scroll_width']} px"
    assert (figs / "reproduction.md").read_text().count("\n| ") >= len(claims)   # make paper's table for the README


@needs_chromium
def test_the_request_log_sees_a_request_that_leaves_the_page(tmp_path):
    """The request check of the smoke page is not vacuous: an image from http://127.0.0.1 (a closed port, nothing
    leaves the machine) shows in the net log and in the page's resource list."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png"><table><tr><td>1</td></tr>'
                    "</table></body></html>")
    res = _chromium(page, tmp_path, netlog=tmp_path / "net.json", window="390,400")
    assert _page_requests(tmp_path / "net.json") == ["http://127.0.0.1:9/x.png"]
    assert "http://127.0.0.1:9/x.png" in res["resources"]


def test_formulas_are_typeset_as_svg_and_warnings_dropped(tmp_path):
    """Markdown formulas (cells and Markdown outputs) become inline SVG with no `$` left; TensorFlow's retracing
    warning, absl and oneDNN lines leave printed output, the rest of it stays."""
    build, figs, srcs = tmp_path / "build", tmp_path / "figures", tmp_path / "notebooks"
    for d in (build, figs, srcs):
        d.mkdir()
    nb = v4.new_notebook()
    cell = v4.new_code_cell("print(...)", execution_count=1)
    cell.outputs = [_stdout("WARNING:tensorflow:5 out of the last 5 calls to <function f> triggered tf.function "
                            "retracing. Tracing is expensive\nkept line\n"),
                    _stdout("I0000 00:00:1796158862.468200   27256 port.cc:153] oneDNN custom operations are on.\n"),
                    v4.new_output("display_data", data={"text/markdown": "steps of $p_c$ here",
                                                        "text/plain": "<Markdown>"})]
    nb.cells = [v4.new_markdown_cell("# 1 Math\n\nThe set $F_W^{x\\mapsto\\varphi}$ and\n\n"
                                     "$$CI_k = p_c(x) - p_c(x \\setminus k)$$\n"), cell]
    nbformat.write(nb, build / "01_math.ipynb")
    (srcs / "01_math.py").write_text("# %%\n")
    text = webpage.build("smoke", build, figs, notebooks_dir=srcs).read_text()
    body = text[text.index('id="nb-01_math"'):]
    assert "$" not in body and body.count('<svg class="math"') == 3 and 'aria-label="p_c"' in body
    assert "retracing" not in text and "oneDNN" not in text and "kept line" in text
    assert "CAUSADVMATH" not in text


def test_long_tables_fold_with_their_csv_and_figures_are_numbered(tmp_path):
    """A Markdown table longer than FOLD_ROWS shows that many rows, the rest behind "show all" with the table's CSV;
    figures are numbered, captioned with the paper's number, and link to their full-size PNG; the gap in the
    notebooks' numbering is explained."""
    build, figs, srcs = tmp_path / "build", tmp_path / "figures", tmp_path / "notebooks"
    for d in (build, figs, srcs):
        d.mkdir()
    rep = report.Report("08_long", "smoke", out_dir=figs)
    md = rep.table("table08_long", [{"i": i} for i in range(20)])
    png = _png(figs / "fig04_common_features.png", "C0")
    rep.results["figures"].append("fig04_common_features")
    rep.save()
    nb = v4.new_notebook()
    cell = v4.new_code_cell('display(Markdown(rep.table("table08_long", rows)))', execution_count=1)
    cell.outputs = [v4.new_output("display_data", data={"text/markdown": md, "text/plain": "<Markdown>"}),
                    _shown(png, "fig04_common_features")]
    nb.cells = [v4.new_markdown_cell("# 8 Long"), cell]
    nbformat.write(nb, build / "08_long.ipynb")
    for stem in ("06_six", "08_long"):
        (srcs / f"{stem}.py").write_text("# %%\n")
    text = webpage.build("smoke", build, figs, notebooks_dir=srcs).read_text()
    table = text[text.index('<div class="fold">'):]
    table = table[:table.index("</table>")]
    assert table.count('<tr class="more"') == 20 - webpage.FOLD_ROWS and "show all 20 rows" in table
    assert 'href="table08_long.csv"' in table and 'id="tbl-table08_long"' in text
    assert "<b>Figure 1 (the paper's Figure 3).</b>" in text and '<a class="full" href="fig04_common_features.png"' in text
    assert "07: " + html.escape(webpage.GAPS[7]) in text
    assert text.index("06_six: not executed") < text.index("07: ") < text.index('href="#nb-08_long"')


def test_markup_in_the_data_reaches_the_page_as_text(tmp_path):
    """Issue 14: a custom model's class name `<img src=x onerror=alert(2)>` shows as those characters, a `|` or a
    newline in a cell keeps the table's rows, and the CSV keeps the raw value (RFC 4180 quoting)."""
    hostile = "<img src=x onerror=alert(2)>"
    build, figs, srcs = tmp_path / "build", tmp_path / "figures", tmp_path / "notebooks"
    for d in (build, figs, srcs):
        d.mkdir()
    rep = report.Report("01_hostile", "smoke", out_dir=figs)
    md = rep.table("table01_hostile", [{"class": hostile, "note": "a|b\nc", "n": 1}, {"class": "ok", "note": "", "n": 2}])
    nb = v4.new_notebook()
    cell = v4.new_code_cell("display(Markdown(md))", execution_count=1)
    cell.outputs = [v4.new_output("display_data", data={"text/markdown": md, "text/plain": "<Markdown>"})]
    nb.cells = [v4.new_markdown_cell("# 1 Hostile"), cell]
    nbformat.write(nb, build / "01_hostile.ipynb")
    (srcs / "01_hostile.py").write_text("# %%\n")
    rep.save()
    text = webpage.build("smoke", build, figs, notebooks_dir=srcs).read_text()
    assert "<img src=x" not in text                           # no live markup from the data
    assert "&lt;img src=x onerror=alert(2)" in text            # the characters themselves, shown
    nb = text.index('id="nb-01_hostile"')                   # the notebook's table (the at-a-glance table is first)
    body = text[text.index("<table", nb):text.index("</table>", nb)]
    assert body.count("<tr") == 3                              # header + two rows: `|` and newline did not split
    assert (figs / "table01_hostile.csv").read_text().splitlines()[1].startswith(f'{hostile},"a|b')
