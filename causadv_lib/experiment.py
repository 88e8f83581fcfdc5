"""The shared experiment of notebooks 02 onwards: clean samples, prototypes, attacks and CI vectors.

One `Setup` per dataset names the model, the evaluation and prototype pools and the attack budgets
(`config.ATTACK_EPS`); the profile sets the scale. Every later notebook reads the same objects:

    >>> from causadv_lib import experiment
    >>> for s in experiment.setups("smoke"):                  # ImageNet, CIFAR-10
    ...     exp = experiment.run(s)                          # everything, from the caches when filled
    ...     for g in exp.groups(8 / 255):                    # the clean set, then each attack's successes
    ...         g.name, g.ci, g.predicted, g.pixels, g.source

What the sets are:

* **clean**: the committed evaluation list of the model (`samples.for_profile`); a model without one (a zoo
  model such as ``vgg16_imagenet``, a registered model, a model file) gets its own, chosen by the same rule
  (`samples.derived`: seeded, correctly classified, spread over classes; cached). Its images are correctly
  classified by construction, which is checked again (`CleanSet.correct`, from the CI pass).
* **attacks** run on the correctly classified clean images only, as float pixels in [0, 255] at the
  model's input size (`attacks.generate`, seeded with `config.SEED`); adversarial inputs stay float.
* **adversarial**: the successful examples (`AdversarialSet.success`: untargeted, the prediction left
  the true class; targeted, it reached the target) whose CI pass predicts the same class as the attack's
  own prediction. CI vectors are computed for every attacked image, so "all attempts" stays available.
* **groups** (`Experiment.groups`): the one definition of "the clean set plus each attack's successful
  examples at eps" that every table, score, purifier and heatmap uses (`Group`).
* **prototypes**: `prototypes.for_pool` over the prototype pool with the profile's
  ``prototype_pool_limit``, the same call as notebook 01 (one cache entry).

Caching: attacks, CI vectors and prototypes are stored on disk by `attacks`, `ci` and `prototypes`
(`causadv_lib.cache`, keyed by everything they depend on); this module adds an in-process memo, so a
notebook that asks twice computes once. The first notebook to run (02) fills the disk cache; later
notebooks read it. Each computation that really ran is timed in `TIMINGS` (`timing_rows`).

Sharded runs (`config.scheduler()`: ``CAUSADV_SCHEDULER=local:N`` or ``tcp://HOST:PORT``; `causadv_lib.shards`).
The clean set's CI pass, the prototypes and every attack with its CI pass run on Dask as shards of
`config.SHARD_IMAGES` images, each one task (setup, attack key or the clean set, image indices) that loads its
images from the data directory, computes, and caches its result under its own key on the worker (so an
interrupted run computes only the shards not yet stored); this process merges the results in image order.
The attacks place each shard in its run (`attacks.generate`'s ``part``: targets, PGD starts and gradient layout
of the whole run) and CI vectors never depend on batching, so the merged sets are the in-process run's bit for
bit, on any number of workers. A model must be one a worker can load: a zoo name or a model file (not one
registered in this process). Unset, everything runs in this process as before.

The rows of the paper's tables are computed from these sets in `causadv_lib.analysis`.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import attacks, checks, ci, config, data, preprocess, runner, samples, shards, spread, zoo
from . import cache as ccache
from . import prototypes as protos
from .vocab import ATTACKS, CLEAN, DATASET_LABELS, POOLS, AttackKey, eps_label

__all__ = ["Setup", "setup_for", "setups", "CleanSet", "AdversarialSet", "Group", "Experiment", "clean",
           "FitSet", "fit_set", "group_of", "attacked", "first", "prototype_set", "adversarial", "write_sample_list", "paper_command", "run", "clear_memo", "logits", "with_definition", "ModelRun",
           "run_on_model", "TIMINGS", "timing_rows"]


@dataclass(frozen=True)
class Setup:
    """What one dataset's experiment runs on, at one profile's scale."""

    dataset: str                 # "imagenet" | "cifar10"
    model: str                   # the model's name: a zoo or registered name, or a model file's name
    profile: str                 # config profile name
    eval_pool: str
    prototype_pool: str
    eps: tuple[float, ...]       # attack budgets, the paper's first
    sample_model: str            # whose committed evaluation list is used, or (no committed list) `model`
    path: str | None = None      # a .keras or .tflite model file (then `model` is its name)
    normalize: str | None = None  # that file's normalisation (a name of `zoo.NORMALIZATIONS`)

    @property
    def paper_eps(self) -> float:
        return self.eps[0]

    @property
    def label(self) -> str:
        return f"{DATASET_LABELS[self.dataset]} ({self.model})"

    @property
    def committed_samples(self) -> bool:
        """Whether the evaluation sample is a committed list (else it is derived for the model: `samples.derived`)."""
        return (self.sample_model, self.eval_pool) in samples.PAPER_LISTS

    def zoo_model(self):
        """The setup's ZooModel (built once per process)."""
        if self.path is not None:
            return zoo.resolve(self.path, dataset=self.dataset, normalize=self.normalize)
        return zoo.get(self.model)

    def keys(self, eps: float | None = None) -> tuple[AttackKey, ...]:
        """The attack keys in the paper's table order (targeted FGSM, PGD, BIM; then untargeted), every
        budget in turn (or only `eps`)."""
        budgets = self.eps if eps is None else (float(eps),)
        return tuple(AttackKey(a, t, e) for e in budgets for t in (True, False) for a in ATTACKS)


def _named_model(model, dataset: str, normalize: str | None) -> tuple[str, str | None]:
    """(name, file path or None) of a model given as a zoo or registered name, a ZooModel, or a model file."""
    if isinstance(model, zoo.ZooModel):
        if model.name in zoo.names() and zoo.get(model.name) is model:
            return model.name, None
        if model.name not in zoo.registered() or zoo.get(model.name) is not model:
            zoo.register(model.name, model)     # refuses a zoo name, or a name taken by another model
        return model.name, None
    if isinstance(model, str) and (model in zoo.names() or model in zoo.registered()):
        return model, None
    zm = zoo.resolve(model, dataset=dataset, normalize=normalize)   # a model file, or an error listing the ways
    return zm.name, str(Path(model).resolve())


def setup_for(dataset: str, profile: str, model=None, *, normalize: str | None = None) -> Setup:
    """The `Setup` of `dataset` with `model` (default: `config.EXPERIMENT_MODELS`): a zoo name, a registered
    name (`zoo.register`), a ZooModel (registered under its name), or a path to a .keras or .tflite file
    (with `normalize`, see `zoo.resolve`)."""
    if dataset not in POOLS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(POOLS)}")
    config.get_profile(profile)
    default = config.EXPERIMENT_MODELS[dataset]
    name, path = _named_model(default if model is None else model, dataset, normalize)
    eval_pool, proto_pool = POOLS[dataset]
    setup = Setup(dataset, name, profile, eval_pool, proto_pool, tuple(config.ATTACK_EPS[dataset]), name, path,
                  normalize if path is not None else None)
    if name not in zoo.names() and setup.zoo_model().dataset not in (None, dataset):
        raise ValueError(f"model {name}: it classifies {setup.zoo_model().dataset} images, not {dataset}")
    return setup


def setups(profile: str, imagenet_model=None, cifar_model=None, *, model=None, dataset: str | None = None,
           normalize: str | None = None) -> tuple[Setup, ...]:
    """The setups a notebook runs: ImageNet and CIFAR-10 (models default to `config.EXPERIMENT_MODELS`), or,
    given `dataset`, that dataset alone, with `model` (any model `setup_for` takes) or its default."""
    if dataset is None:
        if model is not None:
            raise ValueError(f"model {model!r}: say which dataset it classifies (dataset='cifar10' or 'imagenet')")
        return (setup_for("imagenet", profile, imagenet_model), setup_for("cifar10", profile, cifar_model))
    if model is None:
        model = {"imagenet": imagenet_model, "cifar10": cifar_model}.get(dataset)
    return (setup_for(dataset, profile, model, normalize=normalize),)


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
    ci_result: ci.CIResult      # CI of all N images (predicted class, its probability, CI vectors)
    pixels_digest: str = ""     # `cache.key(pixels)` ("": not known), their name in other keys

    @property
    def correct(self) -> np.ndarray:
        """(N,) bool: the model predicts the true class (the clean set of every comparison)."""
        return self.ci_result.predicted == self.labels

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
    attack_result: attacks.AttackResult   # over the attacked images, in clean order
    ci_result: ci.CIResult                # CI of attack_result.adversarial
    source: np.ndarray                    # (M,) index into the CleanSet of each attacked image

    @property
    def success(self) -> np.ndarray:
        """(M,) bool: a successful adversarial example whose CI pass predicts the attack's class."""
        return np.asarray(self.attack_result.success, bool) & (self.ci_result.predicted == self.attack_result.predicted)

    @property
    def n_attacked(self) -> int:
        return len(self.source)

    @property
    def n_success(self) -> int:
        return int(self.success.sum())

    @property
    def success_rate(self) -> float:
        return self.n_success / self.n_attacked if self.n_attacked else math.nan

    def max_perturbation(self, clean: CleanSet) -> float:
        """Largest |adversarial - clean source| over all pixels, in grey levels (<= 255 * eps)."""
        if not self.n_attacked:
            return 0.0
        return float(np.abs(self.attack_result.adversarial - clean.pixels[self.source]).max())


@dataclass(frozen=True, eq=False)
class Group:
    """The samples of one comparison group: the correctly classified clean images (`key` None, name
    ``"Clean"``), or one attack's successful adversarial examples. Arrays are row-aligned; `source` is
    the clean-set index of each sample (a clean image is its own source)."""

    name: str
    key: AttackKey | None
    mask: np.ndarray            # over the rows of `result` (clean: correct; attack: success)
    source: np.ndarray          # (n,) clean-set index of each sample
    labels: np.ndarray          # (n,) true class of each sample (its source's)
    result: ci.CIResult         # the CI pass of every image of the set
    all_pixels: np.ndarray      # every image of the set, float pixels in [0, 255]

    @property
    def id(self):
        """`CLEAN` or the `AttackKey`: the key of this group in result dictionaries."""
        return CLEAN if self.key is None else self.key

    @property
    def n(self) -> int:
        return len(self.source)

    @property
    def ci(self) -> np.ndarray:
        return self.result.ci[self.mask]

    @property
    def predicted(self) -> np.ndarray:
        return self.result.predicted[self.mask]

    @property
    def probability(self) -> np.ndarray:
        return self.result.probability[self.mask]

    @property
    def pixels(self) -> np.ndarray:
        return self.all_pixels[self.mask]


def group_of(cs: CleanSet, adv: AdversarialSet) -> Group:
    """The group of `adv`'s successful examples (their sources in `cs`)."""
    s = adv.success
    src = adv.source[s]
    return Group(adv.key.label, adv.key, s, src, cs.labels[src], adv.ci_result, adv.attack_result.adversarial)


@dataclass(eq=False)
class Experiment:
    """Everything of one setup: clean set, prototypes, and the adversarial set of each attack key."""

    setup: Setup
    clean: CleanSet
    prototypes: protos.Prototypes
    adversarial: dict = field(default_factory=dict)   # AttackKey -> AdversarialSet

    def groups(self, eps: float | None = None) -> list[Group]:
        """The clean group, then each attack's successful examples at `eps` (default: every budget), in
        the paper's table order; attacks not run are left out."""
        cs = self.clean
        ok = cs.correct
        out = [Group(CLEAN, None, ok, np.flatnonzero(ok), cs.labels[ok], cs.ci_result, cs.pixels)]
        for key in self.setup.keys(eps):
            adv = self.adversarial.get(key)
            if adv is not None:
                out.append(group_of(cs, adv))
        return out

    def wins(self, eps: float | None = None) -> np.ndarray:
        """(N,) int: per clean image, how many attacks at `eps` (default the paper's) succeeded on it."""
        eps = self.setup.paper_eps if eps is None else float(eps)
        w = np.zeros(self.clean.n, int)
        for g in self.groups(eps)[1:]:
            np.add.at(w, g.source, 1)
        return w


def _zoo(setup: Setup):
    """The setup's model (built once per process)."""
    return setup.zoo_model()


def _geometry_of(zm):
    """The model's resize/crop of uint8 images: its own `geometry`, else its dataset's."""
    if zm.geometry is not None:
        return zm.geometry
    fn = preprocess.geometry_cifar if zm.dataset == "cifar10" else preprocess.geometry_imagenet
    return functools.partial(fn, model=zm.name)


def _geometry(zm, images) -> np.ndarray:
    return _geometry_of(zm)(images)


def _ci_of(zm, pixels: np.ndarray, progress, definition: str = "probability", name: str = "") -> ci.CIResult:
    """The CI pass of float pixels (cached on disk): the one CI stage of every pipeline here. name: a name of
    exactly `pixels` (their `cache.key`, or the key of the attack entry holding them, `attacks.AttackResult.entry`):
    with a normalisation of the library (`cache.callable_key`) the CI's key names the pixels by it, and they are
    normalised (and read) only if the CI is computed."""
    norm = ccache.callable_key(zm.normalize) if name else None
    inputs = (zm.normalize(pixels) if norm is None else
              ci.KeyedInputs(len(pixels), ["pixels", name, "normalized by", norm], lambda: zm.normalize(pixels)))
    return ci.counterfactual_information(zm.model, inputs, zm.ci_layer, definition=definition, cache=True,
                                         progress=progress)


def _attack(zm, pixels: np.ndarray, labels: np.ndarray, key: AttackKey, progress,
            grid: bool = False, images_key=None) -> attacks.AttackResult:
    """The attack stage of every pipeline here (seeded with `config.SEED`, cached on disk)."""
    return attacks.generate(zm, pixels, labels=labels, attack=key.attack, eps=key.eps, targeted=key.targeted,
                            seed=config.SEED, cache=True, progress=progress, grid=grid, images_key=images_key)


@functools.cache
def _sample(setup: Setup) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """(ids, labels, pool indices) of the evaluation sample of `setup` (per process: a worker's too)."""
    if setup.committed_samples:
        sample = samples.for_profile(setup.sample_model, setup.eval_pool, setup.profile)
    else:
        sample = samples.derived(_zoo(setup), setup.eval_pool, setup.profile)
    pool = data.pool(setup.eval_pool)
    idx = pool.index_of(sample.ids)
    return tuple(sample.ids), pool.labels[idx].astype(np.int64), idx


def _pixels(setup: Setup, idx: np.ndarray) -> np.ndarray:
    """Float pixels of the eval pool's images `idx` at the model's input size (per image: a subset gives the same)."""
    return _geometry(_zoo(setup), data.pool(setup.eval_pool).load(idx)).astype(np.float32)


def _stored_pixels(setup: Setup, idx: np.ndarray) -> tuple[np.ndarray, str]:
    """(`_pixels`, their `cache.key`): decoded once, then read from the cache with their digest (a checked entry is
    mapped in memory and read only where used: 2 s of JPEG decoding and hashing for the ImageNet sample in every
    notebook). Keyed by the pool's file hashes and the geometry's name; where those are not known by name,
    decoded each time (digest "")."""
    zm = _zoo(setup)
    shape = (len(idx), *zm.input_shape)
    part = zm.inputs_key(data.pool(setup.eval_pool), idx, _geometry_of(zm))
    if part is None:
        return _pixels(setup, idx), ""

    def compute():
        x = _pixels(setup, idx)
        return {"pixels": x, "digest": np.array(ccache.key(x))}

    def wrong(a):
        x = a["pixels"]
        if x.shape != shape or x.dtype != np.float32:
            return f"pixels {x.dtype} {x.shape}, expected float32 {shape}"
        return None if str(a["digest"]) == ccache.key(x) else "the stored digest is not that of the pixels"

    got = ccache.cached("pixels", [part, "float32", len(idx)], compute, required=("pixels", "digest"),
                        validate=wrong, code=("causadv_lib.data", "causadv_lib.preprocess", __name__),
                        mapped=("pixels",))
    return got["pixels"], str(got["digest"])


@functools.cache
def _clean(setup: Setup) -> CleanSet:
    ids, labels, idx = _sample(setup)
    with _timed(setup, "load", "clean images"):
        pixels, digest = _stored_pixels(setup, idx)
    if shards.sharded():
        if (setup, "clean") not in _FROM_SHARDS:
            _sharded_clean(setup, None)
        res = _FROM_SHARDS[(setup, "clean")]
    else:
        with _timed(setup, "ci", "clean"):
            res = _ci_of(_zoo(setup), pixels, None, name=digest)
    return CleanSet(setup, ids, labels, pixels, res, digest)


@functools.cache
def _attack_inputs(setup: Setup) -> tuple[np.ndarray, np.ndarray, list | None]:
    """(indices in the clean set, pixels, their key part or None) of the correctly classified clean images: the
    images every attack of `setup` runs on (copied from the clean set once per process)."""
    cs = _clean(setup)
    source = np.flatnonzero(cs.correct)
    return source, cs.pixels[source], (["rows", source, "of", cs.pixels_digest] if cs.pixels_digest else None)


def _attack_inputs_first(setup: Setup, limit: int | None) -> tuple[np.ndarray, np.ndarray, list | None]:
    """`_attack_inputs` of the first `limit` of them (None: all)."""
    source, x, key = _attack_inputs(setup)
    if limit is None or limit >= len(source):
        return source, x, key
    return source[:limit], x[:limit], (None if key is None else ["first", limit, "of", key])


def clean(setup: Setup) -> CleanSet:
    """The clean evaluation set of `setup` (memoised in the process; CI vectors cached on disk)."""
    return _clean(setup)


@dataclass(frozen=True)
class FitSet:
    """Clean images a detector is fitted on: the evaluation pool without the evaluation sample (`fit_set`)."""

    setup: Setup
    ids: tuple[str, ...]
    labels: np.ndarray           # (N,) int64
    pixels: np.ndarray           # (N, H, W, 3) float32 in [0, 255] at the model's input size, like the clean set's

    @property
    def n(self) -> int:
        return len(self.ids)


@functools.cache
def _fit_set(setup: Setup, n: int) -> FitSet:
    zm = _zoo(setup)
    pool = data.pool(setup.eval_pool)
    taken = set(_clean(setup).ids)
    rest = np.array([i for i, x in enumerate(pool.ids) if x not in taken], np.int64)
    idx = rest[spread.spread(len(rest), n)]
    with _timed(setup, "load", "detector fit images"):
        pixels = _geometry(zm, pool.load(idx)).astype(np.float32)
    return FitSet(setup, tuple(pool.ids[i] for i in idx), pool.labels[idx].astype(np.int64), pixels)


def fit_set(setup: Setup, n: int | None = None) -> FitSet:
    """`n` clean images (default: notebook 07's ``config.beyond(profile, dataset).fit_images``) of the
    evaluation pool that are not in the evaluation sample, evenly spread over the pool (`spread.spread`, so
    every class of a class-ordered pool), in pool order, with the clean set's geometry. Disjoint from the
    evaluation images and from the prototype pool by construction; memoised in the process."""
    n = config.beyond(setup.profile, setup.dataset).fit_images if n is None else checks.positive_int(n, "n")
    return _fit_set(setup, n)


def _prototypes_of(setup: Setup, definition: str) -> protos.Prototypes:
    prof = config.get_profile(setup.profile)
    if definition != "probability":     # the same images: only their CI vectors under the definition
        return protos.with_definition(_prototype_set(setup, "probability"), _zoo(setup),
                                      data.pool(setup.prototype_pool), definition)
    return protos.for_pool(_zoo(setup), data.pool(setup.prototype_pool), limit=prof.prototype_pool_limit,
                           definition=definition, cache=True)


@functools.cache
def _prototype_set(setup: Setup, definition: str) -> protos.Prototypes:
    got = _FROM_SHARDS.get((setup, "prototypes", definition))
    if got is not None:
        return got
    stage = "prototypes" if definition == "probability" else f"prototypes ({definition})"
    with _timed(setup, stage, setup.prototype_pool):
        return _prototypes_of(setup, definition)


def prototype_set(setup: Setup, definition: str = "probability") -> protos.Prototypes:
    """The prototypes of `setup` (`prototypes.for_pool` with the profile's pool limit, cached)."""
    return _prototype_set(setup, definition)


@functools.cache
def _adversarial(setup: Setup, key: AttackKey, progress) -> AdversarialSet:
    if shards.sharded():
        if (setup, key) not in _FROM_SHARDS:
            _sharded_attacks(setup, (key,), progress)
        return _FROM_SHARDS[(setup, key)]
    zm = _zoo(setup)
    cs = _clean(setup)
    source, x, x_key = _attack_inputs(setup)
    with _timed(setup, "attack", key.full_label):
        res = _attack(zm, x, cs.labels[source], key, progress, images_key=x_key)
    with _timed(setup, "ci", key.full_label):
        ci_res = _ci_of(zm, res.adversarial, progress, name=res.entry)
    return AdversarialSet(setup, key, res, ci_res, source)


def adversarial(setup: Setup, key: AttackKey, progress: bool | None = None) -> AdversarialSet:
    """The attack `key` on the correctly classified clean images of `setup`, with CI (memoised, cached)."""
    if key.eps not in setup.eps:
        raise ValueError(f"{setup.label}: eps {key.eps_label} is not one of the setup's budgets "
                         f"{[eps_label(e) for e in setup.eps]} (config.ATTACK_EPS)")
    return _adversarial(setup, key, None if progress is None else bool(progress))


@functools.cache
def _attacked(setup: Setup, key: AttackKey, limit: int | None, grid: bool, progress) -> AdversarialSet:
    zm = _zoo(setup)
    cs = _clean(setup)
    source, x, x_key = _attack_inputs_first(setup, limit)
    label = key.full_label + (f", first {limit}" if limit is not None else "") + (", 8-bit grid" if grid else "")
    with _timed(setup, "attack", label):
        res = _attack(zm, x, cs.labels[source], key, progress, grid=grid, images_key=x_key)
    with _timed(setup, "ci", label):
        ci_res = _ci_of(zm, res.adversarial, progress, name=res.entry)
    return AdversarialSet(setup, key, res, ci_res, source)


def attacked(setup: Setup, key: AttackKey, *, limit: int | None = None, grid: bool = False,
             progress: bool | None = None) -> AdversarialSet:
    """The attack `key` (any budget) on the first `limit` correctly classified clean images of `setup` (all:
    None), with CI; ``grid=True``: the attack that stays on the 8-bit grid (`attacks.generate`). The setup's
    own attacks (every image, floats, a budget of the setup) are `adversarial`'s. Memoised; cached on disk."""
    limit = None if limit is None else checks.positive_int(limit, "limit")
    if limit is not None and limit >= _clean(setup).n_correct:
        limit = None                                # every correct image: the same run as without a limit
    if not grid and key.eps in setup.eps:
        full = adversarial(setup, key, progress)
        return full if limit is None else first(full, limit)
    return _attacked(setup, key, limit, bool(grid), None if progress is None else bool(progress))


def first(adv: AdversarialSet, n: int) -> AdversarialSet:
    """The first `n` attacked images of `adv` (the same results, not a new run)."""
    cut = slice(0, n)
    res = dataclasses.replace(adv.attack_result, entry="", **{f: getattr(adv.attack_result, f)[cut] for f in
                                                              ("adversarial", "success", "predicted", "targets",
                                                               "labels")})
    ci_res = dataclasses.replace(adv.ci_result, **{f: getattr(adv.ci_result, f)[cut] for f in
                                                   ("ci", "predicted", "probability", "target")})
    return AdversarialSet(adv.setup, adv.key, res, ci_res, adv.source[cut])


def write_sample_list(exp: "Experiment", directory) -> Path | None:
    """Write the evaluation sample of a setup without a committed list (derived for its model) into
    `directory`, in the committed lists' format (`samples.write_list`), and return its path; None (nothing
    written) for a committed list, which lives in ``data_manifest/samples/``."""
    if exp.setup.committed_samples:
        return None
    sample = samples.SampleList(exp.setup.model, exp.setup.eval_pool, tuple(exp.clean.ids),
                                tuple(int(y) for y in exp.clean.labels))
    return samples.write_list(sample, samples.DERIVED_RULE, directory=directory)


def paper_command(model: str, dataset: str, *, normalize: str | None = None, out: str | None = None,
                  profile: str = "paper") -> str:
    """The command that runs every experiment notebook on `model` (a zoo name or a model file; see the
    README, "Bring your own model"), into `out` (default: ``runs/NAME[/PROFILE]``, as the Makefile chooses)."""
    if dataset not in POOLS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(POOLS)}")
    config.get_profile(profile)
    name = Path(str(model)).stem if str(model).endswith((".keras", ".tflite")) else str(model)
    out = out or f"runs/{name}" + ("" if profile == "paper" else f"/{profile}")
    parts = ["make paper"] + ([] if profile == "paper" else [f"PROFILE={profile}"])
    parts += [f"MODEL={model}", f"DATASET={dataset}"] + ([f"NORMALIZE={normalize}"] if normalize else [])
    return " ".join(parts + [f"OUT={out}"])


def run(setup: Setup, progress: bool = True) -> Experiment:
    """Clean set, prototypes and every attack of `setup` (progress bar over the attacks, or over the shards of
    a sharded run: `config.scheduler()`, module "Sharded runs")."""
    keys = setup.keys()
    if shards.sharded():
        if (setup, "clean") not in _FROM_SHARDS:
            _sharded_clean(setup, progress, prototypes=True)
        _sharded_attacks(setup, tuple(k for k in keys if (setup, k) not in _FROM_SHARDS), progress)
    elif progress:
        keys = tqdm(keys, desc=f"attacks {setup.label}", unit="attack")
    with ccache.models_fixed():          # the model's fingerprint once, not once per attack and CI pass
        exp = Experiment(setup, clean(setup), prototype_set(setup))
        for key in keys:
            exp.adversarial[key] = adversarial(setup, key)
    return exp


def clear_memo() -> None:
    """Forget the in-process memo (the disk caches stay)."""
    for memo in (_sample, _clean, _attack_inputs, _fit_set, _prototype_set, _adversarial, _attacked, _logits,
                 _ci_under):
        memo.cache_clear()
    _FROM_SHARDS.clear()
    TIMINGS.clear()


# ------------------------------------------------------------------------------------------ sharded runs
#: results of sharded runs, merged in this process: (setup, "clean") -> the clean set's CIResult, (setup, AttackKey)
#: -> AdversarialSet, and (setup, "prototypes", definition) -> Prototypes
_FROM_SHARDS: dict = {}


def _check_shardable(setup: Setup) -> None:
    if setup.path is None and setup.model not in zoo.names():
        raise ValueError(f"{setup.label}: a model registered in this process (zoo.register) cannot be loaded by "
                         f"Dask workers; unset {config.SCHEDULER_ENV}, or name a zoo model or a .keras/.tflite file")


def _clean_shard(setup: Setup, start: int, stop: int) -> ci.CIResult:
    """Task: the CI pass of clean images ``start .. stop - 1`` of `setup` (on a worker; cached there)."""
    return _ci_of(_zoo(setup), _pixels(setup, _sample(setup)[2][start:stop]), False)


def _attack_shard(setup: Setup, key: AttackKey, first: int, total: int, clean_index: np.ndarray
                  ) -> tuple[attacks.AttackResult, ci.CIResult]:
    """Task: attack `key` on the clean images `clean_index` of `setup`, images ``first ..`` of the attack's run
    of `total` images, and the CI pass of its outputs (on a worker; both cached there per shard)."""
    zm = _zoo(setup)
    _, labels, idx = _sample(setup)
    res = attacks.generate(zm, _pixels(setup, idx[clean_index]), labels=labels[clean_index], attack=key.attack,
                           eps=key.eps, targeted=key.targeted, seed=config.SEED, cache=True, progress=False,
                           part=(first, total))
    return res, _ci_of(zm, res.adversarial, False, name=res.entry)


def _joined(parts: list, fields: tuple[str, ...]):
    """The dataclass results `parts` of consecutive shards as one: `fields` concatenated, the rest the first's."""
    return dataclasses.replace(parts[0], **{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})


_CI_FIELDS = ("ci", "predicted", "probability", "target")
_ATTACK_FIELDS = ("adversarial", "success", "predicted", "targets", "labels")


def _sharded_clean(setup: Setup, progress, prototypes: bool = False) -> None:
    """The clean set's CI pass as shards, merged in image order into `_FROM_SHARDS` (and, with `prototypes`, the
    prototypes computed as one more task, beside them)."""
    _check_shardable(setup)
    n = len(_sample(setup)[0])
    tasks = [(_clean_shard, setup, a, b) for a, b in shards.spans(n, config.SHARD_IMAGES)]
    if prototypes:
        tasks.append((_prototypes_of, setup, "probability"))
    with _timed(setup, "ci + prototypes (sharded)" if prototypes else "ci (sharded)", f"clean, {len(tasks)} tasks"):
        out = shards.compute(tasks, f"clean shards {setup.label}", progress)
    ccache.clean_orphans()
    if prototypes:
        _FROM_SHARDS[(setup, "prototypes", "probability")] = out.pop()
    _FROM_SHARDS[(setup, "clean")] = _joined(out, _CI_FIELDS)


def _sharded_attacks(setup: Setup, keys: tuple[AttackKey, ...], progress) -> None:
    """The attacks `keys` on the correctly classified clean images of `setup`, with their CI passes, as shards of
    `config.SHARD_IMAGES` images; merged in image order into `_FROM_SHARDS` (the in-process run, bit for bit)."""
    _check_shardable(setup)
    cs = _clean(setup)
    if not keys:
        return
    source = np.flatnonzero(cs.correct)
    n = len(source)
    spans = shards.spans(n, config.SHARD_IMAGES)
    tasks = [(_attack_shard, setup, key, a, n, source[a:b]) for key in keys for a, b in spans]
    with _timed(setup, "attack + ci (sharded)", f"{len(keys)} attacks, {len(tasks)} shards"):
        out = shards.compute(tasks, f"attack shards {setup.label}", progress) if n else []
    ccache.clean_orphans()
    for i, key in enumerate(keys):
        parts = out[i * len(spans):(i + 1) * len(spans)]
        if parts:
            res = dataclasses.replace(_joined([p[0] for p in parts], _ATTACK_FIELDS), entry="")
            ci_res = _joined([p[1] for p in parts], _CI_FIELDS)
        else:                                       # no correctly classified image: the in-process empty run
            res = _attack(_zoo(setup), cs.pixels[source], cs.labels[source], key, False)
            ci_res = _ci_of(_zoo(setup), res.adversarial, False)
        _FROM_SHARDS[(setup, key)] = AdversarialSet(setup, key, res, ci_res, source)


# ------------------------------------------------------------------ logits, other CI definitions
@functools.cache
def _logits(setup: Setup, key: AttackKey | None) -> np.ndarray:
    zm = _zoo(setup)
    pixels = _clean(setup).pixels if key is None else adversarial(setup, key).attack_result.adversarial
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
def _ci_under(setup: Setup, key: AttackKey | None, definition: str) -> ci.CIResult:
    zm = _zoo(setup)
    res = None if key is None else adversarial(setup, key).attack_result
    pixels = _clean(setup).pixels if res is None else res.adversarial
    with _timed(setup, f"ci ({definition})", "clean" if key is None else key.full_label):
        return _ci_of(zm, pixels, None, definition, name=_clean(setup).pixels_digest if res is None else res.entry)


def with_definition(exp: Experiment, definition: str) -> Experiment:
    """The same experiment (images, attacks, clean and success masks) with every CI vector and the
    prototypes under another CI definition (`ci.DEFINITIONS`; cached on disk like the paper's).

    The prediction of the CI pass does not depend on the definition; a sample whose prediction would
    differ raises, so every definition counts exactly the same samples."""
    if definition not in ci.DEFINITIONS:
        raise ValueError(f"unknown definition {definition!r}; expected one of {ci.DEFINITIONS}")
    if definition == exp.clean.ci_result.definition:
        return exp
    s = exp.setup

    def same(res, old, what):
        if not np.array_equal(res.predicted, old.predicted):
            raise RuntimeError(f"{s.label}, {what}: the CI pass under {definition!r} predicts other classes")
        return res

    clean_ = dataclasses.replace(exp.clean, ci_result=same(_ci_under(s, None, definition), exp.clean.ci_result,
                                                           "clean"))
    out = Experiment(s, clean_, prototype_set(s, definition))
    for key, adv in exp.adversarial.items():
        out.adversarial[key] = dataclasses.replace(
            adv, ci_result=same(_ci_under(s, key, definition), adv.ci_result, key.full_label))
    return out


# ------------------------------------------------------------------------- the pipeline on any model
@dataclass(frozen=True)
class ModelRun:
    """The whole pipeline on one ZooModel (notebook 09): the clean CI result, which clean images the model
    gets right, and per attack the `AttackResult`, the CI result of its adversarial inputs and the mask of
    the successful examples whose CI pass agrees with the attack's prediction."""

    model: str
    dataset: str
    clean: ci.CIResult                              # CI of every image
    correct: np.ndarray
    adversarial: dict                               # attack -> (AttackResult, ci.CIResult, ok mask)

    def groups(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """("clean" or the attack, CI vectors, predicted classes) of the clean images the model gets right
        and of each attack's successful examples."""
        out = [("clean", self.clean.ci[self.correct], self.clean.predicted[self.correct])]
        return out + [(a, r.ci[ok], r.predicted[ok]) for a, (_, r, ok) in self.adversarial.items()]


def run_on_model(zm, pixels: np.ndarray, labels, dataset: str, *, attacks: tuple[str, ...] = ("fgsm", "pgd", "bim"),
                 eps: float = 8 / 255) -> ModelRun:
    """The experiment's stages on any ZooModel: CI of the clean images, each untargeted attack at `eps` on
    the correctly classified ones, and the CI of the adversarial inputs (all cached on disk like elsewhere).

    `pixels`: uint8 or float pixels at the model's input size. `analysis.tables.model_run_rows` gives the
    strategies' counts and ROC-AUCs of the result.
    """
    labels = np.asarray(labels, np.int64)
    clean_ = _ci_of(zm, np.asarray(pixels, np.float32), None)
    correct = clean_.predicted == labels
    adversarial_ = {}
    for attack in attacks:
        adv = _attack(zm, pixels[correct], labels[correct], AttackKey(attack, False, eps), None)
        res = _ci_of(zm, adv.adversarial, None, name=adv.entry)
        adversarial_[attack] = (adv, res, adv.success & (res.predicted == adv.predicted))
    return ModelRun(zm.name, dataset, clean_, correct, adversarial_)
