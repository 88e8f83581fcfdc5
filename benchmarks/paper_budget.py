"""The budget of `make paper`: each notebook's unavoidable passes, timed on this machine, against its measured time.

    make paper                                                   # first: the notebooks' times (build/timings.tsv)
    .venv/bin/python benchmarks/paper_budget.py                  # ~3 min on 2 cores on a warm cache
    .venv/bin/python benchmarks/paper_budget.py --timings build/timings.tsv --images 32 --repeats 3 --json build/budget.json

The passes are counted from the profile (`causadv_lib.analysis.budget.items`: the attacks' gradient steps, the CI
vectors, prototypes, purifiers, the evaluations; the experiment's sizes from its cache). Each kind of pass is
timed here, per model, in this run: the median of ``--repeats`` runs on ``--images`` images after a warm-up,
the models' passes alternating so that noise hits all alike; ``kernel`` is what ``make paper`` runs for every
notebook (the ``jupytext`` and ``papermill`` commands) on a notebook that only imports the library, ``load`` a
fresh build of each zoo model (what a notebook's first ``zoo.get`` of it costs).
The lower bound of a notebook is the sum of its passes at these costs, plus ``kernel`` and one ``load`` per
model; its measured time (``timings.tsv``, written by ``make paper``) over that bound is its ratio, the same on
any machine as far as a notebook's time scales like its passes. Lines::

    unit MODEL KIND=MS ...                       (milliseconds per image; kernel and load in seconds)
    notebook NAME bound_s=.. measured_s=.. ratio=..
    total bound_s=.. measured_s=.. ratio=..

Exits non-zero when a ratio is above ``--max-ratio`` (2, the issue's target) or a notebook has no time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import jupytext  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402

from causadv_lib import adaptive, attacks, ci, config, data, defences, experiment, runner, spread, zoo  # noqa: E402
from causadv_lib.analysis import budget, reproduction  # noqa: E402
from causadv_lib.detector import CausAdvDetector  # noqa: E402

#: what every notebook's first cell imports (the kernel's fixed cost)
KERNEL_CELL = """import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from causadv_lib import config, data, experiment, plots, report, zoo
from causadv_lib.analysis import tables"""


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def kernel_seconds(repeats: int) -> float:
    """Median wall time of what `make paper` runs for every notebook (``jupytext`` to .ipynb, then the
    ``papermill`` command with the profile parameter), on a notebook whose one cell imports the library."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = 'paper'", metadata={"tags": ["parameters"]}),
                                        nbformat.v4.new_code_cell(KERNEL_CELL)])
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "kernel.py")
        src.write_text(jupytext.writes(nb, fmt="py:percent"))
        ipynb, out = Path(tmp, "kernel.src.ipynb"), Path(tmp, "kernel.run.ipynb")
        cmds = [[str(bindir / "jupytext"), "--quiet", "--to", "ipynb", "--set-kernel", "python3", "--output",
                 str(ipynb), str(src)],
                [str(bindir / "papermill"), "--no-progress-bar", "--log-output", "-k", "python3", "-p", "profile",
                 "paper", str(ipynb), str(out)]]
        return statistics.median(_timed(lambda: [subprocess.run(c, check=True, cwd=ROOT, capture_output=True)
                                                 for c in cmds]) for _ in range(repeats))


def own_model_b():
    """Notebook 09's second model, with random weights (its cost does not depend on them)."""
    keras.utils.set_random_seed(config.SEED)
    base = keras.applications.VGG16(input_shape=(32, 32, 3), include_top=False, weights=None)
    net = keras.Sequential([keras.Input((32, 32, 3)), base, keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(10, name="head")], name=budget.NB09_B)
    return zoo.custom(net, lambda images: np.asarray(images, np.float32) / 127.5 - 1, outputs="logits",
                      normalize=lambda x: x / 127.5 - 1, class_names=data.CIFAR10_CLASSES, name=budget.NB09_B,
                      dataset="cifar10")


def _pool_of(zm) -> str:
    return "cifar10_eval" if zm.dataset == "cifar10" else "imagenet_eval"


def unit_runs(zm, kinds: set[str], n: int, profile: str) -> dict:
    """name -> (callable, images) for each kind of pass on `zm`, on `n` images of its evaluation pool."""
    pool = data.pool(_pool_of(zm))
    idx = spread.spread(len(pool), n)
    geometry = zm.geometry or (lambda images: np.asarray(images))
    x = geometry(pool.load(idx)).astype(np.float32)
    y = np.asarray(pool.labels)[idx] % zm.num_classes
    inputs = zm.normalize(x)
    runs = {}
    if "decode" in kinds:
        runs["decode"] = lambda: geometry(pool.load(idx))
    if "forward" in kinds:
        runs["forward"] = lambda: runner.probabilities(zm.model, inputs)
    if "activations" in kinds:
        runs["activations"] = lambda: runner.activations(zm.model, inputs, zm.ci_layer)
    if "ci" in kinds:
        runs["ci"] = lambda: ci.counterfactual_information(zm.model, inputs, zm.ci_layer, cache=False)
    if "gradient" in kinds:
        clf = attacks.art_classifier(zm)
        onehot = np.eye(zm.num_classes, dtype=np.float32)[y]
        runs["gradient"] = lambda: clf.canonical_loss_gradient(x, onehot)
    for w in (2, 3, 7):
        if f"median_{w}" in kinds:
            runs[f"median_{w}"] = (lambda w=w: defences.median_smooth(x, w, (0.0, 255.0)))
    if "ci_gradient" in kinds:
        setup = next(s for s in experiment.setups(profile) if s.model == zm.name)   # notebook 07's detector
        fs = experiment.fit_set(setup)
        det = CausAdvDetector(zm, fpr=config.DETECTOR_FPR, cache=True, progress=False)
        det.fit(fs.pixels, fs.labels, prototypes=experiment.prototype_set(setup))
        # the adaptive attacker's steps: 4 iterations minus 1 (the difference is 3 steps, tracing excluded)
        one = lambda: adaptive.adaptive_attack(det, x, y, eps=8 / 255, iterations=(1,), cache=False, progress=False)
        four = lambda: adaptive.adaptive_attack(det, x, y, eps=8 / 255, iterations=(4,), cache=False, progress=False)
        runs["ci_gradient"] = (one, four)
    return runs


def measure_units(models: dict, kinds: dict[str, set], n: int, repeats: int, profile: str) -> dict[tuple[str, str], float]:
    """Seconds per image of each (model, kind): medians over `repeats`, runs alternating across models."""
    runs = {(name, k): fn for name, zm in models.items() for k, fn in unit_runs(zm, kinds[name], n, profile).items()}
    for fn in runs.values():                                   # warm-up: tracing, first reads
        for f in (fn if isinstance(fn, tuple) else (fn,)):
            f()
    times = defaultdict(list)
    for _ in range(repeats):
        for key, fn in runs.items():
            if isinstance(fn, tuple):
                times[key].append((_timed(fn[1]) - _timed(fn[0])) / 3)
            else:
                times[key].append(_timed(fn))
    return {key: max(statistics.median(t), 0.0) / n for key, t in times.items()}


def read_timings(path: Path) -> dict[str, float]:
    rows = [ln.split("\t") for ln in path.read_text().splitlines()[1:] if ln.strip()]
    return {name: float(sec) for name, sec in rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--timings", type=Path, default=None,
                    help="make paper's timings.tsv (default build/timings.tsv, build/PROFILE/ for other profiles)")
    ap.add_argument("--figures", type=Path, default=None,
                    help="the run's results JSON files (default paper_figures/, paper_figures/PROFILE/ for other profiles)")
    ap.add_argument("--images", type=int, default=32, help="images per timed run (a multiple of 16 is best)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-ratio", type=float, default=2.0)
    ap.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = ap.parse_args(argv)
    timings_path = args.timings or (config.BUILD_DIR if args.profile == "paper"
                                    else config.BUILD_DIR / args.profile) / "timings.tsv"
    measured = read_timings(timings_path)
    own = reproduction.load(args.figures or config.figures_dir(args.profile)).get("09_your_own_model", {})
    own_correct = {p: own.get("values", {}).get(f"{p}/setup", {}).get("correct", 0) for p in ("a", "b")}
    work = budget.items(args.profile, own_model_correct=own_correct)
    kinds = defaultdict(set)
    for it in work:
        kinds[it.model].add(it.kind)
    loads, models = {}, {}
    for name in sorted(kinds):              # a fresh build, as a notebook's first zoo.get (budget.items built some)
        t0 = time.perf_counter()
        models[name] = own_model_b() if name == budget.NB09_B else zoo.BUILDERS[name]()
        loads[name] = time.perf_counter() - t0
    fixed = {"kernel": kernel_seconds(args.repeats)}
    units = measure_units(models, kinds, args.images, args.repeats, args.profile)
    print(f"# {os.uname().machine}, {os.cpu_count()} CPUs, profile={args.profile}, images={args.images}, "
          f"repeats={args.repeats}; units in ms per image, kernel and load in s")
    print(f"unit kernel={fixed['kernel']:.2f}")
    for name in sorted(kinds):
        per = " ".join(f"{k}={units[(name, k)] * 1e3:.3f}" for k in budget.KINDS if (name, k) in units)
        print(f"unit {name} load={loads[name]:.2f} {per}")
    bounds = budget.bounds(work, units, fixed, loads)
    ok, rows = True, []
    for nb, b in bounds.items():
        m = measured.get(nb)
        ratio = m / b if m is not None else float("nan")
        ok &= m is not None and ratio <= args.max_ratio
        rows.append({"notebook": nb, "bound_s": b, "measured_s": m, "ratio": ratio})
        print(f"notebook {nb} bound_s={b:.1f} measured_s={'-' if m is None else f'{m:.1f}'} ratio={ratio:.2f}")
    missing = sorted(set(measured) - set(bounds))
    for nb in missing:                       # a notebook with no counted pass: its bound is the kernel alone
        b = fixed["kernel"]
        ratio = measured[nb] / b
        ok &= ratio <= args.max_ratio
        rows.append({"notebook": nb, "bound_s": b, "measured_s": measured[nb], "ratio": ratio})
        print(f"notebook {nb} bound_s={b:.1f} measured_s={measured[nb]:.1f} ratio={ratio:.2f}")
    tb = sum(r["bound_s"] for r in rows if r["measured_s"] is not None)
    tm = sum(r["measured_s"] for r in rows if r["measured_s"] is not None)
    print(f"total bound_s={tb:.1f} measured_s={tm:.1f} ratio={tm / tb:.2f}")
    ok &= tm / tb <= args.max_ratio
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "units_ms": {f"{m} {k}": v * 1e3 for (m, k), v in units.items()}, "fixed_s": fixed, "load_s": loads,
            "notebooks": rows, "counts": [[nb, m, k, c] for (nb, m, k), c in budget.by_kind(work).items()]},
            indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
