"""Notebook 07: CausAdv as a detector, judged as the field judges one (notes/evaluation-standard.md).

    >>> from causadv_lib.analysis import detectors
    >>> b = detectors.bench(setup)                      # every detector of `setup`, fitted on clean images only
    >>> rows = detectors.peer_rows(b, exp, 8 / 255)     # ROC-AUC, TPR at 5% FPR and DR/FPR per detector, attack

**Who is judged** (`Bench`, one per setup). Every detector is fitted on the same clean images
(`experiment.fit_set`: the evaluation pool without the evaluation sample, so disjoint from every image
judged below), by this project's code:

* `CausAdvDetector` with the experiment's prototypes (`experiment.prototype_set`: the same prototypes as the
  paper's tables, from the prototype pool), calibrated at `config.DETECTOR_FPR`: each strategy's score in
  the paper's direction (rows ``S1`` ... ``S4``), and the combined score (row ``CausAdv combined``);
* the peers of `causadv_lib.peers`: maximum softmax probability, feature squeezing, ART's subset scanning on
  the CI layer; and the supervised Mahalanobis detector, trained on untargeted PGD examples of the first
  ``supervised_images`` correctly classified fit images at the budget of the table (disjoint from the
  evaluation images), reported on the attack it was trained on and on the others (`SUPERVISED_ON`).

**What is measured** (`peer_rows`). For each attack, its *successful* adversarial examples (the experiment's
groups), each paired with its clean source: ROC-AUC (`metrics.roc_auc`), TPR at 5% FPR with the threshold on
those clean sources (`metrics.tpr_at_fpr`: conservative under ties), and the calibrated detector's own
verdicts: its detection rate on the adversarial examples and its false-positive rate on the correctly
classified clean images (DR/FPR, the detectors_review benchmark's measure). A strategy that cannot judge an
image (its predicted class has no prototype) leaves it out (``n`` counts the images judged).

The eps sweep (`sweep_rows`), the 8-bit attacks (`rounding_rows`) and the adaptive attacker
(`causadv_lib.adaptive`) reuse the same detectors. `conclusion` turns the rows into sentences.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from .. import adaptive, attacks, config, experiment, metrics, paper
from . import tables
from ..detector import CausAdvDetector
from ..peers import FeatureSqueezingDetector, MahalanobisDetector, MaxSoftmaxDetector, SubsetScanDetector
from ..vocab import ATTACK_LABELS, DATASET_LABELS as DATASET_LABEL, AttackKey, eps_label

__all__ = ["setups_of", "clean_scores", "ROWS", "PEER_ROWS", "STRATEGY_ROWS", "COMBINED", "SUPERVISED_ON", "Bench", "bench", "scores_of",
           "peer_rows", "compact", "other_benchmark_rows", "best_strategy", "sweep_rows", "rounding_rows",
           "conclusion"]

#: the row of each CausAdv score (`detector.SCORES`), in the detector's order
STRATEGY_ROWS = {"s1": "S1 causal filters", "s2_rho": "S2 rho", "s2_rank": "S2 rank", "s3": "S3 zero filters",
                 "s4": "S4 common filters"}
COMBINED = "CausAdv combined"
#: the peers' rows, in table order
PEER_ROWS = {"msp": "max softmax", "feature_squeezing": "feature squeezing", "subset_scan": "subset scanning",
             "mahalanobis": "Mahalanobis (supervised)"}
ROWS = (*STRATEGY_ROWS.values(), COMBINED, *PEER_ROWS.values())
#: the attack the supervised peer is trained on (untargeted PGD at the table's budget)
SUPERVISED_ON = ("pgd", False)


@dataclass(eq=False)
class Bench:
    """The detectors of one setup, fitted on `fit` (clean images disjoint from the evaluation images)."""

    setup: experiment.Setup
    fit: experiment.FitSet
    causadv: CausAdvDetector
    peers: dict                                     # row key of `PEER_ROWS` -> fitted unsupervised peer
    supervised: dict = field(default_factory=dict)  # eps -> fitted MahalanobisDetector (None: could not be fitted)
    not_run: dict = field(default_factory=dict)     # row -> why the detector could not be fitted (its cells: NaN)
    clean: dict = field(default_factory=dict)       # eps -> every row's scores on the clean set (`clean_scores`)

    @property
    def rows(self) -> tuple[str, ...]:
        return (*[STRATEGY_ROWS[k] for k in self.causadv.scores], COMBINED, *PEER_ROWS.values())


def setups_of(setups, profile: str, dataset: str | None) -> tuple[tuple, list[str]]:
    """(the setups notebook 07 runs, a Markdown line per setup it leaves out): with no dataset named, those of
    `config.BEYOND_DATASETS` at `profile`; a named dataset always runs."""
    if dataset is not None:
        return tuple(setups), []
    keep = config.BEYOND_DATASETS.get(profile, tuple(s.dataset for s in setups))
    run = tuple(s for s in setups if s.dataset in keep)
    left = [f"- {s.label}: not run at the `{profile}` profile (`config.BEYOND_DATASETS`; name it with "
            f"`dataset='{s.dataset}'`, or run the paper profile)" for s in setups if s.dataset not in keep]
    return run, left


@functools.cache
def bench(setup: experiment.Setup) -> Bench:
    """Every unsupervised detector of `setup`, fitted on `experiment.fit_set(setup)` (memoised)."""
    zm = setup.zoo_model()
    fs = experiment.fit_set(setup)
    det = CausAdvDetector(zm, fpr=config.DETECTOR_FPR, cache=True, progress=False)
    det.fit(fs.pixels, fs.labels, prototypes=experiment.prototype_set(setup))
    peers = {"msp": MaxSoftmaxDetector(zm, fpr=config.DETECTOR_FPR),
             "feature_squeezing": FeatureSqueezingDetector(zm, fpr=config.DETECTOR_FPR),
             "subset_scan": SubsetScanDetector(zm, fpr=config.DETECTOR_FPR)}
    for p in peers.values():
        p.fit(fs.pixels, fs.labels)
    return Bench(setup, fs, det, peers)


def bench_lines(benches) -> list[str]:
    """One Markdown line per bench: the model, how many fit images and where from, what each detector used."""
    out = []
    for b in benches:
        c = b.causadv.counts
        out.append(f"- **{b.setup.label}**: the detectors are fitted on {b.fit.n} clean images of pool "
                   f"`{b.setup.eval_pool}` outside the evaluation sample ({c['calibration_correct']} of them correctly "
                   f"classified: CausAdv's calibration set); CausAdv uses the experiment's prototypes "
                   f"({len(b.causadv.prototypes.classes)} classes) and the scores "
                   f"{', '.join(STRATEGY_ROWS[k] for k in b.causadv.scores)}; the peers: "
                   f"{', '.join(PEER_ROWS.values())}.")
    return out


def not_run_lines(benches) -> list[str]:
    """Why a detector has no numbers (a Markdown line per setup and detector; empty when all ran)."""
    return [f"- **{b.setup.label}**: {name} has no numbers here: {why}" for b in benches
            for name, why in b.not_run.items()]


def detector_rows(b: Bench, exp: experiment.Experiment) -> list[dict]:
    """Per CausAdv score and the combined one: its threshold at `config.DETECTOR_FPR` on the fit images and the
    false-positive rate of its flags on the correctly classified evaluation images (never seen by the fit)."""
    clean = clean_scores(b, exp, exp.setup.paper_eps)
    ok = exp.clean.correct
    th = b.causadv.thresholds
    rows = []
    for key, name in [*[(k, STRATEGY_ROWS[k]) for k in b.causadv.scores], ("combined", COMBINED)]:
        sc, flag = (v[ok] for v in clean[name])
        t, q = th[key]
        rows.append({"dataset": exp.setup.dataset, "model": exp.setup.model, "score": name,
                     "threshold": t, "tie fraction": q, "requested FPR": config.DETECTOR_FPR,
                     "evaluation images": int(np.sum(~np.isnan(sc))), "realised FPR": _rate(flag)})
    return rows


def supervised(b: Bench, eps: float) -> MahalanobisDetector:
    """The Mahalanobis detector of `b` at `eps`: trained on the successful untargeted PGD examples of the
    first ``supervised_images`` correctly classified fit images (attacks cached on disk)."""
    eps = float(eps)
    if eps not in b.supervised:
        zm = b.setup.zoo_model()
        maha = MahalanobisDetector(zm, fpr=config.DETECTOR_FPR)
        problem = maha.fit_problem(b.fit.labels)
        if problem:                      # too few images per class for class-conditional Gaussians
            b.not_run[PEER_ROWS["mahalanobis"]] = problem
            b.supervised[eps] = None
            return None
        n = config.beyond(b.setup.profile, b.setup.dataset).supervised_images
        ok = np.flatnonzero(_correct(b))[:n]
        attack, targeted = SUPERVISED_ON
        res = attacks.generate(zm, b.fit.pixels[ok], labels=b.fit.labels[ok], attack=attack, eps=eps,
                               targeted=targeted, seed=config.SEED, cache=True, progress=False)
        maha.fit(b.fit.pixels, b.fit.labels, x_adv=res.adversarial[res.success])
        b.supervised[eps] = maha
    return b.supervised[eps]


def _correct(b: Bench) -> np.ndarray:
    """(N,) bool: the fit images the model classifies correctly (the MSP peer's forward pass)."""
    report, _ = b.peers["msp"].detect(b.fit.pixels)
    return report["predicted"] == b.fit.labels


def scores_of(b: Bench, pixels: np.ndarray, eps: float, names=None) -> dict:
    """{row: (scores (N,) float64, flags (N,) bool)} of the detectors `names` (default every row of `b`) on
    `pixels` (the supervised peer's at `eps`). Scores are larger = more suspicious; NaN where a strategy
    cannot judge."""
    names = b.rows if names is None else tuple(names)
    if not len(pixels):
        return {k: (np.zeros(0), np.zeros(0, bool)) for k in names}
    out = {}
    if set(names) & {*STRATEGY_ROWS.values(), COMBINED}:
        report, _ = b.causadv.detect(pixels)
        out = {STRATEGY_ROWS[k]: (report[f"{k}_score"], report[f"{k}_flag"]) for k in b.causadv.scores}
        out[COMBINED] = (report["combined_score"], report["combined_flag"])
    for key, label in PEER_ROWS.items():
        if label in names:
            peer = supervised(b, eps) if key == "mahalanobis" else b.peers[key]
            if peer is None:
                out[label] = (np.full(len(pixels), np.nan), np.zeros(len(pixels), bool))
                continue
            rep, flag = peer.detect(pixels)
            out[label] = (rep["score"], flag)
    return {k: out[k] for k in names}


def clean_scores(b: Bench, exp: experiment.Experiment, eps: float) -> dict:
    """`scores_of` every row on the whole clean set of `exp` (the supervised peer's at `eps`), computed once per
    eps: the peer tables, the 8-bit tables, the sweep and the detector table all pair their examples with it."""
    eps = float(eps)
    if eps not in b.clean:
        b.clean[eps] = scores_of(b, exp.clean.pixels, eps)
    return b.clean[eps]


def _rate(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else math.nan


def detection_cells(clean: tuple, adv: tuple, src: np.ndarray, clean_ok: np.ndarray) -> dict:
    """The numbers of one (detector, attack): ROC-AUC and TPR at 5% FPR against the paired clean sources
    (`src` indexes `clean`), and the calibrated verdicts' DR (adversarial) and FPR (the correct clean images)."""
    (cs, cf), (a, af) = clean, adv
    c = cs[src]
    judged = ~np.isnan(c) & ~np.isnan(a)
    roc = metrics.detection_row(c[judged], a[judged], 0.05)      # NaN where nothing is judged
    ran = not (len(cs) and np.isnan(cs).all())                  # a detector that could not be fitted: no verdicts
    return {"n": int(judged.sum()), "auc": roc["auc"], "tpr_at_5fpr": roc["tpr_at_5fpr"],
            "dr": _rate(af) if ran else math.nan, "fpr": _rate(cf[clean_ok]) if ran else math.nan}


def peer_rows(b: Bench, exp: experiment.Experiment, eps: float, groups=None, meta: dict | None = None) -> list[dict]:
    """One row per (detector, attack) at `eps`: `detection_cells` on each attack's successful examples (`groups`:
    default the experiment's at `eps`; the 8-bit attacks' are `rounding_rows`'s)."""
    groups = exp.groups(eps) if groups is None else groups
    clean_all = exp.clean
    clean = clean_scores(b, exp, eps)
    rows = []
    for g in groups:
        if g.key is None:
            continue
        adv = scores_of(b, g.pixels, eps)
        for name in b.rows:
            cell = detection_cells(clean[name], adv[name], g.source, clean_all.correct)
            trained = name == PEER_ROWS["mahalanobis"] and (g.key.attack, g.key.targeted) == SUPERVISED_ON
            rows.append((meta or {}) | {"dataset": exp.setup.dataset, "model": exp.setup.model,
                                        "eps": eps_label(eps), "attack": g.key.label, "detector": name,
                                        "trained on this attack": trained} | cell)
    return rows


def compact(rows: list[dict]) -> list[dict]:
    """Rows of detectors, a column per attack: ``AUC / TPR@5%`` (two decimals; ``*`` the attack the
    supervised peer was trained on)."""
    return tables.pivot(rows, ("dataset", "eps", "detector"), lambda r, _: f"{_f(r['auc'])} / {_f(r['tpr_at_5fpr'])}"
                        + ("*" if r["trained on this attack"] else ""))


def matrix(rows: list[dict], value: str = "auc") -> tuple[list[str], list[str], list[list[float]], list[tuple]]:
    """(detectors, attacks, values[detector][attack], highlighted (i, j) cells: the supervised peer's training
    attack) of one table's rows, for `plots.value_matrix`."""
    names = list(dict.fromkeys(r["detector"] for r in rows))
    cols = list(dict.fromkeys(r["attack"] for r in rows))
    cell = {(r["detector"], r["attack"]): r for r in rows}
    values = [[cell[(n, c)][value] if (n, c) in cell else math.nan for c in cols] for n in names]
    marked = [(i, j) for i, n in enumerate(names) for j, c in enumerate(cols)
              if (n, c) in cell and cell[(n, c)]["trained on this attack"]]
    return names, cols, values, marked


def _f(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def other_benchmark_rows(peers: dict) -> list[dict]:
    """Our calibrated DR/FPR (%) for untargeted FGSM, BIM and PGD beside the detectors_review benchmark's
    (Aldahdooh et al. 2022: `paper.other_benchmark`), marked as that benchmark's. `peers`: {(dataset, eps):
    `peer_rows`}; ours are those of the dataset and budget the benchmark names (``beside``). Empty without them."""
    bench = paper.other_benchmark()
    rows = next((r for (d, eps), r in peers.items()
                 if d == bench["beside"]["dataset"] and eps_label(eps) == bench["beside"]["eps"]), [])
    if not rows:
        return []
    ours = {}
    for r in rows:
        if r["attack"].endswith("untargeted"):
            ours.setdefault(r["detector"], {})[r["attack"].split()[0]] = f"{100 * r['dr']:.1f}/{100 * r['fpr']:.1f}"
    out = [{"source": f"this project ({rows[0]['model']}, eps {rows[0]['eps']})", "detector": d, **cells}
           for d, cells in ours.items()]
    return out + [{"source": bench["source"], "detector": d, **cells} for d, cells in bench["rows"].items()]


def best_strategy(rows: list[dict]) -> str:
    """The CausAdv strategy row with the highest mean ROC-AUC over the attacks of `rows` (ties: table order)."""
    means = {}
    for name in STRATEGY_ROWS.values():
        aucs = [r["auc"] for r in rows if r["detector"] == name and not math.isnan(r["auc"])]
        if aucs:
            means[name] = float(np.mean(aucs))
    if not means:
        raise ValueError("best_strategy: no strategy row with a ROC-AUC among the rows given")
    return max(means, key=lambda k: (means[k], -list(STRATEGY_ROWS.values()).index(k)))


# ------------------------------------------------------------------------------------------ adaptive attacker
def adaptive_rows(b: Bench, exp: experiment.Experiment, eps: float) -> list[dict]:
    """The adaptive attacker (`adaptive.adaptive_attack`, weight 1) and the same loop without the detector term
    (weight 0, "plain") on the first ``adaptive_images`` correctly classified evaluation images at `eps`, judged
    by the real detector (`adaptive.evaluate_adaptive`): one row per iteration count of
    ``config.beyond(...).adaptive_iterations``."""
    setup = exp.setup
    scale = config.beyond(setup.profile, setup.dataset)
    cs = exp.clean
    src = np.flatnonzero(cs.correct)[:scale.adaptive_images]
    x, y = cs.pixels[src], cs.labels[src]
    judged = {}
    for name, weight in (("adaptive", 1.0), ("plain", 0.0)):
        res = adaptive.adaptive_attack(b.causadv, x, y, eps=eps, iterations=scale.adaptive_iterations,
                                       weight=weight, progress=False)
        judged[name] = adaptive.evaluate_adaptive(b.causadv, res, y)
    rows = []
    for t in scale.adaptive_iterations:
        a, p = judged["adaptive"][t], judged["plain"][t]
        rows.append({"dataset": setup.dataset, "model": setup.model, "eps": eps_label(eps), "iterations": t,
                     "attacked": a["n"], "success rate": a["attack_success"], "misclassified": a["misclassified"],
                     "TPR": a["tpr"], "defended accuracy": a["defended_accuracy"],
                     "combined score": a["combined_score"], "plain success rate": p["attack_success"],
                     "plain misclassified": p["misclassified"], "plain TPR": p["tpr"],
                     "plain defended accuracy": p["defended_accuracy"], "plain combined score": p["combined_score"]})
    return rows


# ------------------------------------------------------------------------------------------ eps sweep
#: the rows the eps sweep traces: the best strategy (chosen at the paper's budget), the combined score, MSP
def sweep_rows(b: Bench, exp: experiment.Experiment, best: str) -> list[dict]:
    """Per dataset, attack of `config.SWEEP_ATTACKS` (untargeted) and eps of `config.SWEEP_EPS`, on the first
    ``sweep_images`` correctly classified evaluation images: the attack's success rate and the ROC-AUC of the
    strategy `best` (chosen beforehand at the paper's budget, `best_strategy`), of the combined score and of
    maximum softmax probability, on the successful examples paired with their sources."""
    setup = exp.setup
    n = config.beyond(setup.profile, setup.dataset).sweep_images
    names = (best, COMBINED, PEER_ROWS["msp"])
    clean = clean_scores(b, exp, setup.paper_eps)
    rows = []
    for attack in config.SWEEP_ATTACKS:
        for eps in config.SWEEP_EPS:
            adv = experiment.attacked(setup, AttackKey(attack, False, eps), limit=n)
            g = experiment.group_of(exp.clean, adv)
            scored = scores_of(b, g.pixels, eps, names)
            row = {"dataset": setup.dataset, "model": setup.model, "attack": ATTACK_LABELS[attack],
                   "eps": eps_label(eps), "eps_value": eps, "attacked": adv.n_attacked, "successful": adv.n_success,
                   "success rate": adv.success_rate}
            for name, label in zip(names, ("best strategy", "combined", "max softmax")):
                row[f"AUC {label}"] = detection_cells(clean[name], scored[name], g.source, exp.clean.correct)["auc"]
            row["best strategy"] = best
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ 8-bit
def rounding_rows(exp: experiment.Experiment, eps: float) -> tuple[list[dict], list]:
    """(rows, groups): per attack at `eps`, the success rate of the float adversarial images, of the same
    images rounded to uint8 (`attacks.rounded_success`), and, on the first ``sweep_images`` correctly classified
    images, of the float attack and of the attack that stays on the 8-bit grid (`experiment.attacked` with
    ``grid=True``); groups: the 8-bit attacks' successful examples, for `peer_rows`."""
    setup = exp.setup
    zm = setup.zoo_model()
    n = config.beyond(setup.profile, setup.dataset).sweep_images
    rows, groups = [], []
    for key in setup.keys(eps):
        full = exp.adversarial[key]
        rounded = attacks.rounded_success(zm, full.attack_result)
        sub = experiment.attacked(setup, key, limit=n)      # the first n of `full`, not a new run
        grid = experiment.attacked(setup, key, limit=n, grid=True)
        rows.append({"dataset": setup.dataset, "model": setup.model, "eps": eps_label(eps), "attack": key.label,
                     "attacked": full.n_attacked, "float": full.success_rate,
                     "rounded to uint8": _rate(rounded),
                     "first n": grid.n_attacked, "float (first n)": sub.success_rate,
                     "8-bit grid (first n)": grid.success_rate})
        groups.append(experiment.group_of(exp.clean, grid))
    return rows, groups


# ------------------------------------------------------------------------------------------ conclusion
def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(xs)) if xs else math.nan


def _by_setting(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault((r["dataset"], r["eps"]), []).append(r)
    return out


def _setting_summary(rows: list[dict]) -> dict:
    """Mean ROC-AUC per detector; the best strategy, the best peer; wins of the combined detector."""
    auc = {d: _mean(r["auc"] for r in rows if r["detector"] == d) for d in dict.fromkeys(r["detector"] for r in rows)}
    strategies_ = {d: a for d, a in auc.items() if d in STRATEGY_ROWS.values() and not math.isnan(a)}
    peers_ = {d: a for d, a in auc.items() if d in PEER_ROWS.values() and not math.isnan(a)}
    cell = {(r["detector"], r["attack"]): r for r in rows}
    attacks_ = list(dict.fromkeys(r["attack"] for r in rows))
    best_peer = max(peers_, key=peers_.get) if peers_ else None

    def wins(a, b):
        return sum(1 for k in attacks_ if (a, k) in cell and (b, k) in cell
                   and cell[(a, k)]["auc"] > cell[(b, k)]["auc"])
    best = best_strategy(rows)
    weak = [k for k in attacks_ if (COMBINED, k) in cell and not cell[(COMBINED, k)]["auc"] >= 0.6]
    return {"mean_auc": auc, "best_strategy": best, "best_peer": best_peer, "attacks": len(attacks_),
            "combined_beats_msp": wins(COMBINED, PEER_ROWS["msp"]),
            "best_strategy_beats_msp": wins(best, PEER_ROWS["msp"]),
            "combined_beats_best_peer": wins(COMBINED, best_peer) if best_peer else 0,
            "combined_weak_attacks": weak,
            "combined_dr": [cell[(COMBINED, k)]["dr"] for k in attacks_ if (COMBINED, k) in cell],
            "combined_fpr": _mean(cell[(COMBINED, k)]["fpr"] for k in attacks_ if (COMBINED, k) in cell)}


def conclusion(peer_rows_: list[dict], attacker: list[dict], sweep: list[dict], rounding: list[dict],
               peer_rows_8bit: list[dict], profile: str) -> tuple[list[str], dict]:
    """Notebook 07's conclusion: (Markdown sentences, record), every number from the rows given."""
    lines, record = [], {"profile": profile, "settings": {}}
    if profile != "paper":
        lines.append(f"*Profile `{profile}`: a handful of images per set; the sentences below are computed as at the "
                     "paper's scale, but their numbers carry little weight.*\n")
    for (d, e), rows in _by_setting(peer_rows_).items():
        s = _setting_summary(rows)
        m = s["mean_auc"]
        eight = [r for r in peer_rows_8bit if r["dataset"] == d and r["eps"] == e]
        s8 = _setting_summary(eight) if eight else None
        record["settings"][f"{d} {e}"] = {k: v for k, v in s.items()} | (
            {"mean_auc_8bit": s8["mean_auc"]} if s8 else {})
        weak = ", ".join(s["combined_weak_attacks"]) or "none"
        dr = s["combined_dr"]
        lines.append(
            f"* **{DATASET_LABEL.get(d, d)}, eps {e}** (mean ROC-AUC over {s['attacks']} attacks): the best CausAdv "
            f"strategy, {s['best_strategy']}, {_f(m[s['best_strategy']])}; the combined detector {_f(m[COMBINED])}; "
            f"maximum softmax {_f(m[PEER_ROWS['msp']])}; the best peer, {s['best_peer']}, "
            f"{_f(m[s['best_peer']]) if s['best_peer'] else 'n/a'}. The combined detector beats maximum softmax on "
            f"{s['combined_beats_msp']} of {s['attacks']} attacks and the best peer on {s['combined_beats_best_peer']}; "
            f"its ROC-AUC stays below 0.6 on: {weak}. Calibrated at 5% FPR (realised "
            f"{100 * s['combined_fpr']:.0f}% on the evaluation images), it flags "
            f"{100 * min(dr):.0f}-{100 * max(dr):.0f}% of the successful examples."
            + (f" On 8-bit adversarial examples its mean ROC-AUC is {_f(s8['mean_auc'][COMBINED])}." if s8 else ""))
    for (d, e), rows in _by_setting(attacker).items():
        last = max(rows, key=lambda r: r["iterations"])
        record["settings"].setdefault(f"{d} {e}", {})["adaptive"] = last
        lines.append(
            f"* **Adaptive attacker, {DATASET_LABEL.get(d, d)}, eps {e}** ({last['attacked']} images, "
            f"{last['iterations']} iterations): it misclassifies and evades the combined detector on "
            f"{100 * last['success rate']:.0f}% of the images (the same loop without the detector term, a PGD on a "
            f"margin loss that stops at {adaptive.KAPPA:g} logits: {100 * last['plain success rate']:.0f}%); the "
            f"detector flags {_pct(last['TPR'])} of its misclassified examples (that loop's: "
            f"{_pct(last['plain TPR'])}); the defended system is right (correct or detected) on "
            f"{100 * last['defended accuracy']:.0f}%.")
    for d in dict.fromkeys(r["dataset"] for r in sweep):
        for attack in dict.fromkeys(r["attack"] for r in sweep if r["dataset"] == d):
            rows = [r for r in sweep if r["dataset"] == d and r["attack"] == attack]
            lo, hi = rows[0], rows[-1]
            lines.append(
                f"* **Eps sweep, {DATASET_LABEL.get(d, d)}, {attack}**: success {100 * lo['success rate']:.0f}% at "
                f"{lo['eps']} to {100 * hi['success rate']:.0f}% at {hi['eps']}; ROC-AUC of {lo['best strategy']} "
                f"{_f(lo['AUC best strategy'])} -> {_f(hi['AUC best strategy'])}, combined {_f(lo['AUC combined'])} -> "
                f"{_f(hi['AUC combined'])}, maximum softmax {_f(lo['AUC max softmax'])} -> {_f(hi['AUC max softmax'])}.")
    for (d, e), rows in _by_setting(rounding).items():
        fl, ro, gr = (_mean(r[k] for r in rows) for k in ("float", "rounded to uint8", "8-bit grid (first n)"))
        record["settings"].setdefault(f"{d} {e}", {})["rounding"] = {"float": fl, "rounded": ro, "grid": gr}
        lines.append(f"* **8-bit images, {DATASET_LABEL.get(d, d)}, eps {e}**: mean attack success {100 * fl:.0f}% as "
                     f"floats, {100 * ro:.0f}% once rounded to uint8, {100 * gr:.0f}% for the attacks that stay on the "
                     "8-bit grid.")
    return lines, record


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"
