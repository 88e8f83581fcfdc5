"""Nothing unsafe written, nothing wrong accepted: issue 14's eight probes, each turned into an assertion.
(Escaping, output names, file modes and orphans are in tests/test_io.py; these are the values let through.)"""
import keras
import numpy as np
import pytest

from causadv_lib import checks, defences, metrics, strategies, zoo


def _tiny(classes: int = 3, size: int = 8):
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inp, out)


# ------------------------------------------------------------------------------ 6. non-finite values
def test_a_normalize_that_returns_nan_or_inf_is_refused_by_custom():
    for bad in (lambda p: p / 0.0, lambda p: np.where(p > 100, np.nan, p)):   # the probe: p / 0.0
        with pytest.raises(ValueError, match="normalize returns non-finite values"), np.errstate(all="ignore"):
            zoo.custom(_tiny(), lambda im: im.astype("float32") / 255, outputs="logits", normalize=bad)
    with pytest.raises(ValueError, match="normalize maps pixels of shape"):
        zoo.custom(_tiny(), lambda im: im, outputs="logits", normalize=lambda p: p[:, :4])
    ok = zoo.custom(_tiny(), lambda im: im.astype("float32") / 255, outputs="logits", normalize=lambda p: p / 255)
    assert ok.num_classes == 3


# ------------------------------------------------------------------------------ 7. loose parameters
def test_a_one_class_model_is_refused_by_custom():
    with pytest.raises(ValueError, match="1 output class.*at least 2 classes"):
        zoo.custom(_tiny(classes=1), lambda im: im, outputs="logits")


def test_a_seed_beyond_32_bits_is_refused_not_folded():
    x = np.full((1, 4, 4, 3), 100.0, np.float32)
    with pytest.raises(ValueError, match=r"seed: expected an integer in \[0, 4294967295\], got 4294967297"):
        defences.purify("gaussian_noise", x, seed=2 ** 32 + 1)
    assert not np.array_equal(defences.purify("gaussian_noise", x, seed=1), defences.purify("gaussian_noise", x, seed=2))
    with pytest.raises(ValueError, match="seed"):
        checks.seed(-1)


def test_a_string_threshold_is_refused():
    ci = np.abs(np.random.default_rng(0).normal(size=(2, 6))).astype(np.float32)
    with pytest.raises(ValueError, match="threshold: expected a finite number"):
        strategies.s2_pearson(ci, [0, 1], ci, mode="threshold", threshold="0.5")


@pytest.mark.parametrize("call, message", [
    (lambda: metrics.bootstrap_interval([0.1, 0.2], [0.3, 0.4], n_boot=0), "n_boot: expected an integer >= 1, got 0"),
    (lambda: metrics.bootstrap_aucs([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], n_boot=0), "n_boot: expected an integer >= 1"),
    (lambda: metrics.logistic_cv_comparison(np.zeros((8, 1)), np.zeros((8, 1)), [0, 1] * 4, n_splits=1),
     "n_splits: expected an integer >= 2, got 1"),
    (lambda: metrics.bootstrap_interval([0.1], [0.2], alpha=1.5), r"alpha: expected a finite number in \(0, 1\)"),
])
def test_metric_parameters_are_checked_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_variants_larger_than_the_model_are_refused_or_left_uncounted():
    rng = np.random.default_rng(0)
    ci = np.abs(rng.normal(size=(3, 8))).astype(np.float32)          # K = 8 filters, 3 classes
    with pytest.raises(ValueError, match="m: expected at most K = 8"):
        strategies.s4_common_features(ci, [0, 1, 2], ci, n=3, m=10)
    with pytest.raises(ValueError, match="k: expected at most 3"):
        strategies.s2_pearson(ci, [0, 1, 2], ci, mode="topk", k=5)
    res = {r.name: r for r in strategies.evaluate_all(ci, np.array([0, 1, 2]), ci, dataset="imagenet")}
    for v in ("S2(top-5)", "S4(3/10)", "S4(5/20)", "S4(10/30)"):      # the paper's variants that do not fit
        assert res[v].n == 3 and res[v].n_counted == 0 and np.isnan(res[v].score).all()
    assert res["S1(n=0)"].n_counted == 3


# ------------------------------------------------------------------------ 5. [0, 1] pixels, 6. heatmaps
@pytest.fixture(scope="module")
def tiny_zm():
    net = _tiny(classes=3, size=8)
    return zoo.custom(net, lambda im: im.astype("float32") / 255, outputs="logits", normalize=lambda p: p / 255,
                      name="tinysafe")


def test_unit_range_pixels_are_refused_by_attacks_defences_and_heatmaps(tiny_zm):
    from causadv_lib import attacks, heatmaps
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    for call in (lambda p: attacks.generate(tiny_zm, p, labels=[0, 1], attack="fgsm", cache=False),
                 lambda p: defences.predict(tiny_zm, p, "feature_squeezing"),
                 lambda p: defences.purify("feature_squeezing", p),
                 lambda p: heatmaps.gradcam(tiny_zm, p)):
        with pytest.raises(ValueError, match=r"scale \[0, 1\] images by 255"):
            call(x / 255)
        call(x)                                   # the same images in [0, 255] pass
    assert defences.predict(tiny_zm, np.zeros((1, 8, 8, 3), np.float32)).shape == (1, 3)   # all black: fine


def test_heatmaps_refuse_infinite_prototypes_and_nan_ci(tiny_zm):
    from types import SimpleNamespace

    from causadv_lib import heatmaps
    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    good = np.abs(np.random.default_rng(2).normal(size=(3, 4))).astype(np.float32)
    bad = good.copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="prototypes: proto: row 1 holds an infinite"):
        heatmaps.maps(tiny_zm, x, SimpleNamespace(ci=bad, layer="conv"), [0, 1], method="causal")
    own = good[:2].copy()
    own[0, 0] = np.nan
    with pytest.raises(ValueError, match="own_ci: ci: .*row 0, filter 0 = nan"):
        heatmaps.consistency(tiny_zm, x, own, [0, 1], SimpleNamespace(ci=good, layer="conv"))
    ok = heatmaps.consistency(tiny_zm, x, good[:2], [0, 1], SimpleNamespace(ci=good, layer="conv"))
    assert np.isfinite(ok["cosine"]).all()


# --------------------------------------------------------------------- 8. a cache entry is checked on load
def test_a_wrong_attack_entry_is_recomputed_with_a_warning(tiny_zm, tmp_path, monkeypatch):
    from causadv_lib import attacks
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    x = np.random.default_rng(3).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    y = tiny_zm.predict_inputs(tiny_zm.normalize(x)).argmax(axis=1)
    fresh = attacks.generate(tiny_zm, x, labels=y, attack="bim", eps=8 / 255)
    (entry,) = (tmp_path / "attacks").glob("*.npz")
    for name, tamper in [("predicted", lambda a: a | {"predicted": (a["predicted"] + 1) % 3}),     # success lies
                         ("adversarial", lambda a: a | {"adversarial": np.clip(a["adversarial"] + 20, 0, 255)}),
                         ("adversarial", lambda a: a | {"adversarial": a["adversarial"] * 0 + 300})]:
        with np.load(entry) as z:
            arrays = {k: z[k] for k in z.files}
        np.savez(entry, **tamper(arrays))
        with pytest.warns(RuntimeWarning, match="unusable"):
            again = attacks.generate(tiny_zm, x, labels=y, attack="bim", eps=8 / 255)
        assert np.array_equal(again.adversarial, fresh.adversarial) and np.array_equal(again.success, fresh.success)
    hit = attacks.generate(tiny_zm, x, labels=y, attack="bim", eps=8 / 255)     # the recomputed entry serves
    assert np.array_equal(hit.predicted, fresh.predicted)
