"""Table 4 (paper section 4.3): every purifier (`causadv_lib.defences`) on the clean set and on each attack's
successful examples of the shared experiment, the recovered true class counted by class index, beside the
clean accuracy after the same purifier and the paper's numbers (`causadv_lib.paper`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from .. import config, paper
from ..defences import PAPER_PURIFIERS, PURIFIERS, get, predict
from ..paper import PaperTable
from ..vocab import CLEAN, DATASET_LABELS, eps_label

__all__ = ["DefenceResult", "evaluate", "table_rows"]


@dataclass
class DefenceResult:
    """Predictions after each purifier, per group (``"Clean"`` or an `AttackKey`) of one budget."""

    setup: object
    eps: float
    purifiers: tuple[str, ...]
    labels: dict = field(default_factory=dict)       # group -> (n,) true classes
    predicted: dict = field(default_factory=dict)    # (group, purifier) -> (n,) predicted classes

    def correct(self, group, purifier) -> np.ndarray:
        return self.predicted[(group, purifier)] == self.labels[group]

    def count(self, group, purifier) -> int:
        return int(self.correct(group, purifier).sum())

    def n(self, group) -> int:
        return len(self.labels[group])

    def rate(self, group, purifier) -> float:
        n = self.n(group)
        return self.count(group, purifier) / n if n else math.nan

    @property
    def groups(self) -> list:
        return list(self.labels)


def evaluate(exp, eps: float | None = None, purifiers=PAPER_PURIFIERS, *, zm=None, seed: int = config.SEED,
             progress: bool = False) -> DefenceResult:
    """Every purifier on the clean evaluation set and on each attack's successful examples at `eps`.

    Without a purifier (``none``) on the experiment's own model (`zm` None), the predictions are the groups'
    (`Group.predicted`, from the CI pass on the same pixels: the same forward pass), not computed again.
    Clean: the correctly classified images of the clean set (the clean set of every comparison; their
    accuracy is 1 without a purifier, and after it the share still classified correctly). Attacks: the successful
    adversarial examples (`AdversarialSet.success`), recovered when predicted as their source's true
    class. Noise is indexed by the clean-set index, so an image and its adversarial examples share it.
    """
    eps = exp.setup.paper_eps if eps is None else float(eps)
    own = zm is None                     # the experiment's model, whose predictions its groups hold
    zm = exp.setup.zoo_model() if zm is None else zm
    names = tuple(get(p).name for p in purifiers)
    res = DefenceResult(exp.setup, eps, names)
    groups = [(g.id, g.pixels, g.labels, g.source, g.predicted) for g in exp.groups(eps)]
    todo = [(g, p) for g, *_ in groups for p in names]
    if progress:
        todo = tqdm(todo, desc=f"purifiers {exp.setup.label}, eps {eps_label(eps)}")
    data = {g: (x, y, i, known) for g, x, y, i, known in groups}
    for g, p in todo:
        x, y, idx, known = data[g]
        res.labels[g] = np.asarray(y, np.int64)
        if p == "none" and own:          # the experiment's CI pass already predicted these very pixels
            pred = known
        else:
            pred = predict(zm, x, p, seed=seed, index=idx).argmax(axis=1) if len(x) else np.zeros(0, np.int64)
        res.predicted[(g, p)] = pred.astype(np.int64)
    return res


def table_rows(res: DefenceResult, paper: PaperTable | None = None) -> list[dict]:
    """Rows in Table 4's layout: ``Clean (accuracy)``, then each attack; per purifier ``count/N``.

    The clean row counts the clean images still classified correctly after the purifier; attack rows the
    successful adversarial examples whose true class is recovered. `paper` (``paper.table_for("table4", ...)``):
    the paper's counts beside ours (``paper <label>``), with its N (300, attacked images, successful or not).
    """
    rows = []
    for g in res.groups:
        name = "Clean (accuracy)" if g == CLEAN else g.label
        row = {"dataset": DATASET_LABELS[res.setup.dataset], "eps": eps_label(res.eps),
               "samples": name, "N": res.n(g)}
        for p in res.purifiers:
            row[PURIFIERS[p].label] = f"{res.count(g, p)}/{res.n(g)}"
        if paper is not None:
            pv = paper.rows.get(g.label) if g != CLEAN else None
            row["paper N"] = paper.n if pv is not None else None
            for p, v in zip(paper.columns, pv or [None] * len(paper.columns)):
                row[f"paper {PURIFIERS[p].label}"] = v
        rows.append(row)
    return rows


def _attacks(res: DefenceResult, nonempty: bool = True) -> list:
    return [g for g in res.groups if g != CLEAN and (res.n(g) or not nonempty)]


def summary_rows(results: dict, purifiers) -> list[dict]:
    """Per (dataset, eps) of `results` ({(dataset, eps): DefenceResult}) and purifier: the clean accuracy after
    it and the share of the adversarial examples it recovers (pooled over the attacks, and the range)."""
    summary = []
    for (d, eps), res in results.items():
        attacks = _attacks(res, nonempty=False)
        for p in purifiers:
            n_adv = sum(res.n(g) for g in attacks)
            rec = sum(res.count(g, p) for g in attacks)
            rates = [res.rate(g, p) for g in attacks if res.n(g)]
            summary.append({"dataset": DATASET_LABELS[d], "eps": eps_label(eps), "purifier": PURIFIERS[p].label,
                            "clean accuracy": round(res.rate(CLEAN, p), 3), "recovered (all attacks)": f"{rec}/{n_adv}",
                            "recovered share": round(rec / n_adv, 3) if n_adv else None,
                            "lowest attack": round(min(rates), 3) if rates else None,
                            "highest attack": round(max(rates), 3) if rates else None})
    return summary


def _span(lo, hi) -> str:
    return f"{lo:.0%}" if f"{lo:.0%}" == f"{hi:.0%}" else f"{lo:.0%}-{hi:.0%}"


def comparison_lines(results: dict, purifiers) -> list[str]:
    """Sentences comparing our recovery with the paper's Table 4, then per (dataset, eps) the best purifier,
    the harsh ones (clean accuracy below 80%) and those whose recovery is no better than chance."""
    lines = []
    p4 = paper.table("table4")
    if (p4.dataset, p4.eps) in results:
        res = results[(p4.dataset, p4.eps)]
        attacks = _attacks(res)
        for k, p in enumerate(p4.columns):
            label = PURIFIERS[p].label
            paper_rates = [v[k] / p4.n for v in p4.rows.values()]
            ours = [res.rate(g, p) for g in attacks]
            if not ours:
                lines.append(f"* **{label}**: no successful adversarial example on ImageNet in this run.")
                continue
            acc = res.rate(CLEAN, p)
            more = "more" if max(ours) > max(paper_rates) else "no more"
            lines.append(f"* **{label}** (ImageNet, eps {eps_label(p4.eps)}): recovers "
                         f"{_span(min(ours), max(ours))} of the successful adversarial examples per attack here, "
                         f"against {_span(min(paper_rates), max(paper_rates))} of 300 in the paper ({more} than the "
                         f"paper's best), at a clean accuracy of {acc:.0%} after the purifier (the paper does not say).")
    for (d, eps), res in results.items():
        attacks = _attacks(res)
        if not attacks:
            continue
        pooled = lambda p: sum(res.count(g, p) for g in attacks) / sum(res.n(g) for g in attacks)  # noqa: E731
        harsh = [PURIFIERS[p].label for p in purifiers if res.rate(CLEAN, p) < 0.8]
        chance = [PURIFIERS[p].label for p in purifiers if p != "none" and pooled(p) >= res.rate(CLEAN, p)]
        best = max((p for p in purifiers if p != "none"), key=pooled)
        best_share = pooled(best)
        lines.append(f"* **{DATASET_LABELS[d]}, eps {eps_label(eps)}**: the purifier that recovers "
                     f"most is {PURIFIERS[best].label} ({best_share:.0%} of all successful examples, clean "
                     f"accuracy {res.rate(CLEAN, best):.0%}). "
                     + (f"Clean accuracy falls below 80% with {', '.join(harsh)}. " if harsh else
                        "Every purifier keeps at least 80% clean accuracy. ")
                     + (f"{' and '.join(chance)} {'recovers' if len(chance) == 1 else 'recover'} adversarial examples "
                        f"at least as often as {'it keeps' if len(chance) == 1 else 'they keep'} clean images right, so "
                        "that recovery says little about undoing the perturbation." if chance else
                        "Every purifier keeps clean images right more often than it recovers adversarial examples."))
    return lines


def cost_lines(results: dict) -> list[str]:
    """Per (dataset, eps) and paper purifier: adversarial examples recovered against clean images lost."""
    costs = []
    for (d, eps), res in results.items():
        attacks = _attacks(res)
        n_adv = sum(res.n(g) for g in attacks)
        for p in PAPER_PURIFIERS:
            lost = res.n(CLEAN) - res.count(CLEAN, p)
            rec = sum(res.count(g, p) for g in attacks)
            costs.append(f"* {DATASET_LABELS[d]}, eps {eps_label(eps)}, "
                         f"{PURIFIERS[p].label}: recovers {rec} of {n_adv} adversarial examples and turns "
                         f"{lost} of {res.n(CLEAN)} correctly classified clean images into errors "
                         f"(clean accuracy {res.rate(CLEAN, p):.0%}).")
    return costs


def recovered_record(results: dict, purifiers) -> dict:
    """{dataset/eps: {group: {purifier: [recovered, N]}}} for the results JSON."""
    return {f"{d}/{eps_label(eps)}": {
        ("Clean" if g == CLEAN else g.label): {p: [res.count(g, p), res.n(g)] for p in purifiers}
        for g in res.groups} for (d, eps), res in results.items()}
