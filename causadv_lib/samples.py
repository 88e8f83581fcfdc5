"""Deterministic choice of evaluation samples, stored as committed, ordered id lists.

Like RobustBench's id lists: the paper-scale sample of each (model, pool) is chosen once, seeded and
among images the model classifies correctly, and committed as plain text under
``data_manifest/samples/MODEL__POOL.txt`` so every run uses the same images. A smaller profile uses a
prefix of the same list (its first classes, its first images per class).

File format: ``#`` comment lines (model, pool, rule, seed), then one ``ID<TAB>LABEL`` line per image,
ordered by (label, id).
"""
from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cache, config, data
from .io import atomic_write_bytes
from .zoo import evaluate, name_of


@dataclass(frozen=True)
class SampleList:
    """An ordered list of evaluation image ids with their labels."""

    model: str
    pool: str
    ids: tuple[str, ...]
    labels: tuple[int, ...]

    def subset(self, n_classes: int, per_class: int) -> "SampleList":
        """The first `n_classes` classes of the list, `per_class` images each (a profile's prefix)."""
        ids, labels, seen = [], [], {}
        for i, y in zip(self.ids, self.labels):
            if y not in seen and len(seen) == n_classes:
                continue
            seen.setdefault(y, 0)
            if seen[y] < per_class:
                seen[y] += 1
                ids.append(i)
                labels.append(y)
        short = [y for y, c in seen.items() if c < per_class]
        if short:
            raise ValueError(f"{self.path_name}: classes {short[:5]} have fewer than {per_class} images")
        return SampleList(self.model, self.pool, tuple(ids), tuple(labels))

    @property
    def path_name(self) -> str:
        return f"{self.model}__{self.pool}.txt"


def choose(labels, predicted, *, n_classes: int, per_class: int, seed: int = config.SEED) -> np.ndarray:
    """Indices of `per_class` correctly classified images from each of `n_classes` classes.

    Eligible classes have at least `per_class` correctly classified images; the classes and the images
    within each class are drawn with a generator seeded by `seed`. Returned ordered by (label, index).
    """
    labels = np.asarray(labels)
    predicted = np.asarray(predicted)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels {labels.shape} and predicted {predicted.shape} differ in shape")
    correct = np.flatnonzero(labels == predicted)
    by_class: dict[int, np.ndarray] = {}
    for c in np.unique(labels[correct]):
        members = correct[labels[correct] == c]
        if len(members) >= per_class:
            by_class[int(c)] = members
    if len(by_class) < n_classes:
        raise ValueError(f"only {len(by_class)} classes have {per_class} correctly classified images; "
                         f"{n_classes} were asked for")
    rng = np.random.default_rng(seed)
    classes = sorted(rng.choice(sorted(by_class), size=n_classes, replace=False).tolist())
    chosen = [np.sort(rng.choice(by_class[c], size=per_class, replace=False)) for c in classes]
    return np.concatenate(chosen)


def subset_indices(n: int, limit: int | None, seed: int = config.SEED) -> np.ndarray:
    """Sorted indices of a seeded random subset of `limit` of `n` items (all of them if limit is None)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def list_path(model: str, pool: str, directory: Path | None = None) -> Path:
    """Where the list of (model, pool) is stored: `directory` (default: the committed `config.SAMPLES_DIR`)."""
    return (config.SAMPLES_DIR if directory is None else Path(directory)) / f"{model}__{pool}.txt"


def write_list(samples: SampleList, rule: str, seed: int = config.SEED, directory: Path | None = None) -> Path:
    """Write a sample list in the committed text format (into `directory`, default the committed folder)."""
    lines = [f"# model: {samples.model}", f"# pool: {samples.pool}", f"# rule: {rule}", f"# seed: {seed}"]
    lines += [f"{i}\t{y}" for i, y in zip(samples.ids, samples.labels)]
    path = list_path(samples.model, samples.pool, directory)
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def load_list(model: str, pool: str) -> SampleList:
    """Read the committed sample list of (model, pool)."""
    path = list_path(model, pool)
    if not path.exists():
        raise FileNotFoundError(f"no committed sample list {path}; create it with "
                                f"`python -m causadv_lib.samples --write`")
    ids, labels = [], []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            i, y = line.split("\t")
            ids.append(i)
            labels.append(int(y))
    return SampleList(model, pool, tuple(ids), tuple(labels))


#: The scale of each evaluation pool's sample: the `config.Profile` fields (classes, images per class).
POOL_SCALE = {"imagenet_eval": ("imagenet_classes", "imagenet_per_class"),
              "cifar10_eval": ("cifar_classes", "cifar_per_class")}
#: The committed evaluation samples: (model, pool) -> (classes, images per class) at paper scale.
PAPER_LISTS = {
    ("mobilenet_v2_imagenet", "imagenet_eval"): POOL_SCALE["imagenet_eval"],
    ("vgg16_bn_cifar10", "cifar10_eval"): POOL_SCALE["cifar10_eval"],
    ("resnet56_cifar10", "cifar10_eval"): POOL_SCALE["cifar10_eval"],
}
#: how a derived list is chosen (its files' `# rule:` line)
DERIVED_RULE = "derived: seeded, correctly classified, spread over classes (samples.derived)"


class FewClassesWarning(UserWarning):
    """A derived sample covers fewer classes than the profile asks for (too few correctly classified images)."""


def for_profile(model: str, pool: str, profile: str) -> SampleList:
    """The evaluation sample of (model, pool) at the scale of `profile` (a prefix of the committed list)."""
    prof = config.get_profile(profile)
    try:
        classes_attr, per_class_attr = PAPER_LISTS[(model, pool)]
    except KeyError:
        raise ValueError(f"no committed sample list for model {model!r} on pool {pool!r}; "
                         f"known: {sorted(PAPER_LISTS)}") from None
    return load_list(model, pool).subset(getattr(prof, classes_attr), getattr(prof, per_class_attr))


def derived(zoo_model, pool: str, profile: str, *, seed: int = config.SEED, progress: bool = False) -> SampleList:
    """The evaluation sample of a model without a committed list, chosen as the committed lists were.

    From the model's top-1 predictions over the whole pool: `per_class` correctly classified images of each
    of `n_classes` classes at paper scale (`choose`, seeded), cached on disk by the model's fingerprint;
    `profile` takes its prefix, as for the committed lists. Where fewer classes have enough correctly
    classified images, every class that has them is taken, with a `FewClassesWarning` saying how many.
    """
    images_pool = data.pool(pool)
    classes_attr, per_class_attr = POOL_SCALE[images_pool.name]
    paper, prof = config.get_profile("paper"), config.get_profile(profile)
    per_class = getattr(paper, per_class_attr)

    def compute():
        predicted = evaluate.top1(zoo_model, images_pool, progress=progress).predictions
        correct = images_pool.labels == predicted
        counts = np.bincount(images_pool.labels[correct], minlength=len(images_pool.class_names))
        n = min(getattr(paper, classes_attr), int((counts >= per_class).sum()))
        if n == 0:
            raise ValueError(f"model {name_of(zoo_model)}: no class of pool {pool} has {per_class} correctly "
                             f"classified images (top-1 {correct.mean():.1%}); no evaluation sample can be chosen")
        return {"index": choose(images_pool.labels, predicted, n_classes=n, per_class=per_class, seed=seed)}

    key = [cache.model_fingerprint(zoo_model.model), images_pool.name, list(images_pool.ids),
           images_pool.labels, seed, getattr(paper, classes_attr), per_class]
    idx = cache.cached("samples", key, compute, required=("index",), code=(__name__, evaluate, "causadv_lib.runner"))["index"]
    full = SampleList(name_of(zoo_model), pool, tuple(images_pool.ids[i] for i in idx),
                      tuple(int(images_pool.labels[i]) for i in idx))
    n_classes = len(set(full.labels))
    want = getattr(prof, classes_attr)
    if n_classes < want:
        warnings.warn(f"model {full.model}: only {n_classes} classes of pool {pool} have {per_class} correctly "
                      f"classified images; the {profile} sample uses those {n_classes} of the {want} asked for",
                      FewClassesWarning, stacklevel=2)
    return full.subset(min(n_classes, want), getattr(prof, per_class_attr))


def derive(model: str, pool: str) -> SampleList:
    """Choose the paper-scale sample of (model, pool) afresh: predictions of the model on the whole pool."""
    images_pool = data.pool(pool)
    predicted = evaluate.top1(model, images_pool).predictions
    prof = config.get_profile("paper")
    classes_attr, per_class_attr = PAPER_LISTS[(model, pool)]
    idx = choose(images_pool.labels, predicted, n_classes=getattr(prof, classes_attr),
                 per_class=getattr(prof, per_class_attr))
    return SampleList(model, pool, tuple(images_pool.ids[i] for i in idx),
                      tuple(int(images_pool.labels[i]) for i in idx))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m causadv_lib.samples", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="(re)write the committed lists")
    args = parser.parse_args(argv)
    changed = 0
    for model, pool in PAPER_LISTS:
        fresh = derive(model, pool)
        try:
            same = load_list(model, pool) == fresh
        except FileNotFoundError:
            same = False
        print(f"{model} {pool} n={len(fresh.ids)} {'unchanged' if same else 'CHANGED'}")
        if not same:
            changed += 1
            if args.write:
                write_list(fresh, rule="seeded choice among correctly classified images, "
                                       "classes x per class as in config.PROFILES['paper']")
    return 1 if changed and not args.write else 0


if __name__ == "__main__":
    raise SystemExit(main())
