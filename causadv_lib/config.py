"""Paths, seeds and run profiles: the one place where parameters live.

Paths are absolute, derived from this file's location (never from the working folder).
The data directory is resolved in `data_dir()`:
  1. ``$CAUSADV_DATA`` if set (it must exist),
  2. ``<project>/../shared/data`` if it exists (the read-only data mirror),
  3. the user cache ``cache_dir()/data`` (where ``make data`` fetches missing files).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_DIR = PROJECT_ROOT / "data_manifest"
#: committed, ordered lists of evaluation image ids (one file per model and pool)
SAMPLES_DIR = MANIFEST_DIR / "samples"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
BUILD_DIR = PROJECT_ROOT / "build"
FIGURES_ROOT = PROJECT_ROOT / "paper_figures"

#: The one seed; every random choice in the project derives from it.
SEED = 20240521

DATA_ENV = "CAUSADV_DATA"
CACHE_ENV = "CAUSADV_CACHE"
#: where a run writes its figures, tables and results JSON, if not the default `figures_dir` (`output_dir`)
OUT_ENV = "CAUSADV_OUT"
#: where the shared experiment runs (`scheduler`): unset, in this process; ``local:N``, a Dask LocalCluster of N worker
#: processes; ``tcp://HOST:PORT``, an existing Dask scheduler (`make paper WORKERS=N` sets ``local:N``)
SCHEDULER_ENV = "CAUSADV_SCHEDULER"
#: images per shard of a sharded run (`experiment`): a multiple of the attacks' gradient block (32 images), so that a
#: shard's gradient calls are the in-process run's
SHARD_IMAGES = 64


def scheduler() -> str | None:
    """Where the shared experiment runs, from ``$CAUSADV_SCHEDULER``: None (unset or empty: in this process),
    ``"local:N"`` (a Dask LocalCluster of N worker processes, one thread each, TensorFlow's threads too) or
    ``"tcp://HOST:PORT"`` (the address of a running Dask scheduler); anything else is a ValueError."""
    value = os.environ.get(SCHEDULER_ENV, "").strip()
    if not value:
        return None
    if re.fullmatch(r"local:[1-9][0-9]*", value) or re.fullmatch(r"tcp://[^\s/:]+:[0-9]{1,5}", value):
        return value
    raise ValueError(f"{SCHEDULER_ENV}={value!r}: expected nothing (in this process), local:N (a Dask LocalCluster of "
                     "N worker processes) or tcp://HOST:PORT (a running Dask scheduler)")


def default_mirror() -> Path:
    """The read-only data mirror beside the project root."""
    return (PROJECT_ROOT.parent / "shared" / "data").resolve()


def cache_dir() -> Path:
    """Writable cache for verification records, fetched files and computed results.

    ``$CAUSADV_CACHE`` if set, else ``<project>/.cache`` (git-ignored).
    """
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / ".cache"


def fetched_dir() -> Path:
    """Where ``make data`` puts files fetched from their upstream addresses."""
    return cache_dir() / "data"


def figures_dir(profile: str = "paper") -> Path:
    """The default home of a profile's figures, tables and results JSON (`paper` at the top of
    ``paper_figures/``, others in a subfolder)."""
    return FIGURES_ROOT if profile == "paper" else FIGURES_ROOT / profile


def output_dir(profile: str = "paper", out: str | os.PathLike | None = None) -> Path:
    """Where a run writes: `out` if given (a notebook's ``out`` parameter), else ``$CAUSADV_OUT`` if set, else
    `figures_dir(profile)`. A relative `out` is taken from the working folder."""
    chosen = out if out not in (None, "") else os.environ.get(OUT_ENV) or None
    return figures_dir(profile) if chosen is None else Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class Profile:
    """Scale of a run. `smoke` is CI scale (seconds to minutes); `paper` is the paper's scale."""

    name: str
    #: images per dataset for the zoo accuracy table (None = the whole pool)
    accuracy_limit: int | None
    #: evaluation samples: classes x images per class, taken from the committed lists in SAMPLES_DIR
    imagenet_classes: int
    imagenet_per_class: int
    cifar_classes: int
    cifar_per_class: int
    #: images of each prototype pool searched for prototypes (None = the whole pool)
    prototype_pool_limit: int | None = None


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", accuracy_limit=200, imagenet_classes=5, imagenet_per_class=2,
                     cifar_classes=10, cifar_per_class=1, prototype_pool_limit=200),
    # The paper samples 6 images x 50 classes of the ImageNet validation set; the mirror's 1300
    # validation images hold only 4 classes with 6 or more images, so we take 2 x 150 (300 images).
    "paper": Profile("paper", accuracy_limit=None, imagenet_classes=150, imagenet_per_class=2,
                     cifar_classes=10, cifar_per_class=10),
}


#: L-infinity attack budgets per dataset, as fractions of the pixel range; the first is the paper's
#: (ImageNet 8/255, CIFAR-10 24/255), the others are added (8/255: the field's standard on CIFAR-10).
ATTACK_EPS: dict[str, tuple[float, ...]] = {
    "imagenet": (8 / 255,),
    "cifar10": (24 / 255, 8 / 255),
}
#: The default model of each dataset in the experiments (notebooks 02+ take them as papermill parameters).
EXPERIMENT_MODELS: dict[str, str] = {"imagenet": "mobilenet_v2_imagenet", "cifar10": "vgg16_bn_cifar10"}
#: the ``causadv`` command line's detector: clean images it is fitted on by default (``--fit-images``), per dataset
CLI_FIT_IMAGES: dict[str, int] = {"cifar10": 1000, "imagenet": 2300}


@dataclass(frozen=True)
class Beyond:
    """Scale of notebook 07 (the detector against its peers, the eps sweep, the 8-bit attacks and the adaptive
    attacker) for one dataset at one profile. Every image count is a prefix of an ordered list, so a smaller
    run's images are the first of a larger one's."""

    #: clean images the detectors are fitted on: the evaluation pool without the evaluation sample, spread
    fit_images: int
    #: of those, the first correctly classified ones attacked (PGD) to train the supervised peer (Mahalanobis)
    supervised_images: int
    #: the first correctly classified evaluation images of the eps sweep and of the 8-bit attacks
    sweep_images: int
    #: the first correctly classified evaluation images the adaptive attacker runs on
    adaptive_images: int
    #: the adaptive attacker's iteration counts (one run of the largest, read at each)
    adaptive_iterations: tuple[int, ...] = (10, 50, 200)


BEYOND: dict[tuple[str, str], Beyond] = {
    ("smoke", "cifar10"): Beyond(fit_images=300, supervised_images=20, sweep_images=10, adaptive_images=6,
                                 adaptive_iterations=(2, 5, 10)),
    ("smoke", "imagenet"): Beyond(fit_images=400, supervised_images=20, sweep_images=4, adaptive_images=2,
                                  adaptive_iterations=(2, 5, 10)),
    ("paper", "cifar10"): Beyond(fit_images=1000, supervised_images=100, sweep_images=100, adaptive_images=25),
    ("paper", "imagenet"): Beyond(fit_images=1000, supervised_images=100, sweep_images=50, adaptive_images=10),
}
#: the datasets notebook 07 runs when none is named, per profile: at the smoke profile (`make test`, which must stay
#: under 15 minutes on 2 cores) CIFAR-10 only, the ImageNet half (400 fit images at least, for prototypes of
#: enough classes) costing as much again; a named dataset (``dataset=``) runs at any profile
BEYOND_DATASETS: dict[str, tuple[str, ...]] = {"smoke": ("cifar10",), "paper": ("cifar10", "imagenet")}
#: the eps sweep's budgets (fractions of the pixel range) and attacks (untargeted), notebook 07
SWEEP_EPS: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)
SWEEP_ATTACKS: tuple[str, ...] = ("fgsm", "pgd")
#: the false-positive rate every detector of notebook 07 is calibrated to
DETECTOR_FPR = 0.05


#: notebook 01's check of the fast CI paths against plain ablation: images per dataset at each profile, and the
#: filters checked on a layer of more than 512 (an even subset of that many; None: every filter)
ABLATION_CHECK_IMAGES: dict[str, dict[str, int]] = {"smoke": {"cifar10": 1, "imagenet": 1},
                                                    "paper": {"cifar10": 8, "imagenet": 2}}
ABLATION_CHECK_FILTERS: dict[str, int | None] = {"smoke": 64, "paper": None}
#: notebook 09's scale per profile: images evaluated and attacked, prototype pool searched (None: all), the
#: fitted head's training images and epochs, the second model's test images; its budget and attacks
OWN_MODEL_SCALE: dict[str, dict] = {
    "smoke": {"eval": 8, "proto_limit": 100, "train": 500, "epochs": 20, "cifar_eval": 40},
    "paper": {"eval": 100, "proto_limit": None, "train": 5000, "epochs": 40, "cifar_eval": 500}}
OWN_MODEL_EPS = 8 / 255
OWN_MODEL_ATTACKS: tuple[str, ...] = ("fgsm", "pgd", "bim")


def beyond(profile: str, dataset: str) -> Beyond:
    """Notebook 07's scale for `dataset` at `profile` (`BEYOND`)."""
    get_profile(profile)
    try:
        return BEYOND[(profile, dataset)]
    except KeyError:
        raise ValueError(f"no notebook-07 scale for dataset {dataset!r} at profile {profile!r}; expected one of "
                         f"{sorted(BEYOND)}") from None


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}") from None
