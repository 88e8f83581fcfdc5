"""The paper as one web page (`causadv_lib.webpage`): built from a small generated folder, then rendered in
headless Chromium, which must load every figure PNG of the folder; screenshots go to build/test-artifacts/."""
import html
import json
import os
import re
import shutil
import subprocess

import pytest

from causadv_lib import config, webpage

ARTIFACTS = config.BUILD_DIR / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: the headless rendering check "
                                                              "needs Debian's chromium package (.ci/run installs it)")

_CHECK = """<script>
window.addEventListener('load', function () {
  var rows = Array.prototype.map.call(document.images, function (i) {
    return {src: i.getAttribute('src'), width: i.naturalWidth, complete: i.complete};
  });
  var pre = document.createElement('pre');
  pre.id = 'image-check';
  pre.textContent = JSON.stringify({images: rows, tables: document.querySelectorAll('table').length});
  document.body.appendChild(pre);
});
</script>"""


def _png(path, color):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar([0, 1, 2], [1, 3, 2], color=color)
    ax.set_title(path.stem)
    fig.savefig(path, dpi=60)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)


def _notebook(path, title, figure_cell_source, figures):
    import nbformat

    v4 = nbformat.v4
    nb = v4.new_notebook()
    code = v4.new_code_cell(figure_cell_source, execution_count=2)
    code.outputs = [v4.new_output("stream", name="stderr", text="TensorFlow chatter\n"),
                    v4.new_output("stream", name="stdout", text="printed output\n")]
    table = v4.new_code_cell("display(Markdown(rep.table(...)))", execution_count=3)
    table.outputs = [v4.new_output("display_data", data={"text/markdown": "| a | b |\n|---|---|\n| 1 | 2 |\n",
                                                          "text/plain": "<Markdown>"})]
    nb.cells = [v4.new_markdown_cell(f"# {title}\n\nSome *text*."), code, table]
    nb.metadata["papermill"] = {"end_time": "2026-01-02T03:04:05.000000+00:00", "duration": 12.5,
                                "parameters": {"profile": "smoke"}}
    nbformat.write(nb, path)


def _folder(tmp_path):
    """build/ with two executed notebooks and one not executed; figures/ with three PNGs (one listed by nobody)."""
    build, figs, srcs = tmp_path / "build", tmp_path / "figures", tmp_path / "notebooks"
    for d in (build, figs, srcs):
        d.mkdir()
    for name, color in [("figA_one", "C0"), ("figA_two", "C1"), ("figB", "C2"), ("stray", "C3")]:
        _png(figs / f"{name}.png", color)
    _notebook(build / "01_first.ipynb", "1 First section",
              'for d in ("one", "two"):\n    rep.figure(fig, f"figA_{d}")\nprint("printed output")', [])
    _notebook(build / "02_second.ipynb", "2 Second section", "name = 'figB'\nrep.figure(fig, name)", [])
    (figs / "01_first.json").write_text(json.dumps({"figures": ["figA_one", "figA_two"],
                                                     "tables": {"table01_x": {}}}))
    (figs / "table01_x.csv").write_text("a,b\n1,2\n")
    (figs / "02_second.json").write_text(json.dumps({"figures": ["figB"], "tables": {}}))
    for stem in ("01_first", "02_second", "03_third"):
        (srcs / f"{stem}.py").write_text("# %%\n")
    (build / "02_second.failed.ipynb").write_text("{}")      # not a page section
    return build, figs, srcs


def _chromium(page, tmp_path, screenshot=None):
    """The JSON the check script writes into the DOM of `page` (a copy with the script sits beside it)."""
    check = page.with_name(f"_check_{page.name}")
    check.write_text(page.read_text().replace("</body>", _CHECK + "</body>"))
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=15000"]
    try:
        out = subprocess.run(base + ["--dump-dom", check.as_uri()], capture_output=True, text=True, timeout=180)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(base + ["--window-size=1280,3000", f"--screenshot={screenshot}", page.as_uri()],
                           capture_output=True, text=True, timeout=180)
    finally:
        check.unlink(missing_ok=True)
    m = re.search(r'<pre id="image-check">(.*?)</pre>', out.stdout, re.S)
    assert m, f"chromium wrote no check results (rc {out.returncode}): {out.stderr[-2000:]}"
    return json.loads(html.unescape(m.group(1)))


def _loaded(result, fig_dir, prefix=""):
    """{png name: natural width} of the images in the page, keyed by the figure's file name."""
    return {os.path.basename(r["src"]): r["width"] for r in result["images"]
            if r["src"] and r["src"].startswith(prefix)}


# ------------------------------------------------------------------------------------------- tests
def test_figure_cells_literal_fstring_and_variable_names():
    cells = [{"cell_type": "markdown", "source": 'rep.figure(fig, "nope")'},
             {"cell_type": "code", "source": 'rep.figure(fig, "fig01_a")'},
             {"cell_type": "code", "source": 'for d in ds:\n    rep.figure(fig, f"fig01_b_{d}")'},
             {"cell_type": "code", "source": "rep.figure(fig, name)"},
             {"cell_type": "code", "source": 'rep.figure(fig, "fig01_z")'}]
    where = webpage.figure_cells(cells, ["fig01_a", "fig01_b_x", "fig01_b_y", "fig01_stats_1", "fig01_z", "other"])
    assert where == {"fig01_a": 1, "fig01_b_x": 2, "fig01_b_y": 2, "fig01_stats_1": 3, "fig01_z": 4, "other": 3}
    assert webpage.figure_cells(cells[:2], ["unmatched"]) == {"unmatched": None}


def test_page_structure(tmp_path):
    build, figs, srcs = _folder(tmp_path)
    page = webpage.build("smoke", build, figs, notebooks_dir=srcs)
    assert page == figs / "index.html"
    text = page.read_text()
    # contents in paper order, the unexecuted notebook listed as such, the failed run left out
    assert text.index('href="#nb-01_first"') < text.index('href="#nb-02_second"') < text.index("03_third: not executed")
    assert "failed" not in text
    # each figure after the cell that saved it, before the next cell's table; the stray PNG in its own section
    one = text.index('src="figA_one.png"')
    assert text.index("printed output") < one < text.index('src="figA_two.png"') < text.index("<table")
    assert 'href="figA_one.pdf"' in text and 'src="figB.png"' in text
    assert text.index('id="other-figures"') < text.index('src="stray.png"')
    # markdown tables as tables, stderr dropped, code collapsed, footer
    assert "<td>1</td>" in text and "TensorFlow chatter" not in text and "<details" in text
    assert "Profile <b>smoke</b>" in text and "2026-01-02 03:04:05" in text and "nbconvert" in text
    assert 'href="table01_x.csv"' in text
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text  # nothing fetched
    # a page written elsewhere points at the figures folder relative to itself
    other = webpage.build("smoke", build, figs, out=tmp_path / "site" / "page.html", notebooks_dir=srcs)
    assert 'src="../figures/figA_one.png"' in other.read_text()


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


@needs_chromium
def test_smoke_profile_page_loads_every_figure(tmp_path):
    """The real smoke page (when `make paper PROFILE=smoke` has run): every PNG of paper_figures/smoke loads."""
    build, figs = config.BUILD_DIR / "smoke", config.figures_dir("smoke")
    if not webpage.notebook_paths(build) or not list(figs.glob("*.png")):
        pytest.skip("no executed smoke notebooks yet (make paper PROFILE=smoke)")
    page = webpage.build("smoke", out=tmp_path / "index.html")   # beside the test, the real page untouched
    res = _chromium(page, tmp_path, ARTIFACTS / "webpage_smoke.png")
    prefix = os.path.relpath(figs, tmp_path).replace(os.sep, "/") + "/"
    widths = _loaded(res, figs, prefix)
    missing = [p.name for p in sorted(figs.glob("*.png")) if widths.get(p.name, 0) <= 0]
    assert not missing, f"figures missing from the page or not loaded: {missing}"
