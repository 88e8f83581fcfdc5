"""Causal heatmaps, the authors' variant, Grad-CAM and the consistency score (`causadv_lib.heatmaps`), checked
against hand computations on a tiny CNN (a few seconds)."""
from types import SimpleNamespace

import numpy as np
import pytest

from causadv_lib import experiment, heatmaps
from causadv_lib.analysis import heatmaps as heat_eval
from causadv_lib.vocab import CLEAN, AttackKey
from causadv_lib.prototypes import Prototypes

K, C = 6, 10


@pytest.fixture(scope="module")
def tiny():
    """conv (5x5xK after a 3x3 valid conv with stride 2 on 12x12) -> GAP -> Dense logits -> Softmax."""
    import keras

    from causadv_lib import zoo

    keras.utils.set_random_seed(1)
    inp = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(K, 3, strides=2, activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(C, activation="softmax", name="head")(h)
    norm = lambda x: (np.asarray(x, np.float32) / 127.5 - 1.0).astype(np.float32)  # noqa: E731
    return zoo.custom(keras.Model(inp, out), norm, normalize=norm, name="tinyhm", dataset="cifar10", ci_layer="conv")


def _images(n, seed=0, size=12):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def _protos(seed=0, missing=(9,), layer="conv"):
    ci = np.random.default_rng(seed).normal(size=(C, K)).astype(np.float32)
    ci[list(missing)] = np.nan
    idx = np.where(np.isnan(ci[:, 0]), -1, np.arange(C))
    return Prototypes(idx, tuple("" if i < 0 else f"p{i}" for i in idx), np.ones(C, np.float32), ci, layer,
                      "probability", tuple(missing))


def _acts(zm, x):
    import keras

    sub = keras.Model(zm.model.inputs[0], zm.model.get_layer("conv").output)
    return np.asarray(sub(zm.normalize(x)), np.float32)


def _norm(m):
    peak = m.reshape(len(m), -1).max(axis=1)
    return m / np.where(peak > 0, peak, 1)[:, None, None]


# ------------------------------------------------------------------------------------------- maps
def test_activations_layer_maps_normalise_upsample(tiny):
    x = _images(3)
    a = heatmaps.activations(tiny, x)
    assert a.shape == (3, 5, 5, K)
    np.testing.assert_allclose(a, _acts(tiny, x), rtol=1e-5, atol=1e-5)
    w = np.random.default_rng(0).normal(size=(3, K)).astype(np.float32)
    np.testing.assert_allclose(heatmaps.layer_maps(a, w), np.maximum(np.einsum("nhwk,nk->nhw", a, w), 0), atol=1e-5)
    m = heatmaps.normalise(np.stack([np.zeros((2, 2)), np.array([[1.0, 2], [0, 4]])]))
    assert m[0].max() == 0 and m[1].max() == 1 and m[1, 0, 1] == 0.5
    up = heatmaps.upsample(np.full((2, 5, 5), 0.25, np.float32), (12, 12))
    assert up.shape == (2, 12, 12) and np.allclose(up, 0.25)


def test_causal_and_authors_heatmaps_by_hand(tiny):
    x = _images(4)
    protos = _protos()
    classes = np.array([0, 3, 9, 5])
    a = _acts(tiny, x)
    w = protos.ci[classes]
    causal = heatmaps.maps(tiny, x, protos, classes, upsampled=False)
    want = _norm(np.maximum(np.einsum("nhwk,nk->nhw", a, np.maximum(np.nan_to_num(w), 0)), 0))
    np.testing.assert_allclose(causal[[0, 1, 3]], want[[0, 1, 3]], atol=1e-5)
    assert np.isnan(causal[2]).all()                          # class 9 has no prototype
    authors = heatmaps.maps(tiny, x, protos, classes, method="authors", upsampled=False)
    mask = (np.nan_to_num(w) > 0).astype(np.float32)
    want = _norm(np.maximum(np.einsum("nhwk,nk->nhw", a, mask) / K, 0))
    np.testing.assert_allclose(authors[[0, 1, 3]], want[[0, 1, 3]], atol=1e-5)
    full = heatmaps.maps(tiny, x, protos, classes)
    assert full.shape == (4, 12, 12) and np.nanmax(full) <= 1.0 and np.nanmin(full) >= 0.0
    # the same image gives the same map whichever images share the call (fixed batch layout)
    np.testing.assert_array_equal(heatmaps.maps(tiny, x[1:2], protos, classes[1:2]), full[1:2])


def test_gradcam_of_a_gap_dense_head_is_the_class_activation_map(tiny):
    """With GAP -> Dense, d z_c / d A_k = W[k, c] / (h w) everywhere: Grad-CAM = ReLU(sum_k W[k, c] A_k), normalised."""
    x = _images(3, seed=2)
    classes = np.array([1, 4, 7])
    W = tiny.model.get_layer("logits").get_weights()[0]       # (K, C)
    a = _acts(tiny, x)
    want = _norm(np.maximum(np.einsum("nhwk,kn->nhw", a, W[:, classes]), 0))
    got = heatmaps.gradcam(tiny, x, classes, upsampled=False)
    np.testing.assert_allclose(got, want, atol=1e-4)
    via = heatmaps.maps(tiny, x, None, classes, method="gradcam", upsampled=False)
    np.testing.assert_array_equal(via, got)
    pred = tiny.predict_inputs(tiny.normalize(x)).argmax(axis=1)
    np.testing.assert_allclose(heatmaps.gradcam(tiny, x, upsampled=False), heatmaps.gradcam(tiny, x, pred, upsampled=False))


def test_gradcam_on_a_custom_model_that_outputs_logits():
    """zoo.custom(outputs="logits") appends a Softmax; Grad-CAM reads the logits before it (no Dense needed)."""
    import keras

    from causadv_lib import zoo

    keras.utils.set_random_seed(2)
    inp = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(C, 3, activation="relu", name="conv")(inp)
    logits = keras.layers.GlobalAveragePooling2D(name="gap")(h)          # the class scores are channel means
    norm = lambda x: (np.asarray(x, np.float32) / 255.0).astype(np.float32)  # noqa: E731
    zm = zoo.custom(keras.Model(inp, logits), norm, normalize=norm, name="logitnet", outputs="logits", ci_layer="conv")
    x = _images(2, seed=9)
    assert heatmaps.layer_shape(zm) == (10, 10, C)
    got = heatmaps.gradcam(zm, x, [3, 5], upsampled=False)
    a = heatmaps.activations(zm, x)
    np.testing.assert_allclose(got, _norm(np.stack([a[0, :, :, 3], a[1, :, :, 5]])), atol=1e-5)


# ------------------------------------------------------------------------------------ consistency
def test_agreement_measures_and_edge_cases():
    a = np.array([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
    b = np.array([[[2.0, 4.0], [6.0, 8.0]], [[1.0, 0.0], [0.0, 0.0]], [[1.0, 2.0], [3.0, 4.0]]])
    cos = heatmaps.agreement(a, b, "cosine")
    assert cos[0] == pytest.approx(1.0) and cos[1] == 0.0 and 0 < cos[2] < 1
    pear = heatmaps.agreement(a, b, "pearson")
    assert pear[0] == pytest.approx(1.0) and pear[1] == 0.0 and pear[2] == 0.0   # constant map: 0
    assert heatmaps.agreement(-a[:1], b[:1], "pearson")[0] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="measure"):
        heatmaps.agreement(a, b, "spearman")


def test_consistency_own_ci_against_prototype(tiny):
    x = _images(4, seed=3)
    protos = _protos(seed=4)
    classes = np.array([2, 2, 9, 6])
    own = np.nan_to_num(protos.ci[classes]).copy()
    own[1] = -1.0                                             # no causal filter of its own: agreement 0
    res = heatmaps.consistency(tiny, x, own, classes, protos)
    assert set(res) == {"cosine", "pearson"}
    assert res["cosine"][0] == pytest.approx(1.0, abs=1e-6) and res["cosine"][3] == pytest.approx(1.0, abs=1e-6)
    assert res["cosine"][1] == 0.0 and res["pearson"][1] == 0.0
    assert np.isnan(res["cosine"][2]) and np.isnan(res["pearson"][2])    # no prototype of class 9
    assert heatmaps.consistency(tiny, x[:0], own[:0], classes[:0], protos)["cosine"].shape == (0,)


def _tiny_experiment(zm, protos):
    setup = experiment.Setup("cifar10", "tinyhm", "smoke", "p", "p", (24 / 255,), "tinyhm")
    pixels = _images(8, seed=5)
    pred = zm.predict_inputs(zm.normalize(pixels)).argmax(axis=1)
    # clean samples: own CI = the prototype's (agreement 1); adversarial: random own CI (agreement < 1)
    clean_ci = np.nan_to_num(protos.ci[pred]).astype(np.float32)
    cs = experiment.CleanSet(setup, tuple("abcdefgh"), pred.copy(), pixels,
                             SimpleNamespace(ci=clean_ci, predicted=pred, probability=np.ones(8, np.float32)))
    exp = experiment.Experiment(setup, cs, protos)
    source = np.arange(8)
    rng = np.random.default_rng(6)
    for key in setup.keys():
        adv_px = _images(8, seed=7)
        adv_pred = zm.predict_inputs(zm.normalize(adv_px)).argmax(axis=1)
        adv_ci = rng.normal(size=(8, K)).astype(np.float32)
        ok = adv_pred != pred
        res = SimpleNamespace(adversarial=adv_px, success=ok, predicted=adv_pred)
        exp.adversarial[key] = experiment.AdversarialSet(
            setup, key, res, SimpleNamespace(ci=adv_ci, predicted=adv_pred, probability=np.ones(8, np.float32)), source)
    return exp


def test_detection_rows_and_figure_panels_on_a_tiny_experiment(tiny):
    protos = _protos(seed=8, missing=())
    exp = _tiny_experiment(tiny, protos)
    sc = heat_eval.consistency_scores(exp, zm=tiny)
    assert np.allclose(sc[("cosine", CLEAN)], 1.0, atol=1e-6)
    rows = heat_eval.detection_rows(exp, zm=tiny)
    assert len(rows) == 2 * 6 and {r["strategy"] for r in rows} == {"heatmap cosine", "heatmap pearson"}
    key = AttackKey("bim", False, 24 / 255)
    r = next(r for r in rows if r["attack"] == key.label and r["strategy"] == "heatmap cosine")
    assert r["n_clean"] == 8 and r["n_adv"] == exp.adversarial[key].n_success
    assert r["auc"] is None or r["auc"] >= 0.5                 # clean agreement 1 is the least suspicious
    again = heat_eval.detection_rows(exp, zm=tiny, scores={24 / 255: sc})
    assert again == rows
    chosen = heat_eval.choose_examples(exp, 2)
    assert len(chosen) == 2 and len({int(exp.clean.labels[i]) for i in chosen}) == 2
    panels, labels, records = heat_eval.figure_panels(exp, chosen, zm=tiny)
    assert len(panels) == 2 * len(heat_eval.FIGURE_ROWS) == len(labels) and len(panels[0]) == 7
    assert panels[0][0]["note"] == "cos 1.00" and records[0]["sample"] == "clean"
    assert all(p is not None for row in panels for p in row)


# -------------------------------------------------------------------------------------- bad input
def test_bad_input_names_the_model_layer_or_image(tiny):
    x = _images(2)
    protos = _protos()
    with pytest.raises(ValueError, match=r"model tinyhm: no usable layer .conv9. \(its CI layer is .conv.\)"):
        heatmaps.gradcam(tiny, x, [0, 1], layer="conv9")
    with pytest.raises(ValueError, match=r"model tinyhm: layer 'gap' has output shape \(None, 6\)"):
        heatmaps.maps(tiny, x, protos, [0, 1], layer="gap")
    with pytest.raises(ValueError, match=r"image 1 has shape \(12, 10, 3\); the model expects \(12, 12, 3\)"):
        heatmaps.maps(tiny, [x[0], x[1, :, :10]], protos, [0, 1])
    with pytest.raises(ValueError, match=r"model tinyhm.*image 0 has shape \(32, 32, 3\)"):
        heatmaps.gradcam(tiny, _images(1, size=32), [0])
    with pytest.raises(ValueError, match=r"classes: image 1 has class 10, outside 0..9"):
        heatmaps.gradcam(tiny, x, [0, 10])
    with pytest.raises(ValueError, match=r"prototypes' CI vectors are of layer 'relu13'.*'conv'"):
        heatmaps.maps(tiny, x, _protos(layer="relu13"), [0, 1])
    bad = Prototypes(protos.index, protos.ids, protos.probability, protos.ci[:, :4], "conv", "probability", (9,))
    with pytest.raises(ValueError, match=r"prototypes of shape \(10, 4\) do not fit layer 'conv' \(10 classes x 6"):
        heatmaps.maps(tiny, x, bad, [0, 1])
    with pytest.raises(ValueError, match=r"own_ci: expected \(2, 6\) CI vectors .*layer 'conv' of model tinyhm"):
        heatmaps.consistency(tiny, x, np.zeros((2, 5)), [0, 1], protos)
    with pytest.raises(ValueError, match="method"):
        heatmaps.maps(tiny, x, protos, [0, 1], method="smoothgrad")
    with pytest.raises(ValueError, match="expected a zoo model"):
        heatmaps.activations(object(), x)
