"""The project's vocabulary: datasets, attacks and their keys, budgets' labels, the clean group, and the
strategy variants of the paper's tables, named once.

Every module and notebook that names one of these imports it from here, so a label or a variant name
cannot drift between a table, a figure and a test:

    >>> from causadv_lib.vocab import AttackKey, CLEAN, S2_RHO, eps_label
    >>> AttackKey("pgd", False, 8 / 255).full_label
    'PGD untargeted, eps 8/255'

Strategy variants are named by `variant_name` (the rule `strategies` uses for every result it returns):
``S1(n=0)``, ``S2(top-5)``, ``S2(rho>=0.5)``, ``S3(n=5)``, ``S4(3/10)``. `ROC_VARIANTS` holds one variant per
distinct strategy score (S1 and S3 variants differ only in their threshold) plus `MAX_CI`, a score that is
not in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass

#: datasets, and their display names
DATASETS = ("imagenet", "cifar10")
DATASET_LABELS = {"imagenet": "ImageNet", "cifar10": "CIFAR-10"}
#: dataset -> (evaluation pool, prototype pool)
POOLS = {"imagenet": ("imagenet_eval", "imagenet_prototypes"), "cifar10": ("cifar10_eval", "cifar10_prototypes")}

#: the attacks of the paper's tables, in their row order, and their display names
ATTACKS = ("fgsm", "pgd", "bim")
ATTACK_LABELS = {"fgsm": "FGSM", "bim": "BIM", "pgd": "PGD"}

#: the name of the clean group in every table (correctly classified clean images)
CLEAN = "Clean"


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


def group_label(group) -> str:
    """The table name of a group: `CLEAN`, or an `AttackKey`'s label."""
    return CLEAN if group == CLEAN else group.label


# ------------------------------------------------------------------------------- strategy variants
#: the parameters of the paper's variants (S2 runs top-5 on ImageNet, rho >= 0.5 on CIFAR-10)
S1_NS = (0, 1, 2, 5)
S3_NS = (5, 10)
S4_NMS = ((3, 10), (5, 20), (10, 30))
S2_TOPK = 5
S2_THRESHOLD = 0.5


def variant_name(strategy: str, **params) -> str:
    """The name of a strategy variant: ``S1(n=0)``, ``S2(top-5)``, ``S2(rho>=0.5)``, ``S3(n=5)``, ``S4(3/10)``."""
    if strategy in ("s1", "s3"):
        return f"{strategy.upper()}(n={params['n']})"
    if strategy == "s2":
        return f"S2(top-{params['k']})" if params["mode"] == "topk" else f"S2(rho>={params['threshold']:g})"
    if strategy == "s4":
        return f"S4({params['n']}/{params['m']})"
    raise ValueError(f"unknown strategy {strategy!r}; expected s1, s2, s3 or s4")


S1_VARIANTS = tuple(variant_name("s1", n=n) for n in S1_NS)
S3_VARIANTS = tuple(variant_name("s3", n=n) for n in S3_NS)
S4_VARIANTS = tuple(variant_name("s4", n=n, m=m) for n, m in S4_NMS)
S1_0 = S1_VARIANTS[0]
S2_TOP5 = variant_name("s2", mode="topk", k=S2_TOPK)
S2_RHO = variant_name("s2", mode="threshold", threshold=S2_THRESHOLD)
S3_5, S3_10 = S3_VARIANTS
S4_3_10, S4_5_20, S4_10_30 = S4_VARIANTS

#: a score that is not in the paper: the largest CI value of the vector (low = suspicious), which shows
#: whether a prediction is saturated (removing any one filter then barely moves p_c)
MAX_CI = "max CI"
#: one ROC score per distinct strategy score, and MAX_CI
ROC_VARIANTS = (S1_0, S2_TOP5, S2_RHO, S3_5, S4_3_10, S4_5_20, S4_10_30, MAX_CI)
#: what each ROC score is (larger = more suspicious, in the paper's direction)
SCORE_NAMES = {S1_0: "S1: -#causal filters", S2_TOP5: "S2: rank of own class", S2_RHO: "S2: -rho with prototype",
               S3_5: "S3: -#zero filters", S4_3_10: "S4 3/10: -#common", S4_5_20: "S4 5/20: -#common",
               S4_10_30: "S4 10/30: -#common", MAX_CI: "not in the paper: -max CI"}
