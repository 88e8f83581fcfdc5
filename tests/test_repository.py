"""House rules that keep the package reproducible: sources only, the two commands, notebook shape."""
import re
import subprocess

import pytest

from causadv_lib import config

ROOT = config.PROJECT_ROOT


def _tracked(*patterns):
    try:
        out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return out.stdout.split()


def test_only_py_sources_in_notebooks_folder():
    tracked = _tracked("notebooks")
    assert tracked, "no notebooks tracked"
    assert all(p.endswith(".py") for p in tracked), f"generated files tracked in notebooks/: {tracked}"


def test_nothing_generated_is_tracked():
    bad = [p for p in _tracked() if p.startswith(("build/", ".cache/")) or p.endswith(".ipynb")
           or (p.startswith("paper_figures/") and p != "paper_figures/README.md")]
    assert not bad, bad


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make paper", "make test"]
    assert readme.index("make paper") < 400
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_readme_first_screen_links_the_claims_at_a_glance():
    """Issue 17: the README's first screen links the at-a-glance table of both profiles, which the web page step of
    `make paper` writes (causadv_lib.webpage.build)."""
    first_screen = (ROOT / "README.md").read_text()[:1200]
    for target in ("paper_figures/reproduction.md", "paper_figures/smoke/reproduction.md"):
        assert f"]({target})" in first_screen, target
    assert 'fig_dir / "reproduction.md"' in (ROOT / "causadv_lib" / "webpage.py").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "paper: $(EXECUTED)\n\t$(call PAGE,$(BUILD),$(PROFILE),$(FIGURES))" in makefile
    assert "$(PY) -m causadv_lib.webpage --profile $(2) --build-dir $(1) --figures-dir $(3)" in makefile


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9]*.py")), ids=lambda p: p.name)
def test_notebook_is_py_percent_with_title_and_profile_parameter(path):
    text = path.read_text()
    assert text.count("# %%") >= 3
    first_md = re.search(r"# %% \[markdown\]\n# # (.+)", text)
    assert first_md, "the notebook opens with a markdown cell holding the section title"
    params = re.search(r'# %% tags=\["parameters"\]\n(.*?)\n# %%', text, re.S)
    assert params and re.search(r'^profile = "paper"$', params.group(1), re.M), "parameters cell with profile"
    code = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert not re.search(r"^\s*(def|class) ", code, re.M), "helpers belong in causadv_lib/, not in notebooks"
