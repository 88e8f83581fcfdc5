"""The shared experiment of notebooks 02 onwards: clean samples, prototypes, attacks and CI vectors.

One `Setup` per dataset names the model, the evaluation and prototype pools and the attack budgets
(`config.ATTACK_EPS`); the profile sets the scale. Every later notebook reads the same objects:

    >>> from causadv_lib import experiment
    >>> for s in experiment.setups("smoke"):                  # ImageNet, CIFAR-10
    ...     exp = experiment.run(s)                          # everything, from the caches when filled
    ...     exp.clean.ci.ci[exp.clean.correct]               # CI vectors of the clean set
    ...     adv = exp.adversarial[experiment.AttackKey("pgd", False, 8 / 255)]
    ...     adv.ci.ci[adv.success]                           # CI vectors of the successful examples

What the sets are:

* **clean**: the committed evaluation list of the model (`samples.for_profile`); its images are
  correctly classified by construction, which is checked again (`CleanSet.correct`, from the CI pass).
  A model without a committed list (e.g. ``vgg16_imagenet``) uses the default model's list of the same
  pool, and `correct` then drops the images it gets wrong.
* **attacks** run on the correctly classified clean images only, as float pixels in [0, 255] at the
  model's input size (`attacks.generate`, seeded with `config.SEED`); adversarial inputs stay float.
* **adversarial**: the successful examples (`AdversarialSet.success`: untargeted, the prediction left
  the true class; targeted, it reached the target) whose CI pass predicts the same class as the attack's
  own prediction (it always does here; a mismatch would be counted in ``n_prediction_mismatch``).
  CI vectors are computed for every attacked image, so "all attempts" stays available.
* **prototypes**: `prototypes.for_pool` over the prototype pool with the profile's
  ``prototype_pool_limit``, the same call as notebook 01 (one cache entry).

Caching: attacks, CI vectors and prototypes are stored on disk by `attacks`, `ci` and `prototypes`
(`causadv_lib.cache`, keyed by everything they depend on); this module adds an in-process memo, so a
notebook that asks twice computes once. The first notebook to run (02) fills the disk cache; later
notebooks read it. Each computation that really ran is timed in `TIMINGS` (`timing_rows`).

The strategies and ROC rows of the paper's tables are computed here too (`strategy_results`,
`paper_rows`, `detection_rows`), so that every notebook counts the same way; plots live in `plots`.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import config, runner

#: display names
ATTACK_LABELS = {"fgsm": "FGSM", "bim": "BIM", "pgd": "PGD"}
DATASET_LABELS = {"imagenet": "ImageNet", "cifar10": "CIFAR-10"}
#: dataset -> (evaluation pool, prototype pool)
POOLS = {"imagenet": ("imagenet_eval", "imagenet_prototypes"), "cifar10": ("cifar10_eval", "cifar10_prototypes")}


def eps_label(eps: float) -> str:
    """``8/255`` for a budget that is a whole number of grey levels, else the fraction (``0.0123``)."""
    levels = float(eps) * 255.0
    if abs(levels - round(levels)) < 1e-6:
        return f"{int(round(levels))}/255"
    return f"{float(eps):.4g}"


@dataclass(frozen=True, order=True)
class AttackKey:
    """One attack configuration: attack (``fgsm``, ``pgd``, ``bim``), targeted or not, eps (a fraction)."""

    attack: str
    targeted: bool
    eps: float

    def __post_init__(self):
        if self.attack not in ATTACK_LABELS:
            raise ValueError(f"unknown attack {self.attack!r}; expected one of {sorted(ATTACK_LABELS)}")
        object.__setattr__(self, "targeted", bool(self.targeted))
        object.__setattr__(self, "eps", float(self.eps))

    @property
    def variant(self) -> str:
        return "targeted" if self.targeted else "untargeted"

    @property
    def label(self) -> str:
        """``FGSM targeted``: the attack as the tables name it (without the budget)."""
        return f"{ATTACK_LABELS[self.attack]} {self.variant}"

    @property
    def eps_label(self) -> str:
        return eps_label(self.eps)

    @property
    def full_label(self) -> str:
        """``FGSM targeted, eps 8/255``."""
        return f"{self.label}, eps {self.eps_label}"


@dataclass(frozen=True)
class Setup:
    """What one dataset's experiment runs on, at one profile's scale."""

    dataset: str                 # "imagenet" | "cifar10"
    model: str                   # zoo model name
    profile: str                 # config profile name
    eval_pool: str
    prototype_pool: str
    eps: tuple[float, ...]       # attack budgets, the paper's first
    sample_model: str            # whose committed evaluation list is used (= model when it has one)

    @property
    def paper_eps(self) -> float:
        return self.eps[0]

    @property
    def label(self) -> str:
        return f"{DATASET_LABELS[self.dataset]} ({self.model})"

    def keys(self, eps: float | None = None) -> tuple[AttackKey, ...]:
        """The attack keys in the paper's table order (targeted FGSM, PGD, BIM; then untargeted), every
        budget in turn (or only `eps`)."""
        budgets = self.eps if eps is None else (float(eps),)
        return tuple(AttackKey(a, t, e) for e in budgets for t in (True, False) for a in config.ATTACKS)


def setup_for(dataset: str, profile: str, model: str | None = None) -> Setup:
    """The `Setup` of `dataset` with `model` (default: `config.EXPERIMENT_MODELS`)."""
    from . import samples

    if dataset not in POOLS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(POOLS)}")
    config.get_profile(profile)
    default = config.EXPERIMENT_MODELS[dataset]
    model = default if model is None else str(model)
    eval_pool, proto_pool = POOLS[dataset]
    sample_model = model if (model, eval_pool) in samples.PAPER_LISTS else default
    return Setup(dataset, model, profile, eval_pool, proto_pool, tuple(config.ATTACK_EPS[dataset]), sample_model)


def setups(profile: str, imagenet_model: str | None = None, cifar_model: str | None = None) -> tuple[Setup, ...]:
    """The ImageNet and CIFAR-10 setups of `profile` (models default to `config.EXPERIMENT_MODELS`)."""
    return (setup_for("imagenet", profile, imagenet_model), setup_for("cifar10", profile, cifar_model))


# ------------------------------------------------------------------------------------------ timing
#: one row per computation that ran in this process (memo hits are not recorded)
TIMINGS: list[dict] = []


class _timed:
    def __init__(self, setup: Setup, stage: str, item: str):
        self.row = {"dataset": setup.dataset, "model": setup.model, "stage": stage, "item": item}

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            TIMINGS.append(self.row | {"seconds": time.perf_counter() - self.t0})


def timing_rows(by: tuple[str, ...] = ("dataset", "model", "stage")) -> list[dict]:
    """`TIMINGS` summed over the fields `by` (seconds rounded to 0.1; ``items`` counts the computations)."""
    out: dict[tuple, dict] = {}
    for r in TIMINGS:
        k = tuple(r[b] for b in by)
        row = out.setdefault(k, {b: r[b] for b in by} | {"items": 0, "seconds": 0.0})
        row["items"] += 1
        row["seconds"] += r["seconds"]
    return [r | {"seconds": round(r["seconds"], 1)} for r in out.values()]


# ------------------------------------------------------------------------------------------- sets
@dataclass(frozen=True, eq=False)
class CleanSet:
    """The evaluation sample of a setup: every listed image, its CI vector and whether it is correct."""

    setup: Setup
    ids: tuple[str, ...]
    labels: np.ndarray          # (N,) int64 true classes
    pixels: np.ndarray          # (N, H, W, 3) float32 pixel values in [0, 255] at the model's input size
    ci: object                  # ci.CIResult of all N images (predicted class, its probability, CI vectors)

    @property
    def correct(self) -> np.ndarray:
        """(N,) bool: the model predicts the true class (the clean set of every comparison)."""
        return self.ci.predicted == self.labels

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def n_correct(self) -> int:
        return int(self.correct.sum())


@dataclass(frozen=True, eq=False)
class AdversarialSet:
    """One attack on the correctly classified clean images: its result and the CI of every output."""

    setup: Setup
    key: AttackKey
    result: object              # attacks.AttackResult over the attacked images, in clean order
    ci: object                  # ci.CIResult of result.adversarial
    source: np.ndarray          # (M,) index into the CleanSet of each attacked image

    @property
    def success(self) -> np.ndarray:
        """(M,) bool: a successful adversarial example whose CI pass predicts the attack's class."""
        return np.asarray(self.result.success, bool) & (self.ci.predicted == self.result.predicted)

    @property
    def n_attacked(self) -> int:
        return len(self.source)

    @property
    def n_success(self) -> int:
        return int(self.success.sum())

    @property
    def success_rate(self) -> float:
        return self.n_success / self.n_attacked if self.n_attacked else math.nan

    @property
    def n_prediction_mismatch(self) -> int:
        """Attacked images whose CI pass and attack disagree on the adversarial prediction (expected 0)."""
        return int((self.ci.predicted != self.result.predicted).sum())

    def max_perturbation(self, clean: CleanSet) -> float:
        """Largest |adversarial - clean source| over all pixels, in grey levels (<= 255 * eps)."""
        if not self.n_attacked:
            return 0.0
        return float(np.abs(self.result.adversarial - clean.pixels[self.source]).max())


@dataclass(eq=False)
class Experiment:
    """Everything of one setup: clean set, prototypes, and the adversarial set of each attack key."""

    setup: Setup
    clean: CleanSet
    prototypes: object          # prototypes.Prototypes
    adversarial: dict = field(default_factory=dict)   # AttackKey -> AdversarialSet


def _zoo(setup: Setup):
    from . import zoo

    return zoo.get(setup.model)


def _geometry(zm, images) -> np.ndarray:
    from . import preprocess

    if zm.geometry is not None:
        return zm.geometry(images)
    if zm.dataset == "cifar10":
        return preprocess.geometry_cifar(images, zm.name)
    return preprocess.geometry_imagenet(images, zm.name)


def _ci_of(zm, pixels: np.ndarray, progress):
    from . import ci

    return ci.counterfactual_information(zm.model, zm.normalize(pixels), zm.ci_layer, cache=True,
                                         progress=progress)


@functools.cache
def _clean(setup: Setup) -> CleanSet:
    from . import data, samples

    zm = _zoo(setup)
    sample = samples.for_profile(setup.sample_model, setup.eval_pool, setup.profile)
    pool = data.pool(setup.eval_pool)
    idx = pool.index_of(sample.ids)
    with _timed(setup, "load", "clean images"):
        pixels = _geometry(zm, pool.load(idx)).astype(np.float32)
    with _timed(setup, "ci", "clean"):
        res = _ci_of(zm, pixels, None)
    return CleanSet(setup, tuple(sample.ids), pool.labels[idx].astype(np.int64), pixels, res)


def clean(setup: Setup) -> CleanSet:
    """The clean evaluation set of `setup` (memoised in the process; CI vectors cached on disk)."""
    return _clean(setup)


@functools.cache
def prototypes(setup: Setup):
    """The prototypes of `setup` (`prototypes.for_pool` with the profile's pool limit, cached)."""
    from . import data
    from . import prototypes as _protos

    prof = config.get_profile(setup.profile)
    with _timed(setup, "prototypes", setup.prototype_pool):
        return _protos.for_pool(_zoo(setup), data.pool(setup.prototype_pool), limit=prof.prototype_pool_limit,
                                cache=True)


@functools.cache
def _adversarial(setup: Setup, key: AttackKey, progress) -> AdversarialSet:
    from . import attacks

    zm = _zoo(setup)
    cs = _clean(setup)
    source = np.flatnonzero(cs.correct)
    with _timed(setup, "attack", key.full_label):
        res = attacks.generate(zm, cs.pixels[source], labels=cs.labels[source], attack=key.attack, eps=key.eps,
                               targeted=key.targeted, seed=config.SEED, cache=True, progress=progress)
    with _timed(setup, "ci", key.full_label):
        ci_res = _ci_of(zm, res.adversarial, progress)
    return AdversarialSet(setup, key, res, ci_res, source)


def adversarial(setup: Setup, key: AttackKey, progress: bool | None = None) -> AdversarialSet:
    """The attack `key` on the correctly classified clean images of `setup`, with CI (memoised, cached)."""
    if key.eps not in setup.eps:
        raise ValueError(f"{setup.label}: eps {key.eps_label} is not one of the setup's budgets "
                         f"{[eps_label(e) for e in setup.eps]} (config.ATTACK_EPS)")
    return _adversarial(setup, key, None if progress is None else bool(progress))


def run(setup: Setup, progress: bool = True) -> Experiment:
    """Clean set, prototypes and every attack of `setup` (progress bar over the attacks)."""
    keys = setup.keys()
    if progress:
        from tqdm.auto import tqdm
        keys = tqdm(keys, desc=f"attacks {setup.label}", unit="attack")
    exp = Experiment(setup, clean(setup), prototypes(setup))
    for key in keys:
        exp.adversarial[key] = adversarial(setup, key)
    return exp


def clear_memo() -> None:
    """Forget the in-process memo (the disk caches stay)."""
    _clean.cache_clear()
    prototypes.cache_clear()
    _adversarial.cache_clear()
    _logits.cache_clear()
    _ci_under.cache_clear()
    _prototypes_under.cache_clear()
    TIMINGS.clear()


# ------------------------------------------------------------------------------ strategies, tables
CLEAN = "Clean"


def success_rows(exp: Experiment) -> list[dict]:
    """One row per attack: attacked, successful, success rate, largest perturbation (grey levels)."""
    rows = []
    for key, adv in exp.adversarial.items():
        rows.append({"dataset": DATASET_LABELS[exp.setup.dataset], "model": exp.setup.model, "eps": key.eps_label,
                     "attack": key.label, "attacked": adv.n_attacked, "successful": adv.n_success,
                     "success rate": round(adv.success_rate, 4),
                     "max |delta| (grey levels)": round(adv.max_perturbation(exp.clean), 3),
                     "CI/attack prediction mismatch": adv.n_prediction_mismatch})
    return rows


def _groups(exp: Experiment, eps: float | None = None):
    """(name, key or None, ci (n, K), predicted (n,)) of the clean set and each attack's successes."""
    cs = exp.clean
    ok = cs.correct
    yield CLEAN, None, cs.ci.ci[ok], cs.ci.predicted[ok]
    for key in exp.setup.keys(eps):
        if key in exp.adversarial:
            adv = exp.adversarial[key]
            s = adv.success
            yield key.label, key, adv.ci.ci[s], adv.ci.predicted[s]


def strategy_results(exp: Experiment, eps: float | None = None) -> dict:
    """{group: {variant name: StrategyResult}} for the clean set (``"Clean"``) and each `AttackKey`.

    Variants: `strategies.evaluate_all` in the dataset's S2 mode (ImageNet top-5, CIFAR-10 rho >= 0.5),
    plus S2 in the other mode, so both Pearson tables exist for both datasets.
    """
    from . import strategies

    proto = exp.prototypes.ci
    other = {"mode": "threshold"} if exp.setup.dataset == "imagenet" else {"mode": "topk"}
    out = {}
    for name, key, ci_, pred in _groups(exp, eps):
        res = {r.name: r for r in strategies.evaluate_all(ci_, pred, proto, dataset=exp.setup.dataset)}
        extra = strategies.s2_pearson(ci_, pred, proto, **other)
        res[extra.name] = extra
        out[CLEAN if key is None else key] = res
    return out


def paper_rows(exp: Experiment, variants: list[str], eps: float | None = None, paper: dict | None = None) -> list[dict]:
    """Rows in the paper's table layout: Clean, then each attack; per variant ``count/N`` (`paper_count`).

    `paper` (optional): {row name ("Clean", "FGSM targeted", ...): [paper count per variant]} printed beside
    ours as ``paper <variant>``; the paper's N goes in the column ``paper N``.
    """
    from . import strategies

    eps = exp.setup.paper_eps if eps is None else eps
    rows = []
    for group, res in strategy_results(exp, eps).items():
        name = CLEAN if group == CLEAN else group.label
        first = res[variants[0]]
        row = {"dataset": DATASET_LABELS[exp.setup.dataset], "eps": eps_label(eps), "samples": name, "N": first.n}
        for v in variants:
            row[v] = strategies.paper_fraction(res[v])
            if res[v].n_uncounted:
                row[v] += f" ({res[v].n_uncounted} uncounted)"
        if paper is not None:
            pv = paper.get("_rows", {}).get(name)
            row["paper N"] = paper.get("n") if pv is not None else None
            for v, p in zip(variants, pv or [None] * len(variants)):
                row[f"paper {v}"] = p
        rows.append(row)
    return rows


#: One ROC score per distinct strategy score (the S1 and S3 variants differ only in their threshold), and one
#: score that is not in the paper: the largest CI value of the vector ("max CI"; low = suspicious), which shows
#: whether a prediction is saturated (removing any one filter then barely moves p_c).
MAX_CI = "max CI"
ROC_VARIANTS = ("S1(n=0)", "S2(top-5)", "S2(rho>=0.5)", "S3(n=5)", "S4(3/10)", "S4(5/20)", "S4(10/30)", MAX_CI)
ROC_NAMES = {"S1(n=0)": "S1: -#causal filters", "S2(top-5)": "S2: rank of own class",
             "S2(rho>=0.5)": "S2: -rho with prototype", "S3(n=5)": "S3: -#zero filters",
             "S4(3/10)": "S4 3/10: -#common", "S4(5/20)": "S4 5/20: -#common", "S4(10/30)": "S4 10/30: -#common",
             MAX_CI: "not in the paper: -max CI"}


def scores(exp: Experiment, eps: float | None = None) -> dict:
    """{(variant, group): counted scores (1-D float64)} for the ROC variants (uncounted samples dropped)."""
    results = strategy_results(exp, eps)
    out = {}
    for _, key, ci_, _pred in _groups(exp, eps):
        group = CLEAN if key is None else key
        for v in ROC_VARIANTS:
            if v == MAX_CI:
                out[(v, group)] = -ci_.max(axis=1).astype(np.float64) if len(ci_) else np.zeros(0)
            else:
                r = results[group][v]
                out[(v, group)] = r.score[r.counted]
    return out


def detection_rows(exp: Experiment) -> list[dict]:
    """ROC rows: every ROC variant x attack x budget: AUC and TPR at 5% FPR (threshold on clean only)."""
    from . import metrics

    rows = []
    for eps in exp.setup.eps:
        sc = scores(exp, eps)
        for v in ROC_VARIANTS:
            for key in exp.setup.keys(eps):
                if key not in exp.adversarial:
                    continue
                d = metrics.detection_row(sc[(v, CLEAN)], sc[(v, key)], fpr=0.05, nan_policy="omit")
                rows.append({"dataset": DATASET_LABELS[exp.setup.dataset], "eps": key.eps_label, "strategy": v,
                             "score": ROC_NAMES[v], "attack": key.label, "n_clean": d["n_clean"], "n_adv": d["n_adv"],
                             "auc": _round(d["auc"]), "tpr@5%fpr": _round(d["tpr_at_5fpr"]),
                             "realised fpr": _round(d["realised_fpr"])})
    return rows


def roc_summary(roc_rows: list[dict], setup: Setup) -> tuple[list[dict], list[str]]:
    """The ROC rows pivoted for reading: one row per (dataset, eps, score), one "AUC / TPR" column per
    attack of `setup` in the paper's order; returns (rows, columns)."""
    attack_labels = [k.label for k in setup.keys(setup.paper_eps)]
    compact: dict = {}
    for r in roc_rows:
        row = compact.setdefault((r["dataset"], r["eps"], r["strategy"]),
                                 {"dataset": r["dataset"], "eps": r["eps"], "score": r["score"]})
        row[r["attack"]] = "n/a" if r["auc"] is None else f"{r['auc']:.2f} / {r['tpr@5%fpr']:.2f}"
    return list(compact.values()), ["dataset", "eps", "score", *attack_labels]


def _round(x, nd: int = 3):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


# ------------------------------------------------------------------------------------- the paper
#: The paper's counts (section 4.2), transcribed from ``../shared/paper/paper-numbers.json`` (a test
#: checks the two agree). Counts are of samples that pass (look clean), as `strategies.paper_count`.
PAPER = {
    "table1": {"dataset": "imagenet", "eps": 8 / 255, "n": 300, "variants": ["S2(top-5)"],
               "_rows": {"Clean": [169], "FGSM targeted": [0], "PGD targeted": [145], "BIM targeted": [0],
                         "FGSM untargeted": [159], "PGD untargeted": [183], "BIM untargeted": [0]}},
    "table2": {"dataset": "cifar10", "eps": 24 / 255, "n": 100, "variants": ["S2(rho>=0.5)"],
               "_rows": {"Clean": [65], "FGSM targeted": [11], "PGD targeted": [8], "BIM targeted": [3],
                         "FGSM untargeted": [25], "PGD untargeted": [27], "BIM untargeted": [20]}},
    "table3": {"dataset": "cifar10", "eps": 24 / 255, "n": 100, "variants": ["S3(n=5)", "S3(n=10)"],
               "_rows": {"Clean": [65, 36], "FGSM targeted": [6, 1], "PGD targeted": [13, 7],
                         "BIM targeted": [12, 6], "FGSM untargeted": [6, 3], "PGD untargeted": [1, 0],
                         "BIM untargeted": [1, 0]}},
    # Figure 3 gives one adversarial number per n/m for all attacks ("all the attacks yield similar values")
    "figure3": {"dataset": "imagenet", "eps": 8 / 255, "n": 300, "variants": ["S4(3/10)", "S4(5/20)", "S4(10/30)"],
                "clean": [164, 182, 128], "adversarial": [68, 78, 12]},
}


PAPER["figure3"]["_rows"] = {CLEAN: PAPER["figure3"]["clean"]} | {
    f"{ATTACK_LABELS[a]} {v}": PAPER["figure3"]["adversarial"] for v in ("targeted", "untargeted") for a in ATTACK_LABELS}


def paper_for(table: str, setup: Setup, eps: float) -> dict | None:
    """The paper's numbers of `table` when they apply to (setup's dataset, eps), else None."""
    p = PAPER[table]
    return p if p["dataset"] == setup.dataset and abs(p["eps"] - eps) < 1e-12 else None


# ------------------------------------------------------------------ logits, other CI definitions
@functools.cache
def _logits(setup: Setup, key: AttackKey | None) -> np.ndarray:
    zm = _zoo(setup)
    pixels = _clean(setup).pixels if key is None else adversarial(setup, key).result.adversarial
    with _timed(setup, "logits", "clean" if key is None else key.full_label):
        _, z = runner.with_logits(zm.model, zm.normalize(pixels))
    if z is None:
        raise ValueError(f"{setup.model}: the model's logits cannot be read (no Dense before its softmax)")
    z.setflags(write=False)
    return z


def logits(exp: Experiment, key: AttackKey | None = None) -> np.ndarray:
    """(N, C) float32 logits of every clean image (`key` None) or of every attacked image of `key`, in the
    order of its CI result (one forward pass, memoised in the process)."""
    if key is not None and key not in exp.adversarial:
        raise KeyError(f"{exp.setup.label}: no attack {key.full_label} in this experiment")
    return _logits(exp.setup, key)


@functools.cache
def _ci_under(setup: Setup, key: AttackKey | None, definition: str):
    from . import ci

    zm = _zoo(setup)
    pixels = _clean(setup).pixels if key is None else adversarial(setup, key).result.adversarial
    with _timed(setup, f"ci ({definition})", "clean" if key is None else key.full_label):
        return ci.counterfactual_information(zm.model, zm.normalize(pixels), zm.ci_layer, definition=definition,
                                             cache=True)


@functools.cache
def _prototypes_under(setup: Setup, definition: str):
    from . import data
    from . import prototypes as _protos

    prof = config.get_profile(setup.profile)
    with _timed(setup, f"prototypes ({definition})", setup.prototype_pool):
        return _protos.for_pool(_zoo(setup), data.pool(setup.prototype_pool), limit=prof.prototype_pool_limit,
                                definition=definition, cache=True)


def with_definition(exp: Experiment, definition: str) -> Experiment:
    """The same experiment (images, attacks, clean and success masks) with every CI vector and the
    prototypes under another CI definition (`ci.DEFINITIONS`; cached on disk like the paper's).

    The prediction of the CI pass does not depend on the definition; a sample whose prediction would
    differ raises, so every definition counts exactly the same samples."""
    import dataclasses

    from . import ci

    if definition not in ci.DEFINITIONS:
        raise ValueError(f"unknown definition {definition!r}; expected one of {ci.DEFINITIONS}")
    if definition == exp.clean.ci.definition:
        return exp
    s = exp.setup

    def same(res, old, what):
        if not np.array_equal(res.predicted, old.predicted):
            raise RuntimeError(f"{s.label}, {what}: the CI pass under {definition!r} predicts other classes")
        return res

    clean_ = dataclasses.replace(exp.clean, ci=same(_ci_under(s, None, definition), exp.clean.ci, "clean"))
    out = Experiment(s, clean_, _prototypes_under(s, definition))
    for key, adv in exp.adversarial.items():
        out.adversarial[key] = dataclasses.replace(adv, ci=same(_ci_under(s, key, definition), adv.ci, key.full_label))
    return out


# ------------------------------------------------------------------------- the pipeline on any model
@dataclass(frozen=True)
class ModelRun:
    """The whole pipeline on one ZooModel (notebook 09): the clean CI result, which clean images the model
    gets right, and per attack the `AttackResult`, the CI result of its adversarial inputs and the mask of
    the successful examples whose CI pass agrees with the attack's prediction."""

    model: str
    dataset: str
    clean: object                                   # ci.CIResult of every image
    correct: np.ndarray
    adversarial: dict                               # attack -> (AttackResult, ci.CIResult, ok mask)
    rows: list                                      # the strategies' paper counts and ROC-AUCs per attack


def run_on_model(zm, pixels: np.ndarray, labels, protos, dataset: str, *, attacks: tuple[str, ...] = ("fgsm", "pgd", "bim"),
                 eps: float = 8 / 255) -> ModelRun:
    """CI of the clean images, each untargeted attack at `eps` on the correctly classified ones, the CI of the
    adversarial inputs, the four strategies against `protos` and their ROC-AUC (clean vs successful).

    `pixels`: uint8 or float pixels at the model's input size; everything is cached on disk like elsewhere.
    """
    from . import attacks as _attacks
    from . import ci, metrics, strategies

    labels = np.asarray(labels, np.int64)
    clean = ci.counterfactual_information(zm.model, zm.normalize(np.asarray(pixels, np.float32)), zm.ci_layer,
                                          cache=True)
    correct = clean.predicted == labels
    adversarial = {}
    for attack in attacks:
        adv = _attacks.generate(zm, pixels[correct], labels=labels[correct], attack=attack, eps=eps, cache=True)
        res = ci.counterfactual_information(zm.model, zm.normalize(adv.adversarial), zm.ci_layer, cache=True)
        adversarial[attack] = (adv, res, adv.success & (res.predicted == adv.predicted))
    groups = {"clean": (clean.ci[correct], clean.predicted[correct])}
    groups |= {a: (r.ci[ok], r.predicted[ok]) for a, (_, r, ok) in adversarial.items()}
    results = {g: strategies.evaluate_all(v, p, protos.ci, dataset=dataset) for g, (v, p) in groups.items()}
    rows = []
    for i, variant in enumerate(results["clean"]):
        row = {"strategy": variant.name, "clean": _count(variant)}
        for a in attacks:
            r = results[a][i]
            row[a.upper()] = _count(r)
            auc = metrics.roc_auc(variant.score[variant.counted], r.score[r.counted])
            row[f"{a.upper()} AUC"] = None if np.isnan(auc) else round(float(auc), 3)
        rows.append(row)
    return ModelRun(zm.name, dataset, clean, correct, adversarial, rows)


def _count(result) -> str:
    """The paper's count of a strategy result; samples whose class has no prototype are not counted (S2, S4)."""
    from . import strategies

    return strategies.paper_fraction(result) + (f" ({result.n_uncounted} uncounted)" if result.n_uncounted else "")


def model_run_summary(zm, run: ModelRun, protos, part: str, accuracy_note: str) -> dict:
    """One table row describing a `ModelRun`: model, CI layer and path, images, prototypes, attack success."""
    row = {"part": part, "model": zm.name, "outputs": getattr(zm, "outputs", "probabilities"),
           "CI layer": zm.ci_layer, "filters": int(run.clean.ci.shape[1]), "CI path": run.clean.path,
           "images": len(run.correct), "correct": int(run.correct.sum()), "accuracy": accuracy_note,
           "prototypes": f"{len(protos.classes)} of {protos.num_classes} classes"}
    for a, (_, _, ok) in run.adversarial.items():
        row[f"{a.upper()} success"] = f"{int(ok.sum())}/{len(ok)}"
    return row
