"""Notebook 07's library side (`analysis.detectors`, `experiment.fit_set`, `experiment.attacked`): the fit images
are disjoint from the evaluation images, a limited attack is the full run's first images, the table cells are the
metrics of the paired clean sources, and the conclusion's numbers are the rows'."""
import math

import numpy as np
import pytest

from causadv_lib import config, data, experiment, metrics
from causadv_lib.analysis import detectors as D
from causadv_lib.vocab import AttackKey


@pytest.fixture(scope="module")
def cifar_smoke():
    return experiment.setups("smoke", dataset="cifar10")[0]


def test_fit_set_is_disjoint_from_the_evaluation_sample_and_in_pool_order(cifar_smoke):
    fs = experiment.fit_set(cifar_smoke, 50)
    clean = experiment.clean(cifar_smoke)
    assert fs.n == 50 and not set(fs.ids) & set(clean.ids)
    pool = data.pool(cifar_smoke.eval_pool)
    idx = pool.index_of(list(fs.ids))
    assert np.all(np.diff(idx) > 0)                                  # pool order
    assert np.array_equal(fs.labels, pool.labels[idx])
    assert len(set(fs.labels.tolist())) == 10                       # spread over the class-ordered pool
    assert fs.pixels.dtype == np.float32 and fs.pixels.shape == (50, 32, 32, 3)
    assert experiment.fit_set(cifar_smoke, 50) is fs                 # memoised
    with pytest.raises(ValueError, match="n"):
        experiment.fit_set(cifar_smoke, 0)


def test_a_limited_attack_of_a_setup_budget_is_the_full_runs_first_images(cifar_smoke):
    key = AttackKey("fgsm", False, cifar_smoke.paper_eps)
    full = experiment.adversarial(cifar_smoke, key)
    part = experiment.attacked(cifar_smoke, key, limit=3)
    assert part.n_attacked == 3
    assert np.array_equal(part.source, full.source[:3])
    assert np.array_equal(part.attack_result.adversarial, full.attack_result.adversarial[:3])
    assert np.array_equal(part.ci_result.ci, full.ci_result.ci[:3])
    assert np.array_equal(part.success, full.success[:3])
    assert experiment.attacked(cifar_smoke, key, limit=10_000) is full     # every correct image: the same run
    assert experiment.attacked(cifar_smoke, key) is full


def test_an_attack_off_the_setup_budgets_runs_on_the_first_images(cifar_smoke):
    key = AttackKey("fgsm", False, 2 / 255)
    part = experiment.attacked(cifar_smoke, key, limit=4)
    clean = experiment.clean(cifar_smoke)
    assert np.array_equal(part.source, np.flatnonzero(clean.correct)[:4])
    delta = np.abs(part.attack_result.adversarial - clean.pixels[part.source]).max()
    assert 0 < delta <= 2 + 1e-4
    grid = experiment.attacked(cifar_smoke, key, limit=4, grid=True)
    assert np.array_equal(grid.attack_result.adversarial, np.round(grid.attack_result.adversarial))


def test_detection_cells_are_the_metrics_of_the_paired_sources():
    rng = np.random.default_rng(0)
    clean_scores = rng.normal(size=40)
    clean_flags = clean_scores > 1.5
    adv_scores = rng.normal(1.0, size=12)
    adv_flags = adv_scores > 1.5
    src = rng.choice(40, 12, replace=False)
    ok = np.ones(40, bool)
    ok[:4] = False                                                  # misclassified clean images: not in the FPR
    cell = D.detection_cells((clean_scores, clean_flags), (adv_scores, adv_flags), src, ok)
    assert cell["auc"] == metrics.roc_auc(clean_scores[src], adv_scores)
    assert cell["tpr_at_5fpr"] == metrics.tpr_at_fpr(clean_scores[src], adv_scores, 0.05)[0]
    assert cell["dr"] == adv_flags.mean() and cell["fpr"] == clean_flags[4:].mean() and cell["n"] == 12
    # a strategy that cannot judge an image leaves the pair out
    adv_nan = adv_scores.copy()
    adv_nan[0] = np.nan
    cell = D.detection_cells((clean_scores, clean_flags), (adv_nan, adv_flags), src, ok)
    assert cell["n"] == 11 and cell["auc"] == metrics.roc_auc(clean_scores[src[1:]], adv_scores[1:])
    # a detector that did not run: every score NaN, no verdicts
    none = D.detection_cells((np.full(40, np.nan), np.zeros(40, bool)), (np.full(12, np.nan), np.zeros(12, bool)),
                             src, ok)
    assert none["n"] == 0 and all(math.isnan(none[k]) for k in ("auc", "tpr_at_5fpr", "dr", "fpr"))


def _rows(auc: dict, attacks=("FGSM untargeted", "PGD untargeted", "BIM untargeted")):
    return [{"dataset": "cifar10", "model": "m", "eps": "8/255", "attack": a, "detector": d, "auc": v[i],
             "tpr_at_5fpr": v[i] / 2, "dr": v[i] / 2, "fpr": 0.05, "n": 10,
             "trained on this attack": d == D.PEER_ROWS["mahalanobis"] and a == "PGD untargeted"}
            for d, v in auc.items() for i, a in enumerate(attacks)]


def test_tables_best_strategy_and_matrix_from_rows():
    rows = _rows({"S1 causal filters": (0.9, 0.8, 0.7), "S3 zero filters": (0.2, 0.1, 0.9),
                  D.COMBINED: (0.95, 0.5, 0.8), "max softmax": (0.6, 0.2, 0.1),
                  D.PEER_ROWS["mahalanobis"]: (0.7, 0.99, 0.9)})
    assert D.best_strategy(rows) == "S1 causal filters"
    names, cols, values, marked = D.matrix(rows)
    assert cols == ["FGSM untargeted", "PGD untargeted", "BIM untargeted"]
    assert values[names.index(D.COMBINED)] == [0.95, 0.5, 0.8]
    assert marked == [(names.index(D.PEER_ROWS["mahalanobis"]), 1)]
    compact = {r["detector"]: r for r in D.compact(rows)}
    assert compact[D.COMBINED]["FGSM untargeted"] == "0.95 / 0.47"
    assert compact[D.PEER_ROWS["mahalanobis"]]["PGD untargeted"].endswith("*")
    other = D.other_benchmark_rows({("cifar10", 8 / 255): rows})
    assert any(r["source"].startswith("detectors_review") for r in other)
    assert D.other_benchmark_rows({("cifar10", 24 / 255): rows}) == []      # not the benchmark's setting
    assert {r["detector"]: r["FGSM"] for r in other if r["source"].startswith("this project")}[D.COMBINED] == "47.5/5.0"
    with pytest.raises(ValueError, match="strategy"):
        D.best_strategy([r for r in rows if r["detector"] == "max softmax"])


def test_conclusion_numbers_come_from_the_rows():
    rows = _rows({"S1 causal filters": (0.9, 0.8, 0.7), D.COMBINED: (0.95, 0.5, 0.8), "max softmax": (0.6, 0.2, 0.1),
                  "feature squeezing": (0.5, 0.6, 0.7)})
    adaptive = [{"dataset": "cifar10", "eps": "8/255", "iterations": it, "attacked": 20, "success rate": s,
                 "plain success rate": 0.5, "TPR": t, "plain TPR": 0.9, "defended accuracy": 1 - s}
                for it, s, t in ((10, 0.2, 0.6), (50, 0.4, 0.3), (200, 0.7, 0.1))]
    lines, record = D.conclusion(rows, adaptive, [], [], [], "paper")
    text = "\n".join(lines)
    s = record["settings"]["cifar10 8/255"]
    assert s["best_strategy"] == "S1 causal filters" and s["combined_beats_msp"] == 3
    assert s["combined_weak_attacks"] == ["PGD untargeted"]
    assert s["adaptive"]["iterations"] == 200
    assert "0.75" in text and "PGD untargeted" in text and "70%" in text and "200 iterations" in text
    assert not text.startswith("*Profile")
    assert D.conclusion(rows, [], [], [], [], "smoke")[0][0].startswith("*Profile `smoke`")


def test_every_setting_has_a_scale():
    for profile in config.PROFILES:
        for dataset in ("cifar10", "imagenet"):
            b = config.beyond(profile, dataset)
            assert b.fit_images > b.supervised_images > 0 and b.adaptive_images > 0
            assert list(b.adaptive_iterations) == sorted(set(b.adaptive_iterations))
    with pytest.raises(ValueError, match="profile"):
        config.beyond("nope", "cifar10")


def test_the_smoke_profile_runs_cifar10_unless_a_dataset_is_named():
    both = experiment.setups("smoke")
    run, left = D.setups_of(both, "smoke", None)
    assert [s.dataset for s in run] == ["cifar10"] and len(left) == 1 and "ImageNet" in left[0]
    assert [s.dataset for s in D.setups_of(both, "paper", None)[0]] == ["imagenet", "cifar10"]
    named = experiment.setups("smoke", dataset="imagenet")
    assert D.setups_of(named, "smoke", "imagenet") == (named, [])
