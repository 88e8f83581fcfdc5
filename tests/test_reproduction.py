"""causadv_lib.analysis.reproduction: the at-a-glance rows from a run's results JSON and the paper's numbers."""
import json

from causadv_lib import config, paper
from causadv_lib.analysis import reproduction as R
from causadv_lib.vocab import CLEAN

ATTACKS = [f"{a} {v}" for v in ("targeted", "untargeted") for a in ("FGSM", "PGD", "BIM")]


def _items(shares, n=100):
    """Items whose share equals the paper's (k of n) unless `shares` says otherwise: {label: (paper k, our k)}."""
    return [R.Item(label, pk, 100, k, n) for label, (pk, k) in shares.items()]


def test_the_verdict_rule():
    both = {"Clean": (65, 65), "PGD": (27, 27)}
    assert R.counted_verdict(_items(both), [("Clean", "PGD")])[0] == "reproduced"
    # the direction holds but a share is far off: partly
    far = {"Clean": (65, 95), "PGD": (27, 27)}
    verdict, reason = R.counted_verdict(_items(far), [("Clean", "PGD")])
    assert verdict == "partly" and "1 of 1" in reason and "Clean 95%" in reason
    # the direction is reversed: not reproduced
    assert R.counted_verdict(_items({"Clean": (65, 20), "PGD": (27, 40)}), [("Clean", "PGD")])[0] == "not reproduced"
    # a group without samples is left out; none left: not tested
    assert R.counted_verdict([R.Item("Clean", 65, 100, 0, 0)], [])[0] == "not tested"
    # the tolerance: ten points, or two binomial standard errors at our N
    assert R.tolerance(0.5, 10_000) == R.TOLERANCE and abs(R.tolerance(0.5, 10) - 2 * (0.25 / 10) ** 0.5) < 1e-12
    assert R.auc_verdict({"a": 0.9, "b": 0.8})[0] == "reproduced"
    assert R.auc_verdict({"a": 0.9, "b": 0.5})[0] == "partly"
    assert R.auc_verdict({"a": 0.6, "b": 0.5, "c": 0.9})[0] == "not reproduced"
    assert R.auc_verdict({"a": None})[0] == "not tested"
    assert "max(0.10" in R.VERDICT_RULE and str(R.AUC_SEPARATES) in R.VERDICT_RULE


def _strategy_rows(table, label, fraction):
    """Rows of a notebook-04 table for the paper's setting of `table`, each group passing `fraction(group)`."""
    t = paper.table(table)
    rows = []
    for g in [CLEAN, *ATTACKS]:
        row = {"dataset": label, "eps": "8/255" if t.dataset == "imagenet" else "24/255", "samples": g, "N": 300}
        for c in t.columns:
            row[c] = f"{round(300 * fraction(g, c))}/300"
        rows.append(row)
    return rows


def test_claims_follow_the_results_files(tmp_path):
    """A run whose counts are the paper's shares gets "reproduced" on the strategy tables; the rows name the
    notebook and table that computed them, and a budget the run lacks is "not tested"."""
    def as_paper(table):
        t = paper.table(table)
        return lambda g, c: t.share(g, c) if g in t.rows else 0.0
    tables = {"table04_pearson_top5": _strategy_rows("table1", "ImageNet", as_paper("table1")),
              "table04_pearson_rho": _strategy_rows("table2", "CIFAR-10", as_paper("table2")),
              "table04_zero_filters": _strategy_rows("table3", "CIFAR-10", as_paper("table3")),
              "table04_common_features": _strategy_rows("figure3", "ImageNet", as_paper("figure3")),
              "table04_causal_existence": _strategy_rows("strategy1", "ImageNet", as_paper("strategy1"))}
    (tmp_path / "04_detection_strategies.json").write_text(json.dumps(
        {"tables": {k: {"columns": list(v[0]), "rows": v} for k, v in tables.items()}, "values": {}}))
    (tmp_path / "not_a_notebook.json").write_text("{}")
    results = R.load(tmp_path)
    assert list(results) == ["04_detection_strategies"]
    by = {c.key: c for c in R.claims(results)}
    assert [c.key for c in R.claims(results)] == ["s1-bim", "s1-pgd16", "table1", "table2", "table3", "figure3",
                                                  "table4", "heatmaps"]
    for key in ("s1-bim", "table1", "table2", "table3"):
        assert by[key].verdict == "reproduced", (key, by[key].reason)
        assert by[key].notebook == "04_detection_strategies" and by[key].table.startswith("table04_")
    assert by["s1-pgd16"].verdict == "not tested" and "16/255" in by["s1-pgd16"].reason
    assert by["table4"].verdict == by["heatmaps"].verdict == "not tested"
    assert "169/300" in by["table1"].paper and "N=300" in by["table1"].ours
    md = R.markdown(list(by.values()), R.beyond(results))
    assert md.count("\n| ") == 1 + len(by) and "(table04_pearson_rho.md)" in md and R.VERDICT_RULE[:40] in md


def test_the_smoke_run_has_one_row_per_claim():
    figs = config.figures_dir("smoke")
    results = R.load(figs)
    rows = R.claims(results)
    assert len(rows) == 8 and all(c.verdict in R.VERDICTS for c in rows)
    if "04_detection_strategies" in results:
        assert all(c.notebook for c in rows if c.key != "s1-pgd16" or c.verdict != "not tested")
