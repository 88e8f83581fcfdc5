"""The four detection strategies on hand-made CI vectors whose answers are known."""
import subprocess
import sys
import warnings

import numpy as np
import pytest

from causadv_lib import config
from causadv_lib import strategies as st
from causadv_lib.ci import CIResult
from causadv_lib.prototypes import Prototypes


def f32(rows):
    return np.asarray(rows, dtype=np.float32)


# --------------------------------------------------------------------------- S1

def test_s1_counts_positive_ci_only():
    ci = f32([[0.3, 0.0, -0.1, 0.2, 0.5, -0.0],      # 3 causal filters
              [0.0, 0.0, -0.2, 0.0, -0.0, 0.0],      # none
              [1e-9, 0.0, 0.0, 0.0, 0.0, 0.0]])      # 1 (tiny but > 0)
    r0 = st.s1_causal_existence(ci, n=0)
    assert r0.statistic.tolist() == [3, 0, 1]
    assert r0.flagged.tolist() == [False, True, False]
    assert r0.score.tolist() == [-3, 0, -1]
    r3 = st.s1_causal_existence(ci, n=3)
    assert r3.flagged.tolist() == [True, True, True]     # "|F_W| <= n"
    assert st.s1_causal_existence(ci, n=2).flagged.tolist() == [False, True, True]
    assert r0.name == "S1(n=0)" and r0.params["n"] == 0
    assert st.paper_count(r0) == 1 and r0.paper_side == "flagged"   # the paper reports detections for S1
    assert r0.counted.all() and r0.n_uncounted == 0


# --------------------------------------------------------------------------- S2

def _protos():
    return f32([[0.5, 0.1, 0.0, -0.1, 0.2],
                [-0.1, 0.4, 0.3, 0.0, 0.0],
                [0.0, 0.0, 0.1, 0.6, 0.2],
                [0.2, -0.2, 0.2, -0.2, 0.9]])


def test_s2_sample_identical_to_its_prototype_has_rho_one_and_rank_one():
    proto = _protos()
    pred = np.arange(4)
    thr = st.s2_pearson(proto, pred, proto, mode="threshold", threshold=0.5)
    np.testing.assert_allclose(thr.statistic, 1.0, atol=1e-12)
    assert not thr.flagged.any()
    top = st.s2_pearson(proto, pred, proto, mode="topk", k=1)
    assert top.statistic.tolist() == [1, 1, 1, 1]
    assert not top.flagged.any()


def test_s2_threshold_matches_numpy_corrcoef():
    rng = np.random.default_rng(0)
    proto = rng.normal(size=(3, 20)).astype(np.float32)
    ci = rng.normal(size=(6, 20)).astype(np.float32)
    pred = np.array([0, 1, 2, 0, 1, 2])
    res = st.s2_pearson(ci, pred, proto, mode="threshold", threshold=0.1)
    want = np.array([np.corrcoef(ci[i].astype(float), proto[pred[i]].astype(float))[0, 1] for i in range(6)])
    np.testing.assert_allclose(res.statistic, want, atol=1e-10)
    np.testing.assert_allclose(res.score, -want, atol=1e-10)
    assert res.flagged.tolist() == (want < 0.1).tolist()
    np.testing.assert_allclose(st.pearson_matrix(ci, proto),
                               np.corrcoef(ci.astype(float), proto.astype(float))[:6, 6:], atol=1e-10)


def test_s2_threshold_boundary_rho_equal_tau_passes():
    # x = (1, 0, 0, 0, 0) vs p = (1, 1, 0, 0, 0) -> rho = 0.6123...; pick tau equal to the computed rho
    ci, proto = f32([[1, 0, 0, 0, 0]]), f32([[1, 1, 0, 0, 0]])
    rho = st.s2_pearson(ci, [0], proto, mode="threshold", threshold=0.0).statistic[0]
    assert rho == pytest.approx(np.corrcoef([1, 0, 0, 0, 0], [1, 1, 0, 0, 0])[0, 1])
    assert not st.s2_pearson(ci, [0], proto, mode="threshold", threshold=rho).flagged[0]   # natural if rho >= tau
    assert st.s2_pearson(ci, [0], proto, mode="threshold", threshold=np.nextafter(rho, 2)).flagged[0]


def test_s2_topk_rank_and_verdict():
    proto = _protos()
    # a sample shaped like prototype 2; its correlations order the classes 2, 3, 1, 0
    ci = proto[[2]] * 2 + f32([[0.01, 0, 0, 0, 0]])
    rho = st.pearson_matrix(ci, proto)[0]
    assert np.argsort(-rho).tolist() == [2, 3, 1, 0]
    ranks = [st.s2_pearson(ci, [c], proto, mode="topk", k=2).statistic[0] for c in range(4)]
    assert ranks == [4, 3, 1, 2]
    res = st.s2_pearson(ci, [1], proto, mode="topk", k=2)
    assert res.flagged[0] and res.score[0] == 3                  # predicted class 3rd: not in the top 2
    assert not st.s2_pearson(ci, [1], proto, mode="topk", k=3).flagged[0]
    assert not st.s2_pearson(ci, [2], proto, mode="topk", k=1).flagged[0]
    # the sample's own class's prototype takes part (authors' code), so an exact copy is always rank 1
    assert st.s2_pearson(proto, np.arange(4), proto, mode="topk", k=1).statistic.tolist() == [1, 1, 1, 1]


def test_s2_constant_vectors_have_rho_zero_without_warnings():
    proto = _protos()
    ci = f32([[0, 0, 0, 0, 0], [0.2, 0.2, 0.2, 0.2, 0.2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rho = st.pearson_matrix(ci, proto)
        thr = st.s2_pearson(ci, [0, 1], proto, mode="threshold")
        top = st.s2_pearson(ci, [0, 1], proto, mode="topk", k=3)
    assert np.array_equal(rho, np.zeros((2, 4)))
    assert thr.statistic.tolist() == [0.0, 0.0] and thr.flagged.all()
    # a CI vector with no information ties with every prototype and ranks last: flagged (Table 1: BIM all detected)
    assert top.statistic.tolist() == [4, 4] and top.flagged.all()
    # constant prototype
    res = st.s2_pearson(f32([[0.1, 0.2, 0.3]]), [0], f32([[0, 0, 0]]), mode="threshold")
    assert res.statistic[0] == 0.0


def test_s2_tiny_ci_values_do_not_underflow():
    ci = f32([[1e-30, 0, 2e-30, 0]])
    proto = f32([[1, 0, 2, 0]])
    assert st.s2_pearson(ci, [0], proto, mode="threshold").statistic[0] == pytest.approx(1.0)


def test_missing_prototype_is_not_counted():
    proto = _protos()
    proto[1] = np.nan
    ci = np.vstack([proto[0], proto[2], proto[2]])
    pred = np.array([0, 1, 2])
    for res in (st.s2_pearson(ci, pred, proto, mode="topk", k=1),
                st.s2_pearson(ci, pred, proto, mode="threshold"),
                st.s4_common_features(ci, pred, proto, n=1, m=1)):
        assert res.counted.tolist() == [True, False, True]
        assert not res.flagged[1] and np.isnan(res.score[1]) and np.isnan(res.statistic[1])
        assert res.n_uncounted == 1 and res.n_passed == 2
        assert st.paper_count(res) == 2 and st.paper_fraction(res) == "2/3"
    # the missing class takes no part in the ranking of the others
    top = st.s2_pearson(ci, pred, proto, mode="topk", k=1)
    assert top.statistic[0] == 1 and top.statistic[2] == 1


# --------------------------------------------------------------------------- S3

def test_s3_counts_exact_zeros_and_flags_few_zeros():
    ci = f32([[0, 0, 0, 0, 0, 0, 0.1, -0.1],        # 6 zeros
              [0, -0.0, 0, 0, 0, 1e-12, -1e-12, 1],  # 5 zeros (-0.0 counts; 1e-12 does not)
              [0.1, 0.2, -0.3, 0.4, 0.5, 0.6, 0.7, 0.8]])
    r = st.s3_zero_effect(ci, n=5)
    assert r.statistic.tolist() == [6, 5, 0]
    assert r.flagged.tolist() == [False, True, True]   # Table 3 counts "more than n" zeros as clean
    assert r.score.tolist() == [-6, -5, 0]
    assert st.paper_count(r) == 1 and r.paper_side == "passed"
    assert st.s3_zero_effect(ci, n=4).flagged.tolist() == [False, False, True]


# --------------------------------------------------------------------------- S4

def test_top_causal_ranking_and_tie_breaking():
    ci = f32([[0.1, 0.5, 0.5, -1, 0.0, 0.5, 0.2]])
    idx, present = st.top_causal(ci, 5)
    assert idx[0].tolist() == [1, 2, 5, 6, 0]           # ties at 0.5 by filter index
    assert present[0].all()
    idx, present = st.top_causal(ci, 7)
    assert present[0].tolist() == [True] * 5 + [False] * 2   # only CI > 0 filters count
    # reversing the filter order reverses the tie order: the rule is the index, not the position seen
    perm = np.arange(7)[::-1]
    idx_rev, _ = st.top_causal(ci[:, perm], 3)
    assert perm[idx_rev[0]].tolist() == [5, 2, 1]


def test_top_causal_is_the_head_of_a_stable_sort():
    """top_causal sorts only each row's n best filters: the same indices as a stable sort of whole rows, on rows
    with ties, zeros, negatives and fewer than n causal filters."""
    rng = np.random.default_rng(0)
    for trial in range(400):
        rows, k = int(rng.integers(0, 6)), int(rng.integers(1, 40))
        ci = (rng.choice([-1.0, 0.0, 0.25, 0.5, 1.0], size=(rows, k)) if trial % 2 else rng.normal(size=(rows, k)))
        ci[rng.random(ci.shape) < 0.3] = 0
        for n in (1, 2, 3, 10, 50):
            keys = np.where(ci > 0, -ci, np.inf)
            idx, present = st.top_causal(ci, n)
            want = np.argsort(keys, axis=1, kind="stable")[:, :n]
            assert np.array_equal(idx, want), (trial, n)
            assert np.array_equal(present, np.take_along_axis(ci, want, axis=1) > 0)


def test_s4_overlap_on_crafted_rankings():
    K = 12
    proto = np.zeros((1, K), np.float32)
    proto[0, [0, 1, 2, 3]] = [0.9, 0.8, 0.7, 0.6]       # top-3 {0, 1, 2}, top-4 {0, 1, 2, 3}
    ci = np.zeros((4, K), np.float32)
    ci[0, [2, 1, 3]] = [0.5, 0.4, 0.3]                  # top-3 {2, 1, 3} within the top-4
    ci[1, [2, 7, 8]] = [0.5, 0.4, 0.3]                  # one in common
    ci[2, [9, 10, 11]] = [0.5, 0.4, 0.3]                # none
    ci[3, [0, 1]] = [0.5, 0.4]                          # only 2 causal filters, both in the prototype's top
    pred = np.zeros(4, int)
    sub = st.s4_common_features(ci, pred, proto, n=3, m=4)
    assert sub.statistic.tolist() == [3, 1, 0, 2]
    assert sub.flagged.tolist() == [False, True, True, True]
    assert sub.score.tolist() == [-3, -1, 0, -2]
    inter = st.s4_common_features(ci, pred, proto, n=3, m=4, rule="intersect")
    assert inter.flagged.tolist() == [False, False, True, False]
    two = st.s4_common_features(ci, pred, proto, n=3, m=4, rule=2)
    assert two.flagged.tolist() == [False, True, True, False]
    # m = 3 drops filter 3 from the prototype's set
    assert st.s4_common_features(ci, pred, proto, n=3, m=3).statistic.tolist() == [2, 1, 0, 2]
    assert st.paper_count(sub) == 1


def test_s4_prototype_without_causal_filters_shares_nothing():
    ci = f32([[0.3, 0.2, 0.1]])
    res = st.s4_common_features(ci, [0], f32([[0, -0.1, 0]]), n=1, m=3, rule="intersect")
    assert res.counted[0] and res.flagged[0] and res.statistic[0] == 0


def test_s4_is_deterministic_under_ties():
    rng = np.random.default_rng(1)
    ci = rng.choice(np.float32([0, 0.1, 0.2]), size=(20, 30))
    proto = rng.choice(np.float32([0, 0.1, 0.2]), size=(3, 30))
    pred = rng.integers(0, 3, 20)
    a = st.s4_common_features(ci, pred, proto, n=5, m=10)
    b = st.s4_common_features(ci.copy(), pred.copy(), proto.copy(), n=5, m=10)
    assert np.array_equal(a.statistic, b.statistic)
    # against a plain per-row reference using sorted(key=(-CI, index))
    for i in range(20):
        top_s = [k for k in sorted(range(30), key=lambda k: (-ci[i, k], k)) if ci[i, k] > 0][:5]
        top_p = [k for k in sorted(range(30), key=lambda k: (-proto[pred[i], k], k)) if proto[pred[i], k] > 0][:10]
        assert a.statistic[i] == len(set(top_s) & set(top_p))
        assert a.flagged[i] == (len(top_s) < 5 or not set(top_s) <= set(top_p))


# --------------------------------------------------------------------------- registry, results

def test_evaluate_all_variants_per_dataset():
    rng = np.random.default_rng(2)
    proto = rng.normal(size=(10, 64)).astype(np.float32)
    ci = rng.normal(size=(7, 64)).astype(np.float32)
    pred = rng.integers(0, 10, 7)
    img = st.evaluate_all(ci, pred, proto, dataset="imagenet")
    cif = st.evaluate_all(ci, pred, proto, dataset="cifar10")
    assert [r.name for r in img] == ["S1(n=0)", "S1(n=1)", "S1(n=2)", "S1(n=5)", "S2(top-5)", "S3(n=5)",
                                     "S3(n=10)", "S4(3/10)", "S4(5/20)", "S4(10/30)"]
    assert [r.name for r in cif][4] == "S2(rho>=0.5)"
    for r in img + cif:
        assert r.flagged.dtype == bool and r.score.dtype == np.float64 and r.flagged.shape == (7,)
        assert not r.flagged.flags.writeable
        # the verdict agrees with the score: every flagged sample scores at least as high as every passed one
        if r.flagged.any() and (~r.flagged).any():
            assert r.score[r.flagged].min() >= r.score[~r.flagged].max()
    with pytest.raises(ValueError, match="dataset"):
        st.evaluate_all(ci, pred, proto, dataset="mnist")
    assert set(st.STRATEGIES) == {"s1", "s2", "s3", "s4"}


def test_paper_count_sides():
    ci = f32([[0.2, 0, 0, 0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]])
    r = st.s3_zero_effect(ci, n=5)                       # 6 zeros -> passes; 0 zeros -> flagged
    assert (r.n_flagged, r.n_passed, st.paper_count(r), st.paper_fraction(r)) == (1, 1, 1, "1/2")


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("call, match", [
    (lambda: st.s1_causal_existence(np.zeros(5, np.float32)), r"ci: expected a 2-D"),
    (lambda: st.s1_causal_existence(np.zeros((2, 5), np.int32)), r"ci: expected a floating.*int32"),
    (lambda: st.s1_causal_existence(np.zeros((2, 0), np.float32)), r"ci: expected at least one filter"),
    (lambda: st.s1_causal_existence(f32([[0, np.nan], [0, 0]])), r"ci: .*row 0, filter 1 = nan"),
    (lambda: st.s3_zero_effect(f32([[0, np.inf]])), r"ci: .*non-finite"),
    (lambda: st.s1_causal_existence(f32([[0.0]]), n=-1), r"n: expected an integer >= 0, got -1"),
    (lambda: st.s3_zero_effect(f32([[0.0]]), n=2.5), r"n: expected an integer"),
    (lambda: st.s2_pearson(f32([[0, 1]]), [2], f32([[0, 1], [1, 0]])), r"predicted: class 2 outside .*0\.\.1"),
    (lambda: st.s2_pearson(f32([[0, 1]]), [-1], f32([[0, 1]])), r"predicted: class -1"),
    (lambda: st.s2_pearson(f32([[0, 1]]), [0.0], f32([[0, 1]])), r"predicted: expected an integer.*float64"),
    (lambda: st.s2_pearson(f32([[0, 1]]), [0, 0], f32([[0, 1]])), r"predicted: expected shape \(1,\)"),
    (lambda: st.s2_pearson(f32([[0, 1]]), [0], f32([[0, 1, 2]])), r"proto: expected K = 2"),
    (lambda: st.s2_pearson(f32([[0, 1]]), [0], f32([[0, np.nan]])), r"proto: row 0 is partly NaN"),
    (lambda: st.s2_pearson(f32([[0, 1]]), [0], f32([[0, np.inf]])), r"proto: row 0 holds an infinite"),
    (lambda: st.s2_pearson(f32([[0, 1]]), [0], f32([[0, 1]]), mode="top5"), r"mode: expected 'topk'.*'top5'"),
    (lambda: st.s2_pearson(f32([[0, 1]]), [0], f32([[0, 1]]), mode="threshold", threshold=2),
     r"threshold: .*\[-1, 1\]"),
    (lambda: st.s2_pearson(f32([[0, 1]]), [0], f32([[0, 1]]), k=0), r"k: expected an integer >= 1"),
    (lambda: st.s4_common_features(f32([[0, 1]]), [0], f32([[0, 1]]), n=3, m=2), r"m: .*m >= n.*n=3, m=2"),
    (lambda: st.s4_common_features(f32([range(10)]), [0], f32([range(10)]), rule="contains"), r"rule: .*'contains'"),
    (lambda: st.s4_common_features(f32([range(10)]), [0], f32([range(10)]), n=3, m=3, rule=4), r"rule: .*1\.\.n=3"),
    (lambda: st.s4_common_features(f32([[0, 1]]), [0], f32([[0, 1]]), n=1, m=3), r"m: expected at most K = 2"),
    (lambda: st.s2_pearson(f32([[0, 1]]), [0], f32([[0, 1], [1, 0]]), k=3), r"k: expected at most 2 \(the number of cl"),
])
def test_validation_errors_name_argument_and_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_empty_sample_set():
    res = st.evaluate_all(np.zeros((0, 4), np.float32), np.zeros(0, int), f32([[0, 1, 2, 3]]), dataset="cifar10")
    assert all(r.n == 0 and st.paper_fraction(r) == "0/0" for r in res)


def test_no_tensorflow_import():
    code = ("import sys; import causadv_lib.strategies, causadv_lib.metrics; "
            "print(any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=config.PROJECT_ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- CIResult and Prototypes in

def _pair(layer="conv", definition="probability", proto_layer=None, proto_definition=None, n=12, k=40, c=4):
    """A CIResult of n samples and the Prototypes of c classes (class 2 without one), random CI vectors."""
    rng = np.random.default_rng(8)
    pred = rng.integers(0, c, n)
    res = CIResult(ci=rng.normal(size=(n, k)).astype(np.float32), predicted=pred, probability=np.ones(n, np.float32),
                   target=pred.copy(), definition=definition, layer=layer, path="generic", filters=np.arange(k))
    proto = rng.normal(size=(c, k)).astype(np.float32)
    proto[2] = np.nan
    protos = Prototypes(index=np.array([0, 1, -1, 3]), ids=("a", "b", "", "d"), probability=np.ones(c, np.float32),
                        ci=proto, layer=proto_layer or layer, definition=proto_definition or definition, missing=(2,))
    return res, protos


def _same(a, b):
    assert [r.name for r in a] == [r.name for r in b]
    for x, y in zip(a, b):
        for field in ("flagged", "score", "counted", "statistic"):
            assert getattr(x, field).tobytes() == getattr(y, field).tobytes(), (x.name, field)
        assert dict(x.params) == dict(y.params) and x.statistic_name == y.statistic_name


@pytest.mark.parametrize("dataset", ["imagenet", "cifar10"])
def test_evaluate_all_takes_a_ci_result_and_prototypes(dataset):
    res, protos = _pair()
    arrays = st.evaluate_all(res.ci, res.predicted, protos.ci, dataset=dataset)
    for got in (st.evaluate_all(res, protos, dataset=dataset), st.evaluate_all(res, proto=protos, dataset=dataset),
                st.evaluate_all(res, res.predicted, protos, dataset=dataset),
                st.evaluate_all(res.ci, res.predicted, protos, dataset=dataset),
                st.evaluate_all(res, res.predicted, protos.ci, dataset=dataset)):
        _same(got, arrays)
    # a nested model's layer named by its path on one side and by its unique inner name on the other
    nested, inner = _pair(layer="mobilenetv2_1.00_96/out_relu", proto_layer="out_relu")
    _same(st.evaluate_all(nested, inner, dataset=dataset),
          st.evaluate_all(nested.ci, nested.predicted, inner.ci, dataset=dataset))


@pytest.mark.parametrize("sides, match", [
    ({"layer": "conv", "proto_layer": "conv2"},
     r"ci and proto do not match: the CI vectors are of layer 'conv' with definition 'probability', the "
     r"prototypes' of layer 'conv2' with definition 'probability'"),
    ({"definition": "log_probability", "proto_definition": "probability"},
     r"the CI vectors are of layer 'conv' with definition 'log_probability', the prototypes' of layer 'conv' with "
     r"definition 'probability'"),
    ({"layer": "a/out_relu", "proto_layer": "b/out_relu"}, r"of layer 'a/out_relu' .* of layer 'b/out_relu'"),
])
def test_evaluate_all_refuses_a_ci_result_and_prototypes_that_do_not_match(sides, match):
    res, protos = _pair(**sides)
    with pytest.raises(ValueError, match=match):
        st.evaluate_all(res, protos, dataset="cifar10")


def test_evaluate_all_refuses_mixed_up_arguments():
    res, protos = _pair()
    other = res.predicted.copy()
    other[0] = (other[0] + 1) % 4
    with pytest.raises(ValueError, match="predicted: differs from the predicted classes the CIResult carries"):
        st.evaluate_all(res, other, protos)
    targeted = CIResult(ci=res.ci, predicted=res.predicted, probability=res.probability, target=other,
                        definition=res.definition, layer=res.layer, path=res.path, filters=res.filters)
    with pytest.raises(ValueError, match=r"target class other than the predicted one in 1 of 12 rows \(first: row 0\)"):
        st.evaluate_all(targeted, protos)
    with pytest.raises(TypeError, match="ci: got Prototypes"):
        st.evaluate_all(protos, res.predicted, protos.ci)
    with pytest.raises(TypeError, match="proto: got a CIResult"):
        st.evaluate_all(res.ci, res.predicted, res)
    with pytest.raises(TypeError, match=r"predicted: got Prototypes; pass evaluate_all\(ci, predicted, protos\)"):
        st.evaluate_all(res.ci, protos)
    with pytest.raises(TypeError, match="predicted: missing"):
        st.evaluate_all(res.ci, proto=protos.ci)
    with pytest.raises(TypeError, match="proto: missing"):
        st.evaluate_all(res)
