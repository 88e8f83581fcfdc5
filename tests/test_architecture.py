"""The library's shape: no import circle (counting imports inside functions), imports at module top, and the
one-way flow data -> models -> CI -> method -> experiment -> analysis -> report."""
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from causadv_lib import config, strategies, vocab

LIB = config.PROJECT_ROOT / "causadv_lib"
#: lower layers may not import higher ones (a module may import its own layer and below)
def _all_modules():
    out = set()
    for f in LIB.rglob("*.py"):
        rel = f.relative_to(LIB).with_suffix("")
        out.add(".".join(["causadv_lib", *[p for p in rel.parts if p != "__init__"]]))
    return out


MODULES = _all_modules()
LAYERS = [
    {"config", "checks", "io", "text", "vocab", "paper", "logprob", "pixels", "cache"},
    {"data", "preprocess", "spread"},
    {"keras_graph", "zoo", "runner", "samples"},
    {"ci"},
    {"prototypes", "strategies", "metrics", "confidence", "attacks", "defences", "heatmaps", "detector",
     "peers", "art_imports", "adaptive"},
    {"experiment", "shards"},
    {"analysis"},
    {"plots", "report", "webpage", "cli"},
]


def _module(path: Path) -> str:
    """The dotted name of the module in `path`."""
    rel = path.relative_to(LIB).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["causadv_lib", *parts])


def _imports(path: Path):
    """(imported causadv_lib module, line, inside a function?) of every import statement of `path`."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    funcs = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        if isinstance(node, ast.ImportFrom):   # `from pkg import sub` imports the submodule, not pkg's names
            names = [n for n in names[1:] if n in MODULES] or names[:1]
        for n in names:
            yield n, node.lineno, id(node) in funcs


def _graph():
    files = sorted(LIB.rglob("*.py"))
    modules = {_module(f) for f in files}
    graph = {}
    for f in files:
        edges = set()
        for name, _, _ in _imports(f):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != _module(f):
                edges.add(name)
        graph[_module(f)] = edges
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_circle_counting_imports_inside_functions():
    graph = _graph()
    # a package's __init__ importing its own submodules is not a circle of concepts; a submodule importing its
    # package's __init__ back is (it would need the package half-built)
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in graph.get(m, ()):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif not state.get(n):
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_sit_at_module_top():
    local = []
    for f in sorted(LIB.rglob("*.py")):
        lines = f.read_text().splitlines()
        for name, line, inside in _imports(f):
            # an optional or heavy dependency imported where it is needed says why, in a comment on that line
            # or just above it
            near = lines[max(0, line - 4):line]
            if inside and not ("#" in near[-1] or any(x.strip().startswith("#") for x in near[:-1])):
                local.append(f"{f.relative_to(LIB)}:{line} {name}")
    assert not local, "imports inside functions without a comment saying why:\n" + "\n".join(sorted(set(local)))


def test_data_flows_one_way():
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    wrong = []
    for m, edges in _graph().items():
        a = _top(m)
        for n in edges:
            b = _top(n)
            if a in rank and b in rank and rank[b] > rank[a]:
                wrong.append(f"{m} (layer {rank[a]}) imports {n} (layer {rank[b]})")
    assert not wrong, "imports against the data flow:\n" + "\n".join(sorted(wrong))


def test_every_module_has_a_layer():
    tops = {_top(m) for m in _graph()} - {"", "__main__"}
    known = set().union(*LAYERS)
    assert tops <= known, f"modules without a layer in this test: {sorted(tops - known)}"


def test_the_strategies_name_their_variants_as_the_vocabulary_does():
    ci = np.abs(np.random.default_rng(0).normal(size=(4, 40))).astype(np.float32)
    proto = np.abs(np.random.default_rng(1).normal(size=(3, 40))).astype(np.float32)
    names = {d: [r.name for r in strategies.evaluate_all(ci, np.array([0, 1, 2, 0]), proto, dataset=d)]
             for d in vocab.DATASETS}
    assert names["imagenet"] == [*vocab.S1_VARIANTS, vocab.S2_TOP5, *vocab.S3_VARIANTS, *vocab.S4_VARIANTS]
    assert names["cifar10"] == [*vocab.S1_VARIANTS, vocab.S2_RHO, *vocab.S3_VARIANTS, *vocab.S4_VARIANTS]
    assert set(vocab.ROC_VARIANTS) - {vocab.MAX_CI} <= set(names["imagenet"]) | set(names["cifar10"])
    with pytest.raises(ValueError, match="unknown strategy 's5'"):
        vocab.variant_name("s5")


def test_art_is_imported_in_one_place_and_quietly():
    """Only `art_imports` imports ART (its import-time warnings are filtered there once); importing every module
    that uses ART prints neither the PyTorch nor the ipywidgets warning."""
    others = []
    for path in sorted(LIB.rglob("*.py")):
        if path.name == "art_imports.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            others += [f"{path.relative_to(LIB)}: {n}" for n in names if n == "art" or n.startswith("art.")]
    assert not others, others
    run = subprocess.run([sys.executable, "-c", "import causadv_lib.attacks, causadv_lib.defences, "
                          "causadv_lib.detector, causadv_lib.peers"], capture_output=True, text=True, timeout=300,
                         cwd=LIB.parent)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "PyTorch not found" not in run.stderr and "IProgress" not in run.stderr, run.stderr[-2000:]
