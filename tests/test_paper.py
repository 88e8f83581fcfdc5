"""causadv_lib.paper: the paper's numbers, read from paper_numbers.json, against the transcription in shared/."""
import json

import pytest

from causadv_lib import config, paper
from causadv_lib.vocab import CLEAN

REF = config.PROJECT_ROOT.parent / "shared" / "paper" / "paper-numbers.json"
ORDER = [("targeted", "FGSM"), ("targeted", "PGD"), ("targeted", "BIM"),
         ("untargeted", "FGSM"), ("untargeted", "PGD"), ("untargeted", "BIM")]


@pytest.fixture(scope="module")
def ref():
    if not REF.exists():
        pytest.skip("paper-numbers.json not beside the project")
    return json.loads(REF.read_text())


def _as_list(v):
    return v if isinstance(v, list) else [v]


@pytest.mark.parametrize("table, key", [("table1", "table1_imagenet_pearson_top5"),
                                        ("table2", "table2_cifar_pearson_rho_ge_0.5"),
                                        ("table3", "table3_cifar_zero_filters")])
def test_strategy_tables_match_the_transcription(ref, table, key):
    ours, theirs = paper.table(table), ref[key]
    assert ours.n == theirs["n"]
    assert ours.rows[CLEAN] == _as_list(theirs["clean"])
    for variant, attack in ORDER:
        assert ours.rows[f"{attack} {variant}"] == _as_list(theirs[variant][attack])


def test_figure3_matches_the_transcription(ref):
    fig, ours = ref["figure3_imagenet_common_causal_features"], paper.table("figure3")
    assert list(ours.clean) == fig["clean"] and list(ours.adversarial) == fig["adversarial"]
    assert ours.rows[CLEAN] == fig["clean"] and ours.rows["BIM untargeted"] == fig["adversarial"]


def test_strategy1_matches_the_transcription(ref):
    """The paper gives strategy 1 in words: BIM (both variants) all 300 flagged at eps 8, no other attack
    detected; PGD likewise at eps 16."""
    text = ref["strategy1_causal_feature_existence"]["imagenet"]
    assert "all 300 samples have no causal filter" in text and "no other attack detected" in text
    assert "PGD at eps 16 likewise" in text
    s1, s16 = paper.table("strategy1"), paper.table("strategy1_eps16")
    assert (s1.n, s1.dataset, s1.eps, s1.columns) == (300, "imagenet", 8 / 255, ("S1(n=0)",))
    assert {k: v[0] for k, v in s1.rows.items()} == {f"{a} {v}": 300 if a == "BIM" else 0 for v, a in ORDER}
    assert CLEAN not in s1.rows                     # the paper gives no clean count for strategy 1
    assert (s16.n, s16.eps) == (300, 16 / 255) and {k: v[0] for k, v in s16.rows.items()} == {
        "PGD targeted": 300, "PGD untargeted": 300}


def test_table4_matches_the_transcription(ref):
    theirs, ours = ref["table4_imagenet_defences_recovered_true_label"], paper.table("table4")
    assert ours.n == theirs["n"] and len(theirs["columns"]) == len(ours.columns)
    for variant in ("targeted", "untargeted"):
        for attack, counts in theirs[variant].items():
            assert ours.rows[f"{attack} {variant}"] == counts


def test_where_a_table_applies():
    assert paper.table_for("table3", "cifar10", 24 / 255) is paper.table("table3")
    assert paper.table_for("table3", "cifar10", 8 / 255) is None
    assert paper.table_for("table1", "cifar10", 8 / 255) is None
    assert paper.table("table2").share(CLEAN, "S2(rho>=0.5)") == 0.65
    with pytest.raises(ValueError, match="unknown paper table 'table9'"):
        paper.table("table9")
