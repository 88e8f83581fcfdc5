"""ART input purifiers (`causadv_lib.defences`): settings, determinism, counting by class index, bad input.
A tiny CNN stands in for the zoo models (no weights, a few seconds)."""
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.ndimage import median_filter

from causadv_lib import defences, experiment, paper
from causadv_lib.analysis import defences as evaluation
from causadv_lib.vocab import CLEAN, AttackKey


@pytest.fixture(scope="module")
def tiny():
    import keras

    from causadv_lib import zoo

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(10, activation="softmax")(h)
    norm = lambda x: (np.asarray(x, np.float32) / 127.5 - 1.0).astype(np.float32)  # noqa: E731
    return zoo.custom(keras.Model(inp, out), norm, normalize=norm, name="tiny16", dataset="cifar10")


def _images(n, seed=0, size=16):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


# ----------------------------------------------------------------------------------------- settings
def test_authors_settings_and_column_order():
    p = defences.PURIFIERS
    assert defences.PAPER_PURIFIERS == ("feature_squeezing", "spatial_smoothing", "gaussian_noise")
    assert p["feature_squeezing"].params == {"bit_depth": 3} and p["feature_squeezing"].art_class == "FeatureSqueezing"
    assert p["spatial_smoothing"].params == {"window_size": 7} and p["spatial_smoothing"].art_class == "SpatialSmoothing"
    assert p["gaussian_noise"].params == {"sigma": 9.0, "augmentation": False}
    assert p["gaussian_noise"].art_class == "GaussianAugmentation" and p["gaussian_noise"].random
    assert all(p[n].in_paper for n in defences.PAPER_PURIFIERS) and not any(p[n].in_paper for n in defences.XU_PURIFIERS)
    assert "clip_values=(0, 255)" in p["spatial_smoothing"].setting and p["none"].setting == "identity"
    assert p["gaussian_noise"].art().apply_predict


# ------------------------------------------------------------------------------------------ purify
def test_feature_squeezing_and_spatial_smoothing_are_arts_transforms():
    x = _images(3)
    fs = defences.purify("feature_squeezing", x)
    assert fs.dtype == np.float32 and len(np.unique(fs)) <= 8 and fs.min() >= 0 and fs.max() <= 255
    np.testing.assert_allclose(fs, np.rint(x / 255 * 7) / 7 * 255, rtol=0, atol=1e-3)
    ss = defences.purify("spatial_smoothing", x)
    np.testing.assert_array_equal(ss, median_filter(x, size=(1, 7, 7, 1), mode="reflect"))
    same = defences.purify("none", x)
    assert np.array_equal(same, x) and same is not x
    assert defences.purify("feature_squeezing_5bit", x).shape == x.shape


def test_gaussian_noise_is_seeded_per_image_and_leaves_global_state_alone():
    x = np.full((6, 16, 16, 3), 128.0, np.float32)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = defences.purify("gaussian_noise", x)
    assert np.array_equal(np.random.get_state()[1], before)           # global RNG untouched
    assert np.array_equal(a, defences.purify("gaussian_noise", x))   # deterministic
    # an image's noise depends on (seed, index) only, not on the batch it came in
    b = defences.purify("gaussian_noise", x[2:5], index=[2, 3, 4])
    np.testing.assert_array_equal(a[2:5], b)
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a, defences.purify("gaussian_noise", x, seed=1))
    assert abs(float((a - 128).std()) - 9.0) < 0.5                    # sigma 9 grey levels
    clipped = defences.purify("gaussian_noise", np.zeros((1, 16, 16, 3), np.float32))
    assert clipped.min() == 0.0


# ------------------------------------------------------------------------------------------ predict
def test_predict_and_recovered_compare_class_indices(tiny):
    x = _images(5)
    probs = defences.predict(tiny, x, "none")
    assert probs.shape == (5, 10)
    pred = probs.argmax(axis=1)
    assert defences.recovered(tiny, x, pred, "none").all()
    assert not defences.recovered(tiny, x, (pred + 1) % 10, "none").any()
    assert defences.predict(tiny, x[:0]).shape == (0, 10)


# -------------------------------------------------------------------------------------- experiment
def _tiny_experiment(zm):
    """Clean set of 6 images (one misclassified); each attack: 5 examples, 4 successful; examples 0 and 1 are the
    clean images themselves (so 'recovered' without a purifier... unless unsuccessful), the rest other images."""
    setup = experiment.Setup("cifar10", "tiny16", "smoke", "p", "p", (24 / 255,), "tiny16")
    pixels = _images(6, seed=1)
    pred = defences.predict(zm, pixels).argmax(axis=1)
    labels = pred.copy()
    labels[1] = (labels[1] + 1) % 10                        # misclassified: not in the clean comparison set
    cs = experiment.CleanSet(setup, tuple("abcdef"), labels, pixels, SimpleNamespace(predicted=pred))
    exp = experiment.Experiment(setup, cs, None)
    source = np.flatnonzero(cs.correct)                     # [0, 2, 3, 4, 5]
    other = _images(5, seed=2)
    for key in setup.keys():
        adv_px = other.copy()
        adv_px[:2] = pixels[source[:2]]                    # two "adversarial" examples equal to their source
        adv_pred = defences.predict(zm, adv_px).argmax(axis=1)
        ok = np.array([True, True, True, True, False])
        res = SimpleNamespace(adversarial=adv_px, success=ok, predicted=adv_pred)
        exp.adversarial[key] = experiment.AdversarialSet(setup, key, res, SimpleNamespace(predicted=adv_pred), source)
    return exp


def test_evaluate_counts_successful_examples_by_their_sources_true_class(tiny):
    exp = _tiny_experiment(tiny)
    res = evaluation.evaluate(exp, purifiers=("none", "feature_squeezing"), zm=tiny)
    assert res.purifiers == ("none", "feature_squeezing") and res.groups[0] == CLEAN
    assert res.n(CLEAN) == 5 and res.count(CLEAN, "none") == 5   # correct clean images only
    key = AttackKey("pgd", True, 24 / 255)
    adv = exp.adversarial[key]
    assert res.n(key) == 4
    truth = exp.clean.labels[adv.source[adv.success]]
    want = int((adv.attack_result.predicted[adv.success] == truth).sum())
    assert want >= 2 and res.count(key, "none") == want
    rows = evaluation.table_rows(res, paper.table_for("table4", exp.setup.dataset, 24 / 255))
    assert [r["samples"] for r in rows] == ["Clean (accuracy)", "FGSM targeted", "PGD targeted", "BIM targeted",
                                           "FGSM untargeted", "PGD untargeted", "BIM untargeted"]
    assert rows[0]["no purifier"] == "5/5" and rows[2]["no purifier"] == f"{want}/4"
    assert "paper N" not in rows[0]                         # Table 4 is ImageNet only
    imagenet = experiment.setup_for("imagenet", "smoke")
    assert paper.table_for("table4", imagenet.dataset, 8 / 255) is paper.table("table4")
    rows = evaluation.table_rows(res, paper.table("table4"))
    assert rows[0]["paper N"] is None and rows[1]["paper N"] == 300
    assert rows[2]["paper Spatial smoothing (7x7)"] == 22


# ---------------------------------------------------------------------------------------- bad input
def test_bad_input_names_the_model_or_the_image(tiny):
    x = _images(3)
    with pytest.raises(ValueError, match=r"shape \(16, 16, 3\).*add a batch axis"):
        defences.purify("spatial_smoothing", x[0])
    with pytest.raises(ValueError, match=r"image 2 has shape \(8, 8, 3\)"):
        defences.purify("feature_squeezing", [x[0], x[1], x[2, :8, :8]])
    bad = x.copy()
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="image 1 .*NaN"):
        defences.purify("gaussian_noise", bad)
    with pytest.raises(ValueError, match=r"image 0 .*expected \[0, 255\]; scale \[0, 1\] images by 255"):
        defences.purify("feature_squeezing", x / 255.0 - 0.1)
    with pytest.raises(ValueError, match=r"model tiny16: image 0 has shape \(32, 32, 3\); the model expects \(16, 16, 3\)"):
        defences.predict(tiny, _images(2, size=32), "feature_squeezing")
    with pytest.raises(ValueError, match="unknown purifier 'median'"):
        defences.purify("median", x)
    with pytest.raises(ValueError, match="normalize"):
        defences.predict(SimpleNamespace(name="raw", model=None, input_shape=(16, 16, 3), normalize=None), x)
    with pytest.raises(ValueError, match="labels: expected 3 integer"):
        defences.recovered(tiny, x, [0, 1], "none")
    with pytest.raises(ValueError, match="index: expected 3"):
        defences.purify("gaussian_noise", x, index=[0, 1])


# ------------------------------------------------------------------------- spatial smoothing, fast path
def _smoothing_inputs(rng):
    """Random, tied and structured images of several sizes and dtypes, with the clip values ART accepts."""
    f = (0.0, 255.0)
    yield "float32", rng.uniform(0, 255, (3, 16, 16, 3)).astype(np.float32), f
    yield "odd 5x7", rng.uniform(0, 255, (2, 5, 7, 3)).astype(np.float32), f
    yield "tiny", rng.uniform(0, 255, (2, 2, 3, 3)).astype(np.float32), f          # smaller than the window
    yield "1x1", rng.uniform(0, 255, (1, 1, 1, 3)).astype(np.float32), f
    yield "one channel 9x4", rng.uniform(0, 255, (2, 9, 4, 1)).astype(np.float32), f
    yield "uint8-valued float", rng.integers(0, 256, (2, 12, 11, 3)).astype(np.float32), f
    yield "ties", (rng.integers(0, 3, (2, 13, 10, 3)) * 127.5).astype(np.float32), f
    yield "beyond the clip range", rng.uniform(-1e-3, 255 + 1e-3, (2, 8, 9, 3)), f          # float64
    yield "uint8", rng.integers(0, 256, (2, 10, 13, 3)).astype(np.uint8), (0, 255)
    yield "int32 no clip", rng.integers(-5, 300, (1, 7, 6, 2)).astype(np.int32), None
    structured = np.zeros((2, 20, 17, 3), np.float32)
    structured[0, :, 8:] = 255.0                                                  # a vertical edge
    structured[0, 10:, :, 1] = 100.0                                              # a horizontal edge
    structured[1] = np.add.outer(np.arange(20), np.arange(17))[..., None] * 7.0 % 256  # ramps and wraps
    structured[1, 3:9, 2:6] = 42.0                                                # a constant block
    structured[1, ::4, ::3, 2] = 255.0                                            # a grid of bright dots
    yield "structured", structured, f


@pytest.mark.parametrize("window", [2, 3, 7, 1, 4, 5])
def test_fast_spatial_smoothing_is_bit_identical_to_arts(window):
    from causadv_lib.art_imports import preprocessor

    for what, x, clip in _smoothing_inputs(np.random.default_rng(window)):
        art = preprocessor.SpatialSmoothing(window_size=window, clip_values=clip)
        want = art(x.copy())[0]
        for got in (defences.median_smooth(x, window, clip), defences.median_smooth(x, window, clip, budget=1),
                    defences.smooth(art, x)):
            assert got.dtype == want.dtype and got.shape == want.shape, what
            assert np.array_equal(got, want), f"window {window}, {what}"


def test_purify_routes_spatial_smoothing_through_the_fast_path_with_arts_bits(monkeypatch):
    x = np.random.default_rng(3).uniform(0, 255, (4, 24, 24, 3)).astype(np.float32)
    for name in ("spatial_smoothing", "spatial_smoothing_2x2"):
        p = defences.PURIFIERS[name]
        want = np.asarray(p.art()(x)[0], np.float32)
        assert np.array_equal(defences.purify(name, x), want)
    from causadv_lib.peers import SPATIAL_SMOOTHING_3X3

    assert np.array_equal(defences.purify(SPATIAL_SMOOTHING_3X3, x), SPATIAL_SMOOTHING_3X3.art()(x)[0])
    calls = []
    monkeypatch.setattr(defences, "median_smooth", lambda *a, **k: calls.append(a) or a[0])
    defences.purify("spatial_smoothing", x)
    assert calls and calls[0][1:] == (7, defences.PIXEL_RANGE)             # ART's window and clip values


def test_signed_zeros_and_other_layouts_go_to_art():
    from causadv_lib.art_imports import preprocessor

    x = np.random.default_rng(4).uniform(0, 255, (2, 9, 9, 3)).astype(np.float32)
    x[0, :4, :4] = -0.0                                       # equal to 0.0, other bits: ART decides the ties
    x[1, :4, :4] = 0.0
    for w in (2, 3, 7):
        art = preprocessor.SpatialSmoothing(window_size=w, clip_values=(0.0, 255.0))
        assert np.array_equal(np.signbit(defences.smooth(art, x)), np.signbit(art(x)[0]))
        assert np.array_equal(defences.smooth(art, x), art(x)[0])
        with pytest.raises(ValueError, match="ART"):
            defences.median_smooth(x, w)
    first = preprocessor.SpatialSmoothing(window_size=3, channels_first=True, clip_values=(0.0, 255.0))
    xt = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    assert np.array_equal(defences.smooth(first, xt), first(xt)[0])
    video = np.random.default_rng(5).uniform(0, 255, (1, 2, 6, 6, 3)).astype(np.float32)
    art = preprocessor.SpatialSmoothing(window_size=3, clip_values=(0.0, 255.0))
    assert np.array_equal(defences.smooth(art, video), art(video)[0])


def test_evaluate_without_a_purifier_reuses_the_experiments_predictions(tiny, monkeypatch):
    """On the experiment's own model, 'none' takes each group's predictions (the CI pass's) instead of a second
    forward pass; they equal that forward pass's (the same canonical layout)."""
    exp = _tiny_experiment(tiny)
    monkeypatch.setattr(exp.setup.__class__, "zoo_model", lambda self: tiny)
    calls = []
    real = evaluation.predict
    monkeypatch.setattr(evaluation, "predict", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    own = evaluation.evaluate(exp, purifiers=("none", "feature_squeezing"))
    assert "none" not in calls and calls.count("feature_squeezing") == len(own.groups)
    given = evaluation.evaluate(exp, purifiers=("none",), zm=tiny)   # a model passed in: predicted, as before
    for g in own.groups:
        assert np.array_equal(own.predicted[(g, "none")], given.predicted[(g, "none")])
