"""The paper's numbers, read from a data file (`paper_numbers.json` beside this module), never typed into code.

Each table is a `PaperTable`: its dataset, budget, N, the strategy variants (or purifiers) of its columns,
and per row name (``"Clean"``, ``"FGSM targeted"``, ...) the paper's counts, one per column. Counts are of
samples that pass (look clean), as `strategies.paper_count` (strategy 1, whose counts the paper gives in its text
only: samples flagged, its "detection rate"); Table 4's count recovered true labels.

    >>> from causadv_lib import paper
    >>> paper.table("table2").rows["Clean"]
    [65]
    >>> paper.table_for("table3", "cifar10", 8 / 255) is None      # the paper has no 8/255 CIFAR-10 table
    True

`tests/test_paper.py` checks every number against the transcription in ``../shared/paper/paper-numbers.json``.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from .vocab import ATTACK_LABELS, CLEAN

NUMBERS_FILE = Path(__file__).resolve().with_name("paper_numbers.json")
TABLES = ("strategy1", "strategy1_eps16", "table1", "table2", "table3", "figure3", "table4")


@dataclass(frozen=True)
class PaperTable:
    """One table (or figure) of the paper: where it applies and its counts per row."""

    name: str
    dataset: str
    eps: float                          # a fraction of the pixel range
    n: int                              # the paper's N per row
    columns: tuple[str, ...]            # strategy variants (tables 1-3, figure 3) or purifiers (table 4)
    rows: Mapping[str, list]            # row name -> one count per column
    clean: tuple | None = None          # figure 3: the clean counts (also rows["Clean"])
    adversarial: tuple | None = None    # figure 3: the one adversarial count per column, every attack

    @property
    def variants(self) -> tuple[str, ...]:
        return self.columns

    def share(self, row: str, column: str) -> float:
        """The paper's count of `row` in `column` as a fraction of its N."""
        return self.rows[row][self.columns.index(column)] / self.n

    def applies(self, dataset: str, eps: float) -> bool:
        return self.dataset == dataset and abs(self.eps - float(eps)) < 1e-12


def _eps(text: str) -> float:
    levels, _, scale = text.partition("/")
    return int(levels) / int(scale)


@functools.cache
def tables() -> Mapping[str, PaperTable]:
    """Every table of the paper, by name (`TABLES`), read once from `NUMBERS_FILE`."""
    raw = json.loads(NUMBERS_FILE.read_text(encoding="utf-8"))
    out = {}
    for name in TABLES:
        t = raw[name]
        columns = tuple(t.get("variants") or t["purifiers"])
        if name == "figure3":  # one adversarial number per column for all attacks
            rows = {CLEAN: list(t["clean"])} | {f"{ATTACK_LABELS[a]} {v}": list(t["adversarial"])
                                                for v in ("targeted", "untargeted") for a in ATTACK_LABELS}
        else:
            rows = {k: list(v) for k, v in t["rows"].items()}
        out[name] = PaperTable(name, t["dataset"], _eps(t["eps"]), int(t["n"]), columns, MappingProxyType(rows),
                               tuple(t["clean"]) if "clean" in t else None,
                               tuple(t["adversarial"]) if "adversarial" in t else None)
    return MappingProxyType(out)


def table(name: str) -> PaperTable:
    """The paper's table `name` (one of `TABLES`)."""
    if name not in TABLES:
        raise ValueError(f"unknown paper table {name!r}; expected one of {TABLES}")
    return tables()[name]


def table_for(name: str, dataset: str, eps: float) -> PaperTable | None:
    """The paper's table `name` when it applies to (`dataset`, `eps`), else None."""
    t = table(name)
    return t if t.applies(dataset, eps) else None


OTHER_BENCHMARK_FILE = Path(__file__).resolve().with_name("other_benchmark.json")


@functools.cache
def other_benchmark() -> Mapping:
    """The detectors_review benchmark's DR/FPR (%) of published detectors (`other_benchmark.json`): ``source``
    (who measured them, where), ``beside`` (the dataset and budget of ours they are shown beside) and ``rows``
    (detector -> {attack: "DR/FPR"}). Another benchmark's numbers, shown beside ours, never compared as if
    measured here."""
    data = json.loads(OTHER_BENCHMARK_FILE.read_text())
    return MappingProxyType({"source": data["source"], "beside": MappingProxyType(data["beside"]),
                             "rows": MappingProxyType(data["rows"])})
