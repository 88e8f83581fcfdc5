"""Attacks (FGSM, BIM, PGD through ART): budgets, directions, targets, determinism, cache, input checks."""
import art  # noqa: F401  (hard dependency, imported lazily by causadv_lib.attacks: missing, it fails here)
import keras
import numpy as np
import pytest
from keras import layers as L

from causadv_lib import attacks, zoo

SHAPE = (4, 4, 3)
EPS = 8 / 255


def _normalize(x):
    return (np.asarray(x, np.float32) / np.float32(255.0) - np.float32(0.5)).astype(np.float32)


def _wrap(model, name="tiny", normalize=_normalize):
    return zoo.custom(model, lambda im: _normalize(np.asarray(im)), name=name, normalize=normalize,
                      ci_layer=model.layers[1].name)


def _linear(classes=3, scale=1.0, seed=0, lead=0.0):
    """Flatten -> Dense (logits) -> Softmax, weights drawn from `seed` times `scale`; class 0's bias + `lead`."""
    x = i = keras.Input(SHAPE)
    x = L.Flatten(name="flat")(x)
    dense = L.Dense(classes, name="logits")
    x = dense(x)
    model = keras.Model(i, L.Softmax(name="probs")(x))
    rng = np.random.default_rng(seed)
    bias = scale * rng.normal(0, 0.1, classes) + lead * (np.arange(classes) == 0)
    dense.set_weights([scale * rng.normal(0, 1, (int(np.prod(SHAPE)), classes)).astype(np.float32),
                       bias.astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def tiny():
    """A small conv net (5 classes) on 4x4 pixels."""
    keras.utils.set_random_seed(0)
    x = i = keras.Input(SHAPE)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="act")(x)
    x = L.Flatten()(x)
    x = L.Dense(5, name="logits")(x)
    model = keras.Model(i, L.Softmax(name="probs")(x))
    return zoo.custom(model, lambda im: _normalize(np.asarray(im)), name="tiny_conv", normalize=_normalize)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, (6, *SHAPE), dtype=np.uint8)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path / "cache"))


def _labels(zm, images):
    return zm.predict(images).argmax(axis=1)


# ------------------------------------------------------------------------------------------ budgets
@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("attack", attacks.ATTACKS)
def test_budget_range_dtype_and_outcome_fields(tiny, images, attack, targeted):
    y = _labels(tiny, images)
    r = attacks.generate(tiny, images, labels=y, attack=attack, eps=EPS, targeted=targeted, seed=3, batch_size=4)
    adv = r.adversarial
    assert adv.dtype == np.float32 and adv.shape == images.shape
    assert np.abs(adv - images.astype(np.float32)).max() <= EPS * 255 + 1e-4
    assert adv.min() >= 0.0 and adv.max() <= 255.0
    assert not np.array_equal(adv, images.astype(np.float32)), "the attack changed nothing"
    pred = tiny.predict_inputs(_normalize(adv)).argmax(axis=1)
    np.testing.assert_array_equal(r.predicted, pred)
    np.testing.assert_array_equal(r.labels, y)
    if targeted:
        np.testing.assert_array_equal(r.targets, attacks.target_classes(y, 5, seed=3))
        np.testing.assert_array_equal(r.success, pred == r.targets)
    else:
        assert (r.targets == -1).all()
        np.testing.assert_array_equal(r.success, pred != y)
    s = attacks.SETTINGS[attack]
    assert (r.attack, r.eps, r.targeted, r.seed, r.max_iter, r.num_random_init) == (
        attack, EPS, targeted, 3, s["max_iter"], s["num_random_init"])
    assert r.eps_step == pytest.approx(EPS * s["eps_step_fraction"])
    assert r.params["norm"] == "inf" and r.params["eps"] == EPS


def test_settings_table():
    assert attacks.attack_parameters("bim", 8 / 255) == {"eps_step": pytest.approx(1 / 255), "max_iter": 10,
                                                          "num_random_init": 0}
    assert attacks.attack_parameters("pgd", 8 / 255) == {"eps_step": pytest.approx(2 / 255), "max_iter": 10,
                                                          "num_random_init": 1}
    assert attacks.attack_parameters("fgsm", 8 / 255)["max_iter"] == 1


def test_float_pixels_give_the_same_result_as_uint8(tiny, images):
    y = _labels(tiny, images)
    a = attacks.generate(tiny, images, labels=y, attack="bim", cache=False)
    b = attacks.generate(tiny, images.astype(np.float64), labels=y, attack="bim", cache=False)
    np.testing.assert_array_equal(a.adversarial, b.adversarial)


# ---------------------------------------------------------------------------------------- direction
def _margin(model, pixels, y, other):
    logits = keras.Model(model.inputs, model.get_layer("logits").output).predict_on_batch(_normalize(pixels))
    logits = np.asarray(logits, np.float64)
    idx = np.arange(len(y))
    return logits[idx, y] - logits[idx, other]


@pytest.mark.parametrize("lead", [0.0, 40.0], ids=["plain", "saturated_softmax"])
def test_fgsm_on_a_linear_model_moves_the_margin_by_eps_times_l1_of_the_weights(lead):
    """Two classes: FGSM lowers logit(y) - logit(other) by exactly eps * 255 * |w_y - w_o|_1 / 255.

    With a logit lead of ~40 the softmax saturates (p = 1.0 in float32, so a loss on the probabilities
    has no gradient): the loss on the logits still moves the image.
    """
    model = _linear(classes=2, seed=4, lead=lead)
    zm = _wrap(model)
    images = np.random.default_rng(2).integers(40, 216, (5, *SHAPE), dtype=np.uint8)  # no clipping at 0/255
    y = _labels(zm, images)
    other = 1 - y
    if lead:
        assert (zm.predict(images).max(axis=1) == 1.0).all(), "the softmax should saturate for this check"
    r = attacks.generate(zm, images, labels=y, attack="fgsm", eps=EPS, cache=False)
    w = model.get_layer("logits").get_weights()[0].astype(np.float64)
    drop = EPS * np.abs(w[:, 0] - w[:, 1]).sum()
    before, after = _margin(model, images, y, other), _margin(model, r.adversarial, y, other)
    np.testing.assert_allclose(before - after, drop, rtol=1e-4)


def test_compiled_gradient_is_the_cross_entropy_gradient_over_one_minus_p(tiny, images):
    """Against ART's eager gradient (mean loss over the batch): equal after the per-image factors."""
    x = images.astype(np.float32)
    y = np.eye(5, dtype=np.float32)[(_labels(tiny, images) + 1) % 5]
    y[0] = np.eye(5)[_labels(tiny, images)[0]]
    fast = attacks.art_classifier(tiny).loss_gradient(x, y)
    plain = attacks.art_classifier(tiny, compiled=False).loss_gradient(x, y)
    p_y = (tiny.predict(images) * y).sum(axis=1)
    scale = ((1 - p_y) / len(x)).reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(fast * scale, plain, rtol=1e-3, atol=1e-6 * np.abs(plain).max())


def test_targeted_fgsm_raises_the_target_logit_against_the_label():
    model = _linear(classes=4, seed=5)
    zm = _wrap(model)
    images = np.random.default_rng(3).integers(40, 216, (6, *SHAPE), dtype=np.uint8)
    y = _labels(zm, images)
    r = attacks.generate(zm, images, labels=y, attack="fgsm", eps=EPS, targeted=True, cache=False)
    gain = _margin(model, r.adversarial, r.targets, y) - _margin(model, images, r.targets, y)
    assert (gain > 0).all()


def test_targeted_success_means_the_target_is_predicted():
    zm = _wrap(_linear(classes=4, seed=6))
    images = np.random.default_rng(4).integers(0, 256, (8, *SHAPE), dtype=np.uint8)
    y = _labels(zm, images)
    r = attacks.generate(zm, images, labels=y, attack="bim", eps=0.5, targeted=True, cache=False)
    assert r.success.any()
    np.testing.assert_array_equal(r.success, r.predicted == r.targets)
    assert (r.predicted[r.success] != y[r.success]).all()


# ------------------------------------------------------------------------------------------ targets
def test_targets_differ_from_labels_and_follow_the_seed():
    y = np.arange(200) % 10
    t = attacks.target_classes(y, 10, seed=7)
    assert (t != y).all() and t.min() >= 0 and t.max() <= 9
    np.testing.assert_array_equal(t, attacks.target_classes(y, 10, seed=7))
    assert not np.array_equal(t, attacks.target_classes(y, 10, seed=8))
    assert len(np.unique(t[y == 0])) > 5, "targets should spread over the other classes"
    np.testing.assert_array_equal(attacks.target_classes(y[:50], 10, seed=7), t[:50])
    with pytest.raises(ValueError, match="at least 2 classes"):
        attacks.target_classes([0], 1)


# -------------------------------------------------------------------------------------- determinism
def test_bim_is_deterministic_pgd_is_seeded_and_differs_from_bim(tiny, images):
    y = _labels(tiny, images)
    run = lambda attack, **kw: attacks.generate(tiny, images, labels=y, attack=attack, cache=False, **kw)  # noqa: E731
    bim1, bim2 = run("bim", seed=1), run("bim", seed=2)
    np.testing.assert_array_equal(bim1.adversarial, bim2.adversarial)  # no randomness: the seed is unused
    pgd1, pgd1b, pgd2 = run("pgd", seed=1), run("pgd", seed=1), run("pgd", seed=2)
    np.testing.assert_array_equal(pgd1.adversarial, pgd1b.adversarial)
    assert not np.array_equal(pgd1.adversarial, bim1.adversarial), "PGD's random start makes it differ from BIM"
    assert not np.array_equal(pgd1.adversarial, pgd2.adversarial)
    np.random.seed(123)  # the global numpy state plays no part
    np.testing.assert_array_equal(run("pgd", seed=1).adversarial, pgd1.adversarial)


def test_pgd_random_start_does_not_depend_on_the_batch_size(tiny, images):
    y = _labels(tiny, images)
    a = attacks.generate(tiny, images, labels=y, attack="pgd", batch_size=6, cache=False)
    b = attacks.generate(tiny, images, labels=y, attack="pgd", batch_size=4, cache=False)
    c = attacks.generate(tiny, images[2:], labels=y[2:], attack="pgd", batch_size=1, cache=False)
    np.testing.assert_allclose(a.adversarial, b.adversarial, atol=1e-4)
    assert not np.allclose(a.adversarial[2:], c.adversarial), "the start depends on the image's index"


# --------------------------------------------------------------------------------------------- cache
def test_cache_hit_is_identical_and_any_parameter_change_recomputes(tiny, images, monkeypatch):
    calls = []
    real = attacks._run

    def counting(*args, **kwargs):
        calls.append(args[4])
        return real(*args, **kwargs)

    monkeypatch.setattr(attacks, "_run", counting)
    y = _labels(tiny, images)
    first = attacks.generate(tiny, images, labels=y, attack="pgd")
    again = attacks.generate(tiny, images, labels=y, attack="pgd")
    assert len(calls) == 1
    np.testing.assert_array_equal(first.adversarial, again.adversarial)
    np.testing.assert_array_equal(first.predicted, again.predicted)
    np.testing.assert_array_equal(first.success, again.success)
    assert again.adversarial.dtype == np.float32
    attacks.generate(tiny, images, labels=y, attack="pgd", eps=4 / 255)
    attacks.generate(tiny, images, labels=y, attack="pgd", seed=99)
    attacks.generate(tiny, images, labels=y, attack="pgd", targeted=True)
    attacks.generate(tiny, images, labels=y, attack="bim")
    attacks.generate(tiny, images[:5], labels=y[:5], attack="pgd")
    attacks.generate(tiny, images, labels=(y + 1) % 5, attack="pgd")
    assert len(calls) == 7
    attacks.generate(tiny, images, labels=y, attack="pgd", cache=False)
    assert len(calls) == 8


def test_cache_key_sees_weights_and_architecture(images, monkeypatch):
    calls = []
    real = attacks._run
    monkeypatch.setattr(attacks, "_run", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = _linear(classes=3, seed=8)
    zm = _wrap(model)
    y = _labels(zm, images)
    attacks.generate(zm, images, labels=y, attack="fgsm")
    attacks.generate(_wrap(model, name="another_wrapper"), images, labels=y, attack="fgsm")
    assert len(calls) == 1, "the same network and normalisation hit the cache"
    w, b = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([w * 2, b])
    attacks.generate(zm, images, labels=y, attack="fgsm")
    assert len(calls) == 2
    attacks.generate(_wrap(_linear(classes=3, seed=8), normalize=lambda x: _normalize(x) * 2), images,
                     labels=y, attack="fgsm")
    assert len(calls) == 3, "the normalisation is part of the key"


# ---------------------------------------------------------------------------------------- validation
def test_empty_batch_gives_an_empty_result(tiny):
    r = attacks.generate(tiny, np.zeros((0, *SHAPE), np.uint8), labels=np.zeros(0, int), attack="pgd",
                         targeted=True)
    assert r.adversarial.shape == (0, *SHAPE) and r.adversarial.dtype == np.float32
    assert r.success.shape == r.predicted.shape == r.targets.shape == r.labels.shape == (0,)
    assert r.success.dtype == bool and len(r) == 0
    assert attacks.generate(tiny, np.zeros((0, *SHAPE)), labels=[], attack="fgsm").adversarial.shape == (0, *SHAPE)


@pytest.mark.parametrize("kwargs, match", [
    (dict(attack="cw"), r"unknown attack 'cw'; expected one of fgsm, bim, pgd"),
    (dict(attack=None), "unknown attack None"),
    (dict(eps=0), r"eps=0.0 is outside \(0, 1\]"),
    (dict(eps=-0.1), r"outside \(0, 1\]"),
    (dict(eps=8), r"did you mean eps=8/255"),
    (dict(eps=float("nan")), r"outside \(0, 1\]"),
    (dict(eps="8/255"), "eps must be a number"),
    (dict(eps=True), "eps must be a number"),
    (dict(targeted="yes"), "targeted must be True or False"),
    (dict(seed=-1), r"seed: expected an integer in \[0, 4294967295\], got -1"),
    (dict(seed=1.5), "seed: expected an integer"),
    (dict(seed=2 ** 32 + 1), r"seed: expected an integer in \[0, 4294967295\], got 4294967297"),
    (dict(batch_size=0), "batch_size: expected an integer >= 1, got 0"),
])
def test_bad_parameters(tiny, images, kwargs, match):
    y = _labels(tiny, images)
    with pytest.raises(ValueError, match=match):
        attacks.generate(tiny, images, labels=y, **{"attack": "fgsm", **kwargs})


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 5, 5, 3), np.uint8), r"image 0 has shape \(5, 5, 3\); the model expects \(4, 4, 3\)"),
    (np.zeros((4, 4, 3), np.uint8), r"got an array of shape \(4, 4, 3\); add a batch axis"),
    (np.zeros((2, 4, 4, 1), np.uint8), r"image 0 has shape \(4, 4, 1\); expected \(H, W, 3\)"),
    (np.zeros((2, 4, 4, 3), np.int32), "image 0 has dtype int32; expected uint8 or float pixel values"),
    (np.zeros((2, 4, 4, 3), bool), "dtype bool"),
    (np.full((2, *SHAPE), 256.0), r"image 0 .*has pixel values in \[256, 256\]; expected \[0, 255\]"),
    (np.full((2, *SHAPE), -0.5, np.float32), r"has pixel values in \[-0.5, -0.5\]; expected \[0, 255\]"),
    (np.full((2, *SHAPE), np.nan, np.float32), "image 0 .*NaN"),
    (np.full((2, *SHAPE), 0.5, np.float32), r"look like images scaled to \[0, 1\].*scale \[0, 1\] images by 255"),
    ([np.zeros(SHAPE, np.uint8), np.zeros((5, 5, 3), np.uint8)], r"image 1 has shape \(5, 5, 3\)"),
])
def test_bad_images(tiny, bad, match):
    n = len(bad) if isinstance(bad, list) or np.ndim(bad) == 4 else 1
    with pytest.raises(ValueError, match=match):
        attacks.generate(tiny, bad, labels=np.zeros(n, int), attack="fgsm")


def test_unit_interval_float_images_get_a_hint(tiny):
    with pytest.raises(ValueError, match=r"scale \[0, 1\] images by 255"):
        attacks.generate(tiny, np.full((1, *SHAPE), 0.5, np.float32) - 1, labels=[0], attack="fgsm")


@pytest.mark.parametrize("labels, match", [
    (None, r"labels \(the true class of each image, shape \(6,\)\) are required"),
    (np.zeros(5, int), r"expected 6 labels of shape \(6,\), got shape \(5,\)"),
    (np.zeros((6, 1), int), r"got shape \(6, 1\)"),
    (np.array([0, 1, 2, 3, 4, 5]), r"labels must lie in 0..4; got \[5\] \(at positions \[5\]\)"),
    (np.array([-1, 0, 0, 0, 0, 0]), r"got \[-1\]"),
    (np.zeros(6, np.float32), "integer class indices, got dtype float32"),
])
def test_bad_labels(tiny, images, labels, match):
    with pytest.raises(ValueError, match=match):
        attacks.generate(tiny, images, labels=labels, attack="fgsm")


def test_model_without_normalize_or_with_a_non_affine_one():
    model = _linear(seed=9)
    images = np.zeros((1, *SHAPE), np.uint8)
    with pytest.raises(ValueError, match="has no `normalize`"):
        attacks.generate(_wrap(model, normalize=None), images, labels=[0])
    with pytest.raises(ValueError, match="not the same affine map"):
        attacks.generate(_wrap(model, normalize=lambda x: _normalize(x) ** 2), images, labels=[0])
    with pytest.raises(TypeError):
        attacks.generate("no such model" and 3, images, labels=[0])


def test_custom_models_have_no_geometry():
    assert _wrap(_linear(seed=10)).geometry is None


# ----------------------------------------------------------------------------------- real zoo model
@pytest.mark.slow
def test_pgd_fools_vgg16_bn_cifar10_on_most_evaluation_images():
    from causadv_lib import data, samples

    zm = zoo.get("vgg16_bn_cifar10")
    sample = samples.for_profile("vgg16_bn_cifar10", "cifar10_eval", "smoke")
    pool = data.pool("cifar10_eval")
    idx = pool.index_of(sample.ids)
    images, y = zm.geometry(pool.load(idx)), pool.labels[idx]
    r = attacks.generate(zm, images, labels=y, attack="pgd", eps=8 / 255, cache=False)
    assert np.abs(r.adversarial - images).max() <= 8 + 1e-3
    assert r.success.mean() >= 0.8, r.success
    f = attacks.generate(zm, images, labels=y, attack="fgsm", eps=8 / 255, cache=False)
    assert f.success.mean() <= r.success.mean(), "the iterative attack is at least as strong as FGSM"


# ------------------------------------------------------------------------------ the 8-bit grid (stored images)
@pytest.fixture(scope="module")
def cifar_cnn():
    """The session's small CIFAR CNN shape (untrained, seed 0) as a zoo model on 32 x 32 pixels (x / 255)."""
    from conftest import cifar_normalize, small_cifar_cnn
    return zoo.custom(small_cifar_cnn(seed=0, name="grid_cnn"), cifar_normalize, outputs="logits",
                      normalize=cifar_normalize, name="grid_cnn")


@pytest.fixture(scope="module")
def cifar_images():
    return np.random.default_rng(11).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)


def _cnn_predict(zm, pixels):
    return zm.predict_inputs(np.asarray(pixels, np.float32) / np.float32(255.0)).argmax(axis=1)


def test_stored_rounds_to_nearest_and_clips_to_uint8():
    got = attacks.stored(np.array([[-0.4, 0.49, 0.5, 1.5, 2.51, 254.6, 255.0004]], np.float32))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, [[0, 0, 0, 2, 3, 255, 255]])  # np.rint: halves to even
    assert attacks.grid_levels(8 / 255) == 8 and attacks.grid_levels(24 / 255) == 24
    assert attacks.grid_levels(8.5 / 255) == 8


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("attack", attacks.ATTACKS)
def test_grid_results_are_uint8_images_within_the_integer_budget(cifar_cnn, cifar_images, attack, targeted):
    y = _cnn_predict(cifar_cnn, cifar_images)
    r = attacks.generate(cifar_cnn, cifar_images, labels=y, attack=attack, eps=EPS, targeted=targeted, seed=3,
                         grid=True, cache=False)
    adv = r.adversarial
    assert adv.dtype == np.float32 and adv.shape == cifar_images.shape
    np.testing.assert_array_equal(adv, attacks.stored(adv))  # integers in [0, 255]: exactly a uint8 image
    assert np.abs(adv - cifar_images.astype(np.float32)).max() <= 8
    assert not np.array_equal(adv, cifar_images.astype(np.float32)), "the attack changed nothing"
    pred = _cnn_predict(cifar_cnn, attacks.stored(adv))
    np.testing.assert_array_equal(r.predicted, pred)
    np.testing.assert_array_equal(r.success, (pred == r.targets) if targeted else (pred != y))
    np.testing.assert_array_equal(attacks.rounded_success(cifar_cnn, r), r.success)
    assert r.grid and r.params["grid"] is True


def test_grid_is_deterministic_and_independent_of_the_batch_size(cifar_cnn, cifar_images):
    y = _cnn_predict(cifar_cnn, cifar_images)
    run = lambda attack, x=cifar_images, yy=y, targeted=True, **kw: attacks.generate(  # noqa: E731
        cifar_cnn, x, labels=yy, attack=attack, targeted=targeted, grid=True, cache=False, **kw).adversarial
    pgd = run("pgd", batch_size=5)
    np.testing.assert_array_equal(pgd, run("pgd", batch_size=2))
    np.testing.assert_array_equal(pgd, run("pgd", batch_size=1))
    np.random.seed(5)  # the global numpy state plays no part
    np.testing.assert_array_equal(pgd, run("pgd", batch_size=5))
    bim = run("bim", batch_size=5)
    assert not np.array_equal(pgd, bim), "the rounded random start makes PGD differ from BIM"
    # an image's (untargeted: targets follow the image order) BIM result does not depend on its run's other images
    np.testing.assert_array_equal(run("bim", targeted=False, batch_size=5)[2:],
                                  run("bim", x=cifar_images[2:], yy=y[2:], targeted=False, batch_size=2))


def test_grid_false_is_arts_plain_attack_and_grid_is_in_the_cache_key(cifar_cnn, cifar_images, monkeypatch):
    y = _cnn_predict(cifar_cnn, cifar_images)
    x = cifar_images.astype(np.float32)
    clf = attacks.art_classifier(cifar_cnn)
    onehot = np.eye(10, dtype=np.float32)[y]
    art_bim = attacks.art_attack(clf, "bim", EPS, False, 32).generate(x, onehot)
    art_bim = np.clip(art_bim, np.maximum(x - np.float32(8.0), 0), np.minimum(x + np.float32(8.0), 255))
    calls = []
    for name in ("_run", "_run_grid"):
        real = getattr(attacks, name)
        monkeypatch.setattr(attacks, name, lambda *a, _real=real, _n=name, **k: calls.append(_n) or _real(*a, **k))
    plain = attacks.generate(cifar_cnn, cifar_images, labels=y, attack="bim")
    np.testing.assert_array_equal(plain.adversarial, art_bim)
    assert not plain.grid and plain.params["grid"] is False
    on_grid = attacks.generate(cifar_cnn, cifar_images, labels=y, attack="bim", grid=True)
    again = attacks.generate(cifar_cnn, cifar_images, labels=y, attack="bim", grid=True)
    assert calls == ["_run", "_run_grid"], "grid is part of the key; the second grid call is a hit"
    np.testing.assert_array_equal(on_grid.adversarial, again.adversarial)
    assert again.grid


def test_cached_grid_entries_off_the_grid_are_refused(cifar_cnn, cifar_images, monkeypatch):
    y = _cnn_predict(cifar_cnn, cifar_images)
    real = attacks._run_grid

    def off_grid(zm, x, *args, **kwargs):
        adv, _ = real(zm, x, *args, **kwargs)
        adv = np.where((adv - x < 7) & (adv < 254), adv + np.float32(0.5), adv).astype(np.float32)
        return adv, attacks._predict(zm, adv)

    monkeypatch.setattr(attacks, "_run_grid", off_grid)
    attacks.generate(cifar_cnn, cifar_images, labels=y, attack="fgsm", grid=True)
    monkeypatch.setattr(attacks, "_run_grid", real)
    with pytest.warns(RuntimeWarning, match="off the 8-bit grid"):
        r = attacks.generate(cifar_cnn, cifar_images, labels=y, attack="fgsm", grid=True)
    np.testing.assert_array_equal(r.adversarial, attacks.stored(r.adversarial))


def test_rounded_success_is_the_success_of_the_uint8_images(cifar_cnn, cifar_images):
    y = _cnn_predict(cifar_cnn, cifar_images)
    for targeted in (False, True):
        r = attacks.generate(cifar_cnn, cifar_images, labels=y, attack="pgd", targeted=targeted, cache=False)
        assert not np.array_equal(r.adversarial, attacks.stored(r.adversarial)), "float PGD is off the grid"
        pred = _cnn_predict(cifar_cnn, attacks.stored(r.adversarial))
        want = (pred == r.targets) if targeted else (pred != y)
        np.testing.assert_array_equal(attacks.rounded_success(cifar_cnn, r), want)
    empty = attacks.generate(cifar_cnn, cifar_images[:0], labels=y[:0], attack="fgsm", grid=True)
    assert attacks.rounded_success(cifar_cnn, empty).shape == (0,)


def test_grid_refuses_clean_images_off_the_grid_and_warns_of_steps_that_round_away(cifar_cnn, cifar_images):
    y = _cnn_predict(cifar_cnn, cifar_images)
    x = cifar_images.astype(np.float32)
    x[1, 3, 4, 2] += 0.5
    with pytest.raises(ValueError, match=r"grid=True: images must hold integer pixel values .*image 1 has "
                                         r"\d+\.5 at \(3, 4, 2\)"):
        attacks.generate(cifar_cnn, x, labels=y, attack="fgsm", grid=True)
    with pytest.raises(ValueError, match="grid must be True or False"):
        attacks.generate(cifar_cnn, cifar_images, labels=y, attack="fgsm", grid="yes")
    r = attacks.generate(cifar_cnn, np.rint(x), labels=y, attack="fgsm", grid=True, cache=False)  # floats on the grid
    assert r.grid
    with pytest.warns(UserWarning, match="rounds back to where it started"):
        small = attacks.generate(cifar_cnn, cifar_images[:2], labels=y[:2], attack="bim", eps=2 / 255, grid=True,
                                 cache=False)
    np.testing.assert_array_equal(small.adversarial, cifar_images[:2].astype(np.float32))
