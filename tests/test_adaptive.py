"""The adaptive attacker: the differentiable CI (`ci.ci_function`) against the engine, and `adaptive.adaptive_attack`
against a CausAdvDetector fitted on the session's trained small CIFAR-10 CNN: budget, range, determinism, batch-size
independence, cache, input checks, and that the detector term moves the combined score toward the clean side."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers as L

from causadv_lib import adaptive, ci, data, zoo
from causadv_lib.detector import CausAdvDetector, NotFittedError
from conftest import cifar_normalize, small_cifar_cnn

EPS = 8 / 255
#: |differentiable CI - engine CI| <= TOL x the largest |CI| of the batch (float32 rounding; measured: <= 2e-6)
TOL = 1e-5


def _vgg_like(seed: int = 1) -> keras.Model:
    """Conv - Pool - Conv ("feat") - BN - ReLU - Pool - Flatten - Dense - ReLU - Dense - Softmax."""
    keras.utils.set_random_seed(seed)
    i = keras.Input((16, 16, 3))
    h = L.MaxPooling2D()(L.Conv2D(8, 3, padding="same", activation="relu")(i))
    h = L.BatchNormalization()(L.Conv2D(12, 3, padding="same", name="feat")(h))
    h = L.MaxPooling2D()(L.ReLU()(h))
    h = L.Dense(16, activation="relu")(L.Dropout(0.1)(L.Flatten()(h)))
    return keras.Model(i, L.Softmax()(L.Dense(5)(h)), name="vgg_like")


def _gap() -> keras.Model:
    m = small_cifar_cnn(3, name="gap_cnn")
    return keras.Model(m.inputs, L.Softmax()(m.outputs[0]), name="gap_cnn")


def _residual(seed: int = 2) -> keras.Model:
    """A skip connection after the CI layer: the generic path."""
    keras.utils.set_random_seed(seed)
    i = keras.Input((8, 8, 3))
    a = L.Conv2D(6, 3, padding="same", activation="relu", name="feat")(i)
    h = L.Add()([a, L.Conv2D(6, 3, padding="same")(a)])
    return keras.Model(i, L.Softmax()(L.Dense(4)(L.GlobalAveragePooling2D()(L.ReLU()(h)))), name="residual")


@pytest.mark.parametrize("make, path", [(_vgg_like, "closed_form_flatten_dense"), (_gap, "closed_form_gap"),
                                        (_residual, "generic")])
@pytest.mark.parametrize("definition", ["probability", "logit"])
def test_differentiable_ci_matches_the_engine_and_has_gradients(make, path, definition):
    model = make()
    x = np.random.default_rng(0).uniform(0, 1, (20, *model.input_shape[1:])).astype(np.float32)
    f = ci.ci_function(model, "feat", definition)
    ref = ci.counterfactual_information(model, x, "feat", definition=definition)
    assert f.path == ref.path == path
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        got, logits = f(xt)
        total = tf.reduce_sum(got)
    assert got.dtype == tf.float32 and got.shape == ref.ci.shape
    np.testing.assert_allclose(got.numpy(), ref.ci, rtol=0, atol=TOL * np.abs(ref.ci).max())
    np.testing.assert_array_equal(logits.numpy().argmax(axis=1), ref.predicted)
    g = tape.gradient(total, xt).numpy()
    assert np.isfinite(g).all()
    assert (np.abs(g).reshape(len(x), -1).max(axis=1) > 0).all(), "every image has a non-zero gradient"


def test_differentiable_ci_refuses_a_model_without_readable_logits():
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 3, activation="relu", name="feat")(i)
    model = keras.Model(i, L.Dense(3, activation="sigmoid")(L.GlobalAveragePooling2D()(h)), name="no_softmax")
    with pytest.raises(ValueError, match="no_softmax.*feat.*logits"):
        ci.ci_function(model, "feat")


# ------------------------------------------------------------------------------------------ the attack
@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def setup(trained_cifar_cnn):
    """(a detector fitted on 600 clean evaluation images, 20 other images it passes and classifies correctly, their
    labels)."""
    zm = zoo.custom(trained_cifar_cnn, cifar_normalize, outputs="logits", normalize=cifar_normalize, name="tiny_cnn")
    ev = data.pool("cifar10_eval")
    order = np.random.default_rng(1).permutation(len(ev))
    fit, rest = np.sort(order[:600]), np.sort(order[600:1000])
    labels = np.asarray(ev.labels)
    det = CausAdvDetector(zm)
    det.fit(ev.load(fit), labels[fit])
    x, y = ev.load(rest), labels[rest]
    report, flagged = det.detect(x)
    keep = (report["predicted"] == y) & ~flagged
    assert keep.sum() >= 20
    return det, x[keep][:20], y[keep][:20]


def test_iterates_are_in_budget_in_range_deterministic_and_independent_of_the_batch(setup):
    det, x, y = setup
    run = lambda **kw: adaptive.adaptive_attack(det, x, y, eps=EPS, iterations=(2, 5), cache=False,  # noqa: E731
                                                progress=False, **kw)
    a, b, c = run(batch_size=16), run(batch_size=16), run(batch_size=64)
    assert a.iterations == (2, 5)
    for t in a.iterations:
        adv = a.adversarial[t]
        assert adv.dtype == np.float32 and adv.shape == x.shape
        assert adv.min() >= 0.0 and adv.max() <= 255.0
        assert np.abs(adv - x).max() <= np.float32(EPS * 255) * (1 + 1e-6)
        np.testing.assert_array_equal(adv, b.adversarial[t])            # deterministic
        np.testing.assert_array_equal(adv, c.adversarial[t])            # batch-size independent, bit for bit
        np.testing.assert_array_equal(a.predicted[t], c.predicted[t])
    assert not np.array_equal(a.adversarial[2], a.adversarial[5])
    # the iterate at t does not depend on how long the run is (the step schedule follows the step index)
    short = adaptive.adaptive_attack(det, x, y, eps=EPS, iterations=2, cache=False, progress=False)
    assert short.iterations == (2,)
    np.testing.assert_array_equal(short.adversarial[2], a.adversarial[2])


def test_the_detector_term_moves_the_combined_score_toward_clean(setup):
    det, x, y = setup
    its = (10, 40)
    plain = adaptive.adaptive_attack(det, x, y, eps=EPS, iterations=its, weight=0, cache=False, progress=False)
    adapt = adaptive.adaptive_attack(det, x, y, eps=EPS, iterations=its, cache=False, progress=False)
    ev_plain, ev_adapt = adaptive.evaluate_adaptive(det, plain, y), adaptive.evaluate_adaptive(det, adapt, y)
    for t in its:
        for e in (ev_plain[t], ev_adapt[t]):
            assert set(e) >= {"attack_success", "tpr", "defended_accuracy", "misclassified"}
            assert 0 <= e["attack_success"] <= e["misclassified"] <= 1
            assert e["defended_accuracy"] == pytest.approx(1 - e["attack_success"])
    assert ev_plain[40]["misclassified"] >= 0.5, "plain PGD should fool this weak model on most images"
    assert ev_adapt[40]["combined_score"] < ev_plain[40]["combined_score"] - 0.01
    assert ev_adapt[40]["attack_success"] >= ev_plain[40]["attack_success"] - 0.1


def test_cache_hit_equals_recompute_and_parameters_change_the_key(setup, monkeypatch):
    det, x, y = setup
    calls = []
    real = adaptive._run

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(adaptive, "_run", counting)
    kw = dict(eps=EPS, iterations=(1, 3), progress=False)
    first = adaptive.adaptive_attack(det, x[:4], y[:4], **kw)
    again = adaptive.adaptive_attack(det, x[:4], y[:4], **kw)
    fresh = adaptive.adaptive_attack(det, x[:4], y[:4], cache=False, **kw)
    assert len(calls) == 2
    for t in (1, 3):
        np.testing.assert_array_equal(first.adversarial[t], again.adversarial[t])
        np.testing.assert_array_equal(first.adversarial[t], fresh.adversarial[t])
        np.testing.assert_array_equal(first.predicted[t], again.predicted[t])
    adaptive.adaptive_attack(det, x[:4], y[:4], weight=0.5, **kw)
    adaptive.adaptive_attack(det, x[:4], y[:4], seed=7, **kw)
    adaptive.adaptive_attack(det, x[:4], y[:4], **(kw | {"iterations": (1, 2)}))
    assert len(calls) == 5


def test_bad_inputs_are_refused_by_name(setup):
    det, x, y = setup
    unfitted = CausAdvDetector(det.zoo_model)
    with pytest.raises(NotFittedError, match="not fitted"):
        adaptive.adaptive_attack(unfitted, x[:2], y[:2], eps=EPS)
    with pytest.raises(ValueError, match="detector"):
        adaptive.adaptive_attack(det.zoo_model, x[:2], y[:2], eps=EPS)
    for eps in (0, 8, -0.1, float("nan")):
        with pytest.raises(ValueError, match="eps"):
            adaptive.adaptive_attack(det, x[:2], y[:2], eps=eps)
    with pytest.raises(ValueError, match="shape|size"):
        adaptive.adaptive_attack(det, x[:2, :16], y[:2], eps=EPS)
    with pytest.raises(ValueError, match=r"\[0, 1\]|255"):
        adaptive.adaptive_attack(det, x[:2].astype(np.float32) / 255, y[:2], eps=EPS)
    with pytest.raises(ValueError, match="labels"):
        adaptive.adaptive_attack(det, x[:2], y[:3], eps=EPS)
    with pytest.raises(ValueError, match="iterations"):
        adaptive.adaptive_attack(det, x[:2], y[:2], eps=EPS, iterations=(0, 5))
    with pytest.raises(ValueError, match="weight"):
        adaptive.adaptive_attack(det, x[:2], y[:2], eps=EPS, weight=-1)
