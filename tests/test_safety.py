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
