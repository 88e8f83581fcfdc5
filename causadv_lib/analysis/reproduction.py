"""Reproduction at a glance: one row per claim of the paper's sections 4.2-5, with the paper's number, ours, and a
verdict, computed from the results JSON files of a run (``paper_figures/[smoke/]NN_name.json``) and the paper's
numbers (`causadv_lib.paper`). Nothing in a row is typed in: a claim names the results table that computes it,
and the verdict follows `VERDICT_RULE`.

    >>> from causadv_lib import config
    >>> from causadv_lib.analysis import reproduction
    >>> results = reproduction.load(config.figures_dir("smoke"))          # doctest: +SKIP
    >>> rows = reproduction.claims(results)                                # doctest: +SKIP
    >>> print(reproduction.markdown(rows, reproduction.beyond(results)))  # doctest: +SKIP

Also the "beyond the paper" block: per attack the best strategy's ROC-AUC (the paper's direction) beside maximum
softmax probability's (notebook 08), and notebook 08's causal-or-confident verdict.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .. import defences, paper
from ..text import markdown_text, percent
from ..vocab import CLEAN, DATASET_LABELS, MAX_CI, eps_label

__all__ = ["VERDICTS", "VERDICT_RULE", "TOLERANCE", "AUC_SEPARATES", "Item", "Claim", "load", "tolerance",
           "counted_verdict", "auc_verdict", "claims", "beyond", "markdown", "COLUMNS"]

#: the verdicts, best first
VERDICTS = ("reproduced", "partly", "not reproduced", "not tested")
#: the smallest tolerance on a share (fraction of N)
TOLERANCE = 0.10
#: a score "separates" an attack from the clean set at this ROC-AUC or above
AUC_SEPARATES = 0.75
#: the rule every verdict follows, shown on the page and in reproduction.md
VERDICT_RULE = (
    "A claim the paper backs with counts is **reproduced** when every comparison the paper makes (one group passes "
    "a test more often than another: clean against each attack, or one purifier against another) goes the same way "
    f"here, and each of our shares lies within max({TOLERANCE:.2f}, two binomial standard errors at our N) of the "
    "paper's share; **partly** when at least half of those comparisons go the paper's way (or, with no comparison, "
    "at least half of the shares are within tolerance); **not reproduced** otherwise. A claim the paper makes in "
    "words only is tested by the ROC-AUC of the score that measures it: **reproduced** when every attack reaches "
    f"AUC >= {AUC_SEPARATES:.2f}, **partly** when at least half do, **not reproduced** otherwise. **Not tested**: "
    "this run has no sample (or no budget) for the claim. Groups with N = 0 (an attack that never succeeded) are "
    "left out.")

#: the columns of the at-a-glance table
COLUMNS = ("claim", "paper", "ours", "verdict", "reason")


@dataclass(frozen=True)
class Item:
    """One share compared: the paper's count of N and ours (k of n)."""

    label: str
    paper_k: int
    paper_n: int
    k: int
    n: int

    @property
    def paper_share(self) -> float:
        return self.paper_k / self.paper_n

    @property
    def share(self) -> float:
        return self.k / self.n if self.n else math.nan


@dataclass(frozen=True)
class Claim:
    """One row of the at-a-glance table."""

    key: str          # anchor name
    section: str      # where the paper makes it
    text: str         # the claim, in a few words
    paper: str        # the paper's number
    ours: str         # ours, per dataset, with N
    verdict: str      # one of VERDICTS
    reason: str       # one line
    notebook: str     # the notebook that computes it
    table: str        # the results table (its cell on the page; NAME.md and NAME.csv in the folder)

    def as_row(self) -> dict:
        return {"claim": f"{self.text} ({self.section})", "paper": self.paper, "ours": self.ours,
                "verdict": self.verdict, "reason": self.reason, "notebook": self.notebook, "table": self.table}


# ------------------------------------------------------------------------------------------- reading
_NOTEBOOK_JSON = re.compile(r"^\d+_[A-Za-z0-9_]+\.json$")


def load(fig_dir) -> dict:
    """{notebook stem: results dict} of every results JSON ``NN_name.json`` in `fig_dir` (unreadable ones left
    out)."""
    out = {}
    for path in sorted(Path(fig_dir).glob("*.json")):
        if _NOTEBOOK_JSON.match(path.name):
            try:
                out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
    return out


def _table(results: dict, name: str, columns: bool = False):
    """(notebook, rows) of results table `name`, or (None, []); with `columns`, (notebook, rows, columns)."""
    for stem, res in results.items():
        t = (res.get("tables") or {}).get(name)
        if t is not None:
            rows = list(t.get("rows") or [])
            return (stem, rows, list(t.get("columns") or [])) if columns else (stem, rows)
    return (None, [], []) if columns else (None, [])


_COUNT = re.compile(r"^\s*(\d+)/(\d+)")


def _count(cell) -> tuple[int, int] | None:
    """(k, n) of a ``k/N`` cell (``"4/10 (6 uncounted)"`` -> (4, 10)), or None."""
    m = _COUNT.match(str(cell)) if cell is not None else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def _select(rows, dataset: str, eps: float) -> dict:
    """{samples: row} of the rows of (`dataset`, `eps`)."""
    label, e = DATASET_LABELS[dataset], eps_label(eps)
    return {r.get("samples"): r for r in rows if r.get("dataset") == label and r.get("eps") == e}


def _settings(rows) -> list[tuple[str, str]]:
    """(dataset label, eps label) of `rows`, in order of appearance."""
    seen = []
    for r in rows:
        k = (r.get("dataset"), r.get("eps"))
        if k not in seen:
            seen.append(k)
    return seen


# ------------------------------------------------------------------------------------------- verdicts
def tolerance(paper_share: float, n: int) -> float:
    """How far our share (of `n` samples) may lie from the paper's: max(`TOLERANCE`, two binomial standard errors
    of a share `paper_share` at `n`)."""
    return max(TOLERANCE, 2 * math.sqrt(paper_share * (1 - paper_share) / n)) if n else math.inf


def counted_verdict(items: list[Item], contrasts: list[tuple[str, str]]) -> tuple[str, str]:
    """(verdict, reason) of a counted claim by `VERDICT_RULE`. `contrasts`: (a, b) pairs of item labels where the
    paper's share of a is larger than b's."""
    by = {i.label: i for i in items}
    tested = [i for i in items if i.n]
    if not tested:
        return "not tested", "no sample in this run for the groups the paper counts"
    pairs = [(a, b) for a, b in contrasts if by[a].n and by[b].n]
    held = [(a, b) for a, b in pairs if by[a].share > by[b].share]
    within = [i for i in tested if abs(i.share - i.paper_share) <= tolerance(i.paper_share, i.n)]
    worst = max(tested, key=lambda i: abs(i.share - i.paper_share) - tolerance(i.paper_share, i.n))
    parts = []
    if pairs:
        parts.append(f"{len(held)} of {len(pairs)} of the paper's comparisons hold")
    parts.append(f"{len(within)} of {len(tested)} shares within tolerance")
    if len(within) < len(tested):
        parts.append(f"furthest: {worst.label} {percent(worst.share)} (N={worst.n}) against "
                     f"{percent(worst.paper_share)}")
    elif pairs and len(held) < len(pairs):
        a, b = next(p for p in pairs if p not in held)
        parts.append(f"e.g. {a} {percent(by[a].share)} is not above {b} {percent(by[b].share)}")
    if pairs and len(held) == len(pairs) and len(within) == len(tested):
        v = "reproduced"
    elif (2 * len(held) >= len(pairs)) if pairs else (2 * len(within) >= len(tested)):
        v = "partly"
    else:
        v = "not reproduced"
    return v, "; ".join(parts)


def auc_verdict(aucs: dict) -> tuple[str, str]:
    """(verdict, reason) of a claim the paper makes in words, from {group label: ROC-AUC or None}."""
    have = {k: v for k, v in aucs.items() if v is not None}
    if not have:
        return "not tested", "no attack with both clean and adversarial scores in this run"
    strong = [k for k, v in have.items() if v >= AUC_SEPARATES]
    weakest = min(have, key=have.get)
    v = ("reproduced" if len(strong) == len(have) else "partly" if 2 * len(strong) >= len(have)
         else "not reproduced")
    return v, (f"{len(strong)} of {len(have)} attacks reach AUC >= {AUC_SEPARATES:.2f}; lowest: {weakest} "
               f"{have[weakest]:.2f}")


def _row_contrasts(table: paper.PaperTable, rows: list[str]) -> list[tuple[str, str, str]]:
    """(column, a, b) where the paper's count of row a exceeds row b's in that column: clean against each attack."""
    out = []
    for j, col in enumerate(table.columns):
        if CLEAN not in table.rows:
            continue
        c = table.rows[CLEAN][j]
        for r in rows:
            if r == CLEAN:
                continue
            v = table.rows[r][j]
            if c > v:
                out.append((col, CLEAN, r))
            elif v > c:
                out.append((col, r, CLEAN))
    return out


def _item_label(row: str, col: str, table: paper.PaperTable) -> str:
    return row if len(table.columns) == 1 else f"{row} {col}"


def _span(items: list[Item], paper_side: bool) -> str:
    """``lo-hi%`` of the shares (ours or the paper's), with N."""
    if paper_side:
        ks = [i.paper_k for i in items]
        lo, hi = min(ks), max(ks)
        return (f"{lo}/{items[0].paper_n}" if lo == hi else f"{lo}-{hi}/{items[0].paper_n}")
    have = [i for i in items if i.n]
    if not have:
        return "none (N=0)"
    shares = [i.share for i in have]
    ns = [i.n for i in have]
    n = f"N={min(ns)}" if min(ns) == max(ns) else f"N={min(ns)}-{max(ns)}"
    lo, hi = percent(min(shares)), percent(max(shares))
    return f"{lo} ({n})" if lo == hi else f"{lo}-{hi} ({n})"


def _describe(items: list[Item], groups: dict, paper_side: bool) -> str:
    """`groups`: {name: [item labels]} -> ``name: span; name: span``."""
    by = {i.label: i for i in items}
    return "; ".join(f"{name} {_span([by[l] for l in labels], paper_side)}" for name, labels in groups.items()
                     if labels)


# ------------------------------------------------------------------------------------------- the claims
#: the counted claims from the strategy tables: (key, section, claim, paper table, results table)
_STRATEGY_CLAIMS = (
    ("s1-bim", "4.2, Strategy 1", "BIM leaves no causal filter, so S1 detects every BIM example on ImageNet",
     "strategy1", "table04_causal_existence"),
    ("table1", "4.2, Table 1", "the top-5 correlated prototypes include the predicted class more often for clean "
     "ImageNet samples than for most attacks", "table1", "table04_pearson_top5"),
    ("table2", "4.2, Table 2", "clean CIFAR-10 samples correlate with their prototype (rho >= 0.5) far more often "
     "than adversarial ones", "table2", "table04_pearson_rho"),
    ("table3", "4.2, Table 3", "adversarial CIFAR-10 examples have fewer zero filters than clean ones", "table3",
     "table04_zero_filters"),
    ("figure3", "4.2, Figure 3", "clean ImageNet samples share their top causal filters with their prototype "
     "more often than adversarial ones", "figure3", "table04_common_features"),
)


def _strategy_claim(results, key, section, text, table_name, results_table) -> Claim:
    t = paper.table(table_name)
    notebook, rows = _table(results, results_table)
    ours = _select(rows, t.dataset, t.eps)
    items, contrasts = [], []
    for j, col in enumerate(t.columns):
        for r, counts in t.rows.items():
            k_n = _count(ours.get(r, {}).get(col)) or (0, 0)
            items.append(Item(_item_label(r, col, t), counts[j], t.n, *k_n))
    if table_name == "strategy1":          # the paper: BIM flagged, no other attack detected
        bim = [i.label for i in items if i.label.startswith("BIM")]
        contrasts = [(a, i.label) for a in bim for i in items if not i.label.startswith("BIM")]
        groups = {"BIM flagged": bim, "FGSM, PGD flagged": [i.label for i in items if i.label not in bim]}
    else:
        contrasts = [(_item_label(a, c, t), _item_label(b, c, t)) for c, a, b in _row_contrasts(t, list(t.rows))]
        groups = {}
        for c in t.columns:
            suffix = "" if len(t.columns) == 1 else f" {c}"
            groups[f"clean{suffix}"] = [_item_label(CLEAN, c, t)]
            groups[f"attacks{suffix}"] = [_item_label(r, c, t) for r in t.rows if r != CLEAN]
    verdict, reason = counted_verdict(items, contrasts)
    setting = f"{DATASET_LABELS[t.dataset]} {eps_label(t.eps)}"
    ours_text = f"{setting}: {_describe(items, groups, False)}"
    other = _other_settings(rows, t)
    if other:
        ours_text += f" (not in the paper: {other})"
    return Claim(key, section, text, f"{setting}: {_describe(items, groups, True)}", ours_text, verdict, reason,
                 notebook or "", results_table)


def _other_settings(rows, t: paper.PaperTable) -> str:
    """Our shares of clean and attacks in the settings the paper does not report (first column)."""
    col = t.columns[0]
    out = []
    for d, e in _settings(rows):
        if (d, e) == (DATASET_LABELS[t.dataset], eps_label(t.eps)):
            continue
        by = {r.get("samples"): _count(r.get(col)) for r in rows if r.get("dataset") == d and r.get("eps") == e}
        clean = by.pop(CLEAN, None)
        adv = [Item(k, 0, 1, *v) for k, v in by.items() if v]
        part = (f"clean {_span([Item(CLEAN, 0, 1, *clean)], False)}, " if clean and CLEAN in t.rows else "")
        out.append(f"{d} {e} {part}attacks {_span(adv, False)}" if adv else f"{d} {e}: no sample")
    return "; ".join(out)


def _eps16_claim(results) -> Claim:
    t = paper.table("strategy1_eps16")
    notebook, rows = _table(results, "table04_causal_existence")
    ours = _select(rows, t.dataset, t.eps)
    items = [Item(r, c[0], t.n, *(_count(ours.get(r, {}).get(t.columns[0])) or (0, 0))) for r, c in t.rows.items()]
    verdict, reason = counted_verdict(items, [])
    if verdict == "not tested":
        budgets = sorted({e for d, e in _settings(rows) if d == DATASET_LABELS[t.dataset]})
        reason = (f"this run attacks {DATASET_LABELS[t.dataset]} at {', '.join(budgets) or 'no budget'} only, not "
                  f"at {eps_label(t.eps)}")
    setting = f"{DATASET_LABELS[t.dataset]} {eps_label(t.eps)}"
    return Claim("s1-pgd16", "4.2, Strategy 1", "at eps 16/255 PGD, like BIM, leaves no causal filter: S1 detects "
                 "it all", f"{setting}: PGD flagged {_span(items, True)}", f"{setting}: PGD flagged "
                 f"{_span(items, False)}", verdict, reason, notebook or "", "table04_causal_existence")


def _table4_claim(results) -> Claim:
    t = paper.table("table4")
    notebook, rows, header = _table(results, "table05_defences_imagenet", columns=True)
    ours = _select(rows, t.dataset, t.eps)
    columns = [c[len("paper "):] for c in header if c.startswith("paper ") and c != "paper N"]   # paper's order
    if not columns:             # no ImageNet defence table in this run: the paper's side alone
        columns = [defences.PURIFIERS[p].label for p in t.columns]
    items, contrasts = [], []
    if len(columns) == len(t.columns):
        for r, counts in t.rows.items():
            row_items = [Item(f"{r}, {col}", counts[j], t.n, *(_count(ours.get(r, {}).get(col)) or (0, 0)))
                         for j, col in enumerate(columns)]
            items += row_items
            contrasts += [(a.label, b.label) for a in row_items for b in row_items if a.paper_k > b.paper_k]
    verdict, reason = counted_verdict(items, contrasts) if notebook else ("not tested", "no Table 4 in this run")
    setting = f"{DATASET_LABELS[t.dataset]} {eps_label(t.eps)}"
    groups = {col.split(" (")[0].lower(): [i.label for i in items if i.label.endswith(col)] for col in columns}
    return Claim("table4", "4.3, Table 4", "input purifiers fail to recover the true class of adversarial examples; "
                 "spatial smoothing recovers the most", f"{setting}, recovered: {_describe(items, groups, True)}",
                 f"{setting}, recovered: {_describe(items, groups, False)}", verdict, reason, notebook or "",
                 "table05_defences_imagenet")


def _heatmap_claim(results) -> Claim:
    notebook, rows = _table(results, "table06_heatmap_roc")
    cosine = [r for r in rows if r.get("strategy") == "heatmap cosine"]
    paper_eps = {paper.table("table1").dataset: paper.table("table1").eps,
                 paper.table("table2").dataset: paper.table("table2").eps}
    settings = {DATASET_LABELS[d]: eps_label(e) for d, e in paper_eps.items()}
    chosen = [r for r in cosine if settings.get(r.get("dataset")) == r.get("eps")]
    aucs = {f"{r['dataset']} {r['attack']}": r.get("auc") for r in chosen}
    verdict, reason = auc_verdict(aucs)
    parts = []
    for d, e in settings.items():
        have = [r for r in chosen if r["dataset"] == d and r.get("auc") is not None]
        if have:
            a = [r["auc"] for r in have]
            span = f"{min(a):.2f}" if min(a) == max(a) else f"{min(a):.2f}-{max(a):.2f}"
            parts.append(f"{d} {e}: AUC {span} over {len(a)} attacks "
                         f"(N={min(r['n_adv'] for r in have)}-{max(r['n_adv'] for r in have)})")
        else:
            parts.append(f"{d} {e}: no scored attack")
    return Claim("heatmaps", "5, Figure 4", "causal heatmaps of adversarial examples are meaningless, unlike the "
                 "clean ones' (tested as: 1 - cosine between the sample's causal map and its prototype's)",
                 "no number (qualitative figure)", "; ".join(parts), verdict, reason, notebook or "",
                 "table06_heatmap_roc")


def claims(results: dict) -> list[Claim]:
    """The at-a-glance rows of a run's `results` (`load`), in the paper's order."""
    out = [_strategy_claim(results, *c) for c in _STRATEGY_CLAIMS[:1]]
    out.append(_eps16_claim(results))
    out += [_strategy_claim(results, *c) for c in _STRATEGY_CLAIMS[1:]]
    out += [_table4_claim(results), _heatmap_claim(results)]
    return out


# ------------------------------------------------------------------------------------- beyond the paper
#: the ROC block's columns
BEYOND_COLUMNS = ("dataset", "eps", "attack", "N clean/adv", "best strategy (paper's direction)", "its AUC",
                  "MSP AUC (low confidence = suspicious)", "MSP AUC (two-sided)")


def beyond(results: dict) -> dict:
    """{"rows": the best strategy per attack against maximum softmax probability, "columns", "verdict": notebook
    08's sentences, "notebooks": {part: notebook}} from the results of notebooks 04 and 08."""
    nb04, roc = _table(results, "table04_roc")
    nb08, conf = _table(results, "table08_confidence_roc")
    msp = {(r["dataset"], r["eps"], r["attack"], r["direction"]): r for r in conf if r.get("strategy") == "msp"}
    best = {}
    for r in roc:
        if r.get("strategy") == MAX_CI or r.get("auc") is None:
            continue
        k = (r["dataset"], r["eps"], r["attack"])
        if k not in best or r["auc"] > best[k]["auc"]:
            best[k] = r
    rows = []
    for k, r in best.items():
        m = msp.get(k + ("conventional",), {})
        two = msp.get(k + ("two-sided (clean)",), {})
        rows.append({"dataset": k[0], "eps": k[1], "attack": k[2], "N clean/adv": f"{r['n_clean']}/{r['n_adv']}",
                     "best strategy (paper's direction)": r["score"], "its AUC": f"{r['auc']:.2f}",
                     "MSP AUC (low confidence = suspicious)": _auc(m.get("auc")),
                     "MSP AUC (two-sided)": _auc(two.get("auc"))})
    verdict = []
    for defn, v in ((results.get(nb08) or {}).get("values", {}).get("verdict") or {}).items():
        verdict.append(f"{defn} CI: confidence + CI beats confidence alone (bootstrap interval above 0) in "
                       f"{v.get('CI adds', 0)} of {v.get('settings', 0)} attack settings; indistinguishable in "
                       f"{v.get('no detectable difference', 0)}, worse in {v.get('CI hurts', 0)}, confidence already "
                       f"at AUC >= 0.99 in {v.get('confidence at ceiling', 0)}, too few samples in "
                       f"{v.get('too few samples', 0)}; the best confidence score is at least as good as the best "
                       f"strategy in {v.get('confidence_at_least_as_good', 0)} of {v.get('compared', 0)}.")
    return {"rows": rows, "columns": list(BEYOND_COLUMNS), "verdict": verdict,
            "notebooks": {"roc": nb04 or "", "confidence": nb08 or ""}}


def _auc(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


# ------------------------------------------------------------------------------------------- Markdown
def markdown(rows: list[Claim], extra: dict | None = None, link=lambda c: f"{c.table}.md") -> str:
    """The at-a-glance table (and the beyond block) as Markdown; `link(claim)`: where each row's link points."""
    counts = {v: sum(c.verdict == v for c in rows) for v in VERDICTS}
    lines = ["# Reproduction at a glance", "",
             "One row per claim of the paper's sections 4.2-5, computed from this run's results JSON files "
             "(`causadv_lib.analysis.reproduction`). "
             + ", ".join(f"{n} {v}" for v, n in counts.items() if n) + ".", "",
             "| claim | paper | ours | verdict | reason | computed in |", "|---|---|---|---|---|---|"]
    for c in rows:
        r = c.as_row()
        lines.append("| " + " | ".join(markdown_text(r[k]) for k in COLUMNS)
                     + (f" | [{markdown_text(c.notebook)}]({link(c)}) |" if c.notebook else " | not run |"))
    lines += ["", "**Verdict rule.** " + VERDICT_RULE, ""]
    if extra and (extra["rows"] or extra["verdict"]):
        lines += ["## Beyond the paper", "",
                  "ROC-AUC over all thresholds (0.5 = chance), clean samples against each attack's successes: the "
                  "best of the paper's strategies per attack (chosen after seeing the results, so optimistic) beside "
                  "the maximum softmax probability (MSP), a baseline that needs no causal analysis "
                  f"(notebooks {extra['notebooks']['roc']} and {extra['notebooks']['confidence']})."]
        if extra["rows"]:
            lines += ["", "| " + " | ".join(extra["columns"]) + " |", "|" + "---|" * len(extra["columns"])]
            lines += ["| " + " | ".join(markdown_text(r[k]) for k in extra["columns"]) + " |" for r in extra["rows"]]
        if extra["verdict"]:
            lines += ["", "Causal or confident (notebook 08): does CI add to confidence?", ""]
            lines += [f"* {markdown_text(v)}" for v in extra["verdict"]]
        lines.append("")
    return "\n".join(lines)
