"""The heatmap-consistency score on the shared experiment (its groups and ROC rows), and Figure 4's examples and
panels (paper section 5). The maps themselves are `causadv_lib.heatmaps`'.
"""
from __future__ import annotations

import numpy as np

from .. import zoo
from ..heatmaps import MEASURES, consistency, maps
from ..vocab import CLEAN, DATASET_LABELS, S2_RHO, eps_label
from .tables import roc_row

SCORE_NAMES = {"cosine": "heatmap: 1 - cosine(own, prototype)", "pearson": "heatmap: 1 - Pearson(own, prototype)"}


def consistency_scores(exp, eps: float | None = None, *, zm=None, measures=MEASURES) -> dict:
    """{(measure, group): (n,) agreement} for the clean set (``"Clean"``) and each attack's successes at `eps`.

    Clean: the correctly classified clean images; attacks: the successful adversarial examples; each with
    its own CI vector and predicted class from the experiment (NaN: no prototype of the class).
    """
    eps = exp.setup.paper_eps if eps is None else float(eps)
    zm = exp.setup.zoo_model() if zm is None else zm
    groups = [(g.id, g.pixels, g.ci, g.predicted) for g in exp.groups(eps)]
    out = {}
    for g, x, ci_, pred in groups:
        res = consistency(zm, x, ci_, np.asarray(pred, np.int64), exp.prototypes, measures=measures)
        for m in measures:
            out[(m, g)] = res[m]
    return out


def detection_rows(exp, *, zm=None, measures=MEASURES, scores: dict | None = None) -> list[dict]:
    """ROC rows of the consistency score (1 - agreement), in `analysis.tables.detection_rows`'s layout.

    `scores` (optional): {eps: `consistency_scores`(exp, eps)} already computed (not recomputed here).
    """
    rows = []
    for eps in exp.setup.eps:
        sc = scores[eps] if scores is not None and eps in scores else consistency_scores(exp, eps, zm=zm,
                                                                                         measures=measures)
        for m in measures:
            clean = 1.0 - sc[(m, CLEAN)]
            for key in exp.setup.keys(eps):
                if (m, key) not in sc:
                    continue
                rows.append(roc_row({"dataset": DATASET_LABELS[exp.setup.dataset], "eps": key.eps_label,
                                     "strategy": f"heatmap {m}", "score": SCORE_NAMES[m], "attack": key.label},
                                    clean, 1.0 - sc[(m, key)]))
    return rows


# ------------------------------------------------------------------------------------- Figure 4
#: the rows of each example in Figure 4: (method, row label)
FIGURE_ROWS = (("causal", "causal\n(CI-weighted)"), ("authors", "authors'\n(binary mask)"), ("gradcam", "Grad-CAM"))


def _short(name: str, width: int = 18) -> str:
    name = str(name).split(",")[0]
    return name if len(name) <= width else name[: width - 1] + "…"


def choose_examples(exp, n: int, eps: float | None = None) -> list[int]:
    """Clean-set indices of `n` examples for Figure 4: correctly classified, a class with a prototype, distinct
    classes; first those with the most successful attacks (at `eps`, default the paper's) whose adversarial class
    has a prototype too (so that its causal map can be drawn), then the most successful attacks, then list order."""
    cs = exp.clean
    eps = exp.setup.paper_eps if eps is None else float(eps)
    has_proto = np.zeros(exp.prototypes.num_classes, bool)
    has_proto[list(exp.prototypes.classes)] = True
    wins, drawable = exp.wins(eps), np.zeros(cs.n, int)
    for g in exp.groups(eps)[1:]:
        np.add.at(drawable, g.source[has_proto[g.predicted]], 1)
    ok = [int(i) for i in np.flatnonzero(cs.correct) if has_proto[cs.labels[i]]]
    chosen, classes = [], set()
    for i in sorted(ok, key=lambda i: (-drawable[i], -wins[i], i)):
        if int(cs.labels[i]) not in classes:
            chosen.append(i)
            classes.add(int(cs.labels[i]))
        if len(chosen) == n:
            break
    return chosen


def figure_panels(exp, chosen, *, zm=None, eps: float | None = None, colors=("#1a7f37", "#cf222e")):
    """Panels of Figure 4 for `plots.heatmap_grid`: per chosen clean image, one row per `FIGURE_ROWS` method;
    columns: the clean image, then each attack's successful adversarial example (an empty panel if it failed).

    Returns (panels, row_labels, records): records holds, per drawn sample, its clean index, attack label (or
    "clean"), predicted class and the cosine consistency shown in the corner of its causal panel.
    """
    zm = exp.setup.zoo_model() if zm is None else zm
    cs = exp.clean
    eps = exp.setup.paper_eps if eps is None else float(eps)
    keys = exp.setup.keys(eps)
    items = []   # (block, column, image, class, probability, own CI, adversarial?, title, clean index)
    for b, i in enumerate(chosen):
        items.append((b, 0, cs.pixels[i], int(cs.ci_result.predicted[i]), float(cs.ci_result.probability[i]),
                      cs.ci_result.ci[i], False,
                      f"clean: {_short(zm.class_names[cs.labels[i]])}", i))
        for j, key in enumerate(keys, start=1):
            adv = exp.adversarial.get(key)
            where = np.flatnonzero((adv.source == i) & adv.success) if adv is not None else []
            if len(where):
                m = int(where[0])
                items.append((b, j, adv.attack_result.adversarial[m], int(adv.ci_result.predicted[m]),
                              float(adv.ci_result.probability[m]),
                              adv.ci_result.ci[m], True, key.label, i))
    nrow = len(FIGURE_ROWS)
    panels = [[None] * (1 + len(keys)) for _ in range(len(chosen) * nrow)]
    row_labels = []
    for b, i in enumerate(chosen):
        row_labels += [f"{_short(zm.class_names[cs.labels[i]], 14)}\n{lab}" for _, lab in FIGURE_ROWS]
        for j, key in enumerate(keys, start=1):
            panels[b * nrow][j] = {"image": None, "text": f"{key.label}\nfailed", "title": ""}
    records = []
    if not items:
        return panels, row_labels, records
    x = np.stack([it[2] for it in items])
    cls = np.array([it[3] for it in items], np.int64)
    drawn = {m: maps(zm, x, exp.prototypes, cls, method=m) for m, _ in FIGURE_ROWS}
    agree = consistency(zm, x, np.stack([it[5] for it in items]), cls, exp.prototypes, measures=("cosine",))["cosine"]
    for n, (b, j, img, c, p, _ci, is_adv, title, i) in enumerate(items):
        head = f"{title}\n-> {_short(zm.class_names[c])} ({p:.2f})"
        for r, (m, _) in enumerate(FIGURE_ROWS):
            panel = {"image": img, "heatmap": drawn[m][n]}
            if r == 0:
                panel |= {"title": head, "color": colors[1] if is_adv else colors[0],
                          "note": None if np.isnan(agree[n]) else f"cos {agree[n]:.2f}"}
            panels[b * nrow + r][j] = panel
        records.append({"clean index": int(i), "id": cs.ids[i], "sample": title.split(":")[0] if not is_adv else title,
                        "predicted": zm.class_names[c], "cosine": None if np.isnan(agree[n]) else float(agree[n])})
    return panels, row_labels, records




def score_groups(scores: dict, keys, measure: str) -> dict:
    """{"clean" or attack label: 1 - agreement of the scored samples, clipped to [1e-4, 2] for a log-scale
    histogram} of one measure of `consistency_scores`."""
    groups = {"clean": scores[(measure, CLEAN)]} | {key.label: scores[(measure, key)] for key in keys}
    return {k: np.clip(1.0 - v[np.isfinite(v)], 1e-4, 2.0) for k, v in groups.items()}


def summary_lines(scores_by: dict, roc_rows: list[dict], experiments: dict) -> list[str]:
    """Per (dataset, eps) of `scores_by` ({(dataset, eps): consistency_scores}): the median agreement of clean
    and adversarial samples, the empty maps, and each measure's AUC range against strategy 2's."""
    lines = []
    for (d, eps), sc in scores_by.items():
        clean = sc[("cosine", CLEAN)]
        n_missing = int(np.isnan(clean).sum())
        clean = clean[np.isfinite(clean)]
        rows = [r for r in roc_rows if r["dataset"] == DATASET_LABELS[d] and r["eps"] == eps_label(eps)]
        s2 = {r["attack"]: r["auc"] for r in rows if r["strategy"] == S2_RHO and r["auc"] is not None}
        head = f"* **{DATASET_LABELS[d]}, eps {eps_label(eps)}**: "
        adv = np.concatenate([sc[("cosine", k)] for k in experiments[d].setup.keys(eps)])
        adv = adv[np.isfinite(adv)]
        if not len(clean) or not len(adv):
            lines.append(head + "too few scored samples in this run to compare groups.")
            continue
        parts = [f"median agreement (cosine) {np.median(clean):.4f} for clean samples against {np.median(adv):.4f} "
                 f"for the successful adversarial examples pooled; "
                 f"{np.mean(adv == 0):.0%} of the adversarial examples and {np.mean(clean == 0):.0%} of the clean "
                 "samples have agreement 0 (an empty own causal map: no causal filter of their own, or none active)"]
        for m in MEASURES:
            heat = [r for r in rows if r["strategy"] == f"heatmap {m}" and r["auc"] is not None]
            if not heat:
                continue
            better = [r["attack"] for r in heat if r["attack"] in s2 and r["auc"] > s2[r["attack"]]]
            lo, hi = f"{min(r['auc'] for r in heat):.2f}", f"{max(r['auc'] for r in heat):.2f}"
            auc = f"is {lo}" if lo == hi else f"spans {lo}-{hi}"
            name = "Pearson" if m == "pearson" else m
            vs = f" and beats strategy 2's CI-vector correlation on {len(better)} of {len(heat)} attacks" if s2 else ""
            parts.append(f"the {name} score's AUC {auc} across attacks{vs}")
        lines.append(head + "; ".join(parts)
                     + (f"; {n_missing} clean samples could not be scored (no prototype of their class)."
                        if n_missing else "."))
    return lines
