"""The unavoidable work of `make paper`: per notebook, the passes of each model that its figures and tables
need, counted from the profile (`config`) and the experiment's own sizes, and the lower bound in seconds they
give at per-pass costs measured on the machine at hand (`benchmarks/paper_budget.py` measures them).

A pass is one image through one stage: ``decode`` (read and resize one image of the pool, at the model's
input size), ``forward`` (the model's prediction), ``activations`` (the network up to the CI layer),
``ci`` (one CI vector, `ci.counterfactual_information`), ``gradient`` (one forward and backward pass of
the attacks' loss, `attacks.CompiledGradientClassifier`), ``ci_gradient`` (one step of the adaptive
attacker: the gradient through the CI vector, `adaptive`), ``median_2``, ``median_3``, ``median_7`` (a
median filter of that window, `defences`). Every notebook also pays ``kernel`` (papermill starting a
kernel that imports the library) and ``load`` once per model it uses (building the zoo model).

What is counted is what cannot be skipped: each attack's gradient steps (`attacks.SETTINGS`), one CI vector
per image judged, one forward pass per purified image and purifier (not for ``none``: the experiment knows
those predictions), the plain ablation's K + 1 passes per image checked, prototypes once (notebook 01, whose
cache the experiment reads), an attack run once however many notebooks read it, a clean image decoded once
per notebook that shows it. The adaptive attacker's steps are counted in whole micro-batches of
`runner.MICRO_BATCH` images (its canonical layout, which makes an image's result independent of the others:
10 images take the 16 slots of one call). Work that is not a model pass (plots, tables, fitting a logistic regression) is
not counted, so the bound is a floor: a notebook's measured time over it is at least 1.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from .. import attacks, config, data, defences, experiment, peers, runner, zoo
from ..ci import num_filters
from ..zoo import evaluate

#: the kinds of pass (module docstring), each timed per model
KINDS = ("decode", "forward", "activations", "ci", "gradient", "ci_gradient", "median_2", "median_3", "median_7")
#: costs paid once per notebook (``kernel``) and once per model a notebook uses (``load``)
FIXED = ("kernel", "load")
#: the stand-in name of notebook 09's second model (a VGG16 of random weights at 32 x 32 with a fitted head),
#: which is not in the zoo: the benchmark builds the same architecture to time it
NB09_B = "vgg16_random_features_cifar10"
#: notebook 09's default model (its `model` parameter)
NB09_MODEL = "mobilenet_v1_imagenet"


@dataclass(frozen=True)
class Item:
    """`count` passes of `kind` on `model`, needed by `notebook` for `what`."""

    notebook: str
    model: str
    kind: str
    count: int
    what: str


def steps(attack: str) -> int:
    """Gradient steps per image of one of the library's attacks (`attacks.SETTINGS`)."""
    s = attacks.SETTINGS[attack]
    return s["max_iter"] * max(1, s["num_random_init"])


def _pool_size(name: str, limit: int | None) -> int:
    n = len(data.pool(name))
    return n if limit is None else min(n, limit)


def items(profile: str = "paper", own_model_correct: dict[str, int] | None = None) -> list[Item]:
    """Every counted pass of `make paper` at `profile` with the default models (`config.EXPERIMENT_MODELS`).

    The experiment's sizes (correctly classified clean images, successful adversarial examples) come from
    `experiment.run`, cached after `make paper`; on an empty cache this runs the experiment. Notebook 09's
    (the images its two models classify correctly) are `own_model_correct` (see `_own_model`)."""
    P = config.get_profile(profile)
    out: list[Item] = []

    def add(nb, model, kind, count, what):
        if count:
            out.append(Item(nb, model, kind, int(count), what))

    # 00: every offline zoo model on each of its pools
    for name in evaluate.OFFLINE_MODELS:
        for pool in evaluate.CHECK_POOLS[zoo.get(name).dataset]:       # as notebook 00 does
            n = _pool_size(pool, P.accuracy_limit)
            add("00_models_and_data", name, "decode", n, f"top-1 on {pool}")
            add("00_models_and_data", name, "forward", n, f"top-1 on {pool}")
    setups = experiment.setups(profile)
    # 01: the prototypes (read by every later notebook from the cache) and the check against plain ablation
    for s in setups:
        n = _pool_size(s.prototype_pool, P.prototype_pool_limit)
        add("01_causal_learning", s.model, "decode", n, f"prototypes: {s.prototype_pool}")
        add("01_causal_learning", s.model, "ci", n, f"prototypes: {s.prototype_pool}")
        zm = s.zoo_model()
        k = num_filters(zm.model, zm.ci_layer)
        imgs = config.ABLATION_CHECK_IMAGES[profile][s.dataset]
        checked = config.ABLATION_CHECK_FILTERS[profile]
        filters = k if (checked is None or k <= 512) else checked
        add("01_causal_learning", s.model, "forward", imgs * (filters + 1), "plain ablation, K + 1 passes per image")
    exps = {s.dataset: experiment.run(s, progress=False) for s in setups}
    for d, exp in exps.items():
        s, n, c = exp.setup, exp.clean.n, exp.clean.n_correct
        keys = [k for eps in s.eps for k in s.keys(eps)]
        succ = {k: exp.adversarial[k].n_success for k in keys}
        for nb in ("02_experiment_setup", "03_ci_distributions", "04_detection_strategies", "05_defence_comparison",
                   "06_causal_explanations", "07_beyond_the_paper", "08_causal_or_confident"):
            add(nb, s.model, "decode", n, "the clean evaluation images")
        # 02: the clean CI vectors, every attack, the CI vectors of its outputs
        add("02_experiment_setup", s.model, "ci", n, "clean CI vectors")
        for k in keys:
            add("02_experiment_setup", s.model, "gradient", c * steps(k.attack), f"attack {k.full_label}")
            add("02_experiment_setup", s.model, "ci", c, f"CI of {k.full_label}")
        # 05: each purifier but none on the correct clean images and the successful examples, and its prediction
        for eps in s.eps:
            m = c + sum(succ[k] for k in s.keys(eps))
            for p in (*defences.PAPER_PURIFIERS, *defences.XU_PURIFIERS):
                add("05_defence_comparison", s.model, "forward", m, f"predictions after {p}, eps {eps:.4f}")
                w = defences.PURIFIERS[p].params.get("window_size")
                if w is not None:
                    add("05_defence_comparison", s.model, f"median_{w}", m, f"{p}, eps {eps:.4f}")
            # 06: the CI layer's activations of the same images (the causal heatmaps)
            add("06_causal_explanations", s.model, "activations", m, f"heatmaps, eps {eps:.4f}")
        # 08: the CI vectors under the two other definitions, and the logits, of every clean and attacked image
        attacked = n + c * len(keys)
        add("08_causal_or_confident", s.model, "ci", 2 * attacked, "CI vectors under log-probability and logit")
        add("08_causal_or_confident", s.model, "forward", attacked, "logits")
        out.extend(_beyond(profile, exp, succ))
    out.extend(_own_model(profile, own_model_correct))
    return out


def _beyond(profile: str, exp, succ: dict) -> list[Item]:
    """Notebook 07's passes for one setup (`config.beyond`)."""
    nb, s = "07_beyond_the_paper", exp.setup
    if s.dataset not in config.BEYOND_DATASETS[profile]:
        return []
    b = config.beyond(profile, s.dataset)
    c = exp.clean.n_correct
    squeezers = peers.default_squeezers(s.dataset)
    medians = [p.params["window_size"] for p in squeezers if "window_size" in p.params]
    out = []

    def add(kind, count, what):
        if count:
            out.append(Item(nb, s.model, kind, int(count), what))

    def peers_on(m, what):                 # the feature-squeezing and subset-scanning peers score m images
        add("forward", m * len(squeezers), f"feature squeezing: {what}")
        for w in medians:
            add(f"median_{w}", m, f"feature squeezing: {what}")
        add("activations", m, f"subset scanning: {what}")

    add("decode", b.fit_images, "detector fit images")
    add("ci", b.fit_images, "CausAdv fitted")
    peers_on(b.fit_images, "fitted")
    sup = min(b.supervised_images, b.fit_images)
    adaptive_n, sweep_n = min(b.adaptive_images, c), min(b.sweep_images, c)
    for eps in s.eps:
        m = c + sum(succ[k] for k in s.keys(eps))
        peers_on(m, f"scored, eps {eps:.4f}")
        add("gradient", sup * steps("pgd"), f"Mahalanobis training PGD, eps {eps:.4f}")
        add("activations", 2 * sup, f"Mahalanobis features, eps {eps:.4f}")
        T = max(b.adaptive_iterations)
        slots = runner.round_up(adaptive_n, runner.MICRO_BATCH)   # each step runs whole canonical micro-batches
        add("ci_gradient", slots * T, f"adaptive attacker, eps {eps:.4f}")
        add("gradient", slots * T, f"the plain margin-loss loop, eps {eps:.4f}")
        add("ci", 2 * adaptive_n * len(b.adaptive_iterations), f"judging the adaptive iterates, eps {eps:.4f}")
        for k in s.keys(eps):          # every float attack's images rounded to uint8, predicted; the 8-bit attacks
            add("forward", c, f"{k.full_label} rounded to uint8")      # (grid) on the first images, judged by CI
            add("gradient", sweep_n * steps(k.attack), f"8-bit {k.full_label}")
            add("ci", sweep_n, f"8-bit {k.full_label}")
    for eps in config.SWEEP_EPS:
        if any(abs(eps - e) < 1e-12 for e in s.eps):
            continue                   # the experiment's own budgets: its first images, not a new run
        for a in config.SWEEP_ATTACKS:
            add("gradient", sweep_n * steps(a), f"eps sweep, {a} at {eps:.4f}")
            add("ci", sweep_n, f"eps sweep, {a} at {eps:.4f}")
    return out


def _own_model(profile: str, correct: dict[str, int] | None) -> list[Item]:
    """Notebook 09: a zoo model through the experiment's stages (part A), and a model built in the notebook
    (part B). `correct`: the correctly classified images of each part (``{"a": n, "b": n}``, as its results
    JSON records them; the attacks run on those), or None (then none is attacked: the bound is lower)."""
    nb, S, out = "09_your_own_model", config.OWN_MODEL_SCALE[profile], []
    correct = correct or {"a": 0, "b": 0}
    zm = NB09_MODEL
    proto = _pool_size("imagenet_prototypes", S["proto_limit"])
    out += [Item(nb, zm, "decode", proto, "prototypes"), Item(nb, zm, "ci", proto, "prototypes"),
            Item(nb, zm, "decode", S["eval"], "evaluation images"), Item(nb, zm, "ci", S["eval"], "clean CI")]
    out += [Item(nb, NB09_B, "decode", S["train"] + S["cifar_eval"], "training and test images"),
            Item(nb, NB09_B, "forward", S["train"], "features of the head's training images"),
            Item(nb, NB09_B, "ci", S["train"], "prototypes"),
            Item(nb, NB09_B, "ci", S["cifar_eval"], "clean CI")]
    for part, model in (("a", zm), ("b", NB09_B)):
        for a in config.OWN_MODEL_ATTACKS:
            if correct[part]:
                out += [Item(nb, model, "gradient", correct[part] * steps(a), f"attack {a}, part {part.upper()}"),
                        Item(nb, model, "ci", correct[part], f"CI of {a}, part {part.upper()}")]
    return out


def bounds(work: list[Item], units: dict[tuple[str, str], float], fixed: dict[str, float],
           loads: dict[str, float]) -> dict[str, float]:
    """Seconds per notebook: its passes at `units[(model, kind)]` seconds each, plus ``fixed["kernel"]`` and
    one `loads[model]` per model it uses."""
    total: dict[str, float] = defaultdict(float)
    models: dict[str, set] = defaultdict(set)
    for it in work:
        total[it.notebook] += it.count * units[(it.model, it.kind)]
        models[it.notebook].add(it.model)
    return {nb: total[nb] + fixed["kernel"] + sum(loads[m] for m in models[nb]) for nb in sorted(total)}


def by_kind(work: list[Item]) -> dict[tuple[str, str, str], int]:
    """Pass counts summed per (notebook, model, kind)."""
    out: dict[tuple[str, str, str], int] = defaultdict(int)
    for it in work:
        out[(it.notebook, it.model, it.kind)] += it.count
    return dict(out)


__all__ = ["KINDS", "FIXED", "NB09_B", "NB09_MODEL", "Item", "items", "bounds", "by_kind", "steps"]
