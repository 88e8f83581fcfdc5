"""Same answer every time: batch-invariant CI, cache keys that cannot go stale, bad input refused."""

import keras
import numpy as np
import pytest
from keras import layers as L

from causadv_lib import cache, ci, data, prototypes, runner, zoo


def _gap_model(scale=None, input_scale=None):
    keras.utils.set_random_seed(3)
    x = i = keras.Input((6, 6, 3))
    if input_scale is not None:
        x = L.Rescaling(input_scale)(x)
    x = L.Conv2D(5, 3, padding="same", activation="relu", name="act")(x)
    x = L.Dense(4, name="logits")(L.GlobalAveragePooling2D()(x))
    if scale is not None:
        x = L.Rescaling(scale)(x)
    return keras.Model(i, L.Softmax(name="probs")(x), name="net")


def _images(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 6, 6, 3)).astype(np.float32)


class _Counter:
    """Counts the CI computations behind `ci.counterfactual_information` (cache misses)."""

    def __init__(self, monkeypatch):
        self.n = 0
        for module, name in ((ci.engine, "run_closed"), (ci.engine, "run_generic"), (ci.naive, "run_naive")):
            orig = getattr(module, name)

            def wrapped(*a, _orig=orig, **k):
                self.n += 1
                return _orig(*a, **k)
            monkeypatch.setattr(module, name, wrapped)


# ------------------------------------------------------------------------------------ batching
@pytest.mark.parametrize("name,pool,n", [("vgg16_bn_cifar10", "cifar10_eval", 40),
                                         ("resnet20_cifar10", "cifar10_eval", 40),
                                         ("mobilenet_v2_imagenet", "imagenet_eval", 40)])
def test_zoo_ci_is_bit_identical_whatever_the_batching(name, pool, n):
    """40 evaluation images, batch sizes 1, 7 and 32, and a shuffled order: identical arrays and zero sets."""
    zm = zoo.get(name)
    p = data.pool(pool)
    x = zm.preprocess(p.load(np.arange(0, len(p), len(p) // n)[:n]))
    ref = ci.counterfactual_information(zm.model, x, zm.ci_layer, batch_size=1, progress=False)
    perm = np.random.default_rng(0).permutation(n)
    for bs, order in [(7, None), (32, None), (7, perm), (32, perm[::-1])]:
        xs = x if order is None else x[order]
        res = ci.counterfactual_information(zm.model, xs, zm.ci_layer, batch_size=bs, progress=False)
        back = np.argsort(order) if order is not None else slice(None)
        np.testing.assert_array_equal(res.ci[back], ref.ci)
        np.testing.assert_array_equal(res.ci[back] == 0, ref.ci == 0)
        np.testing.assert_array_equal(res.predicted[back], ref.predicted)
        np.testing.assert_array_equal(res.probability[back], ref.probability)
    # an image computed alone gives the same vector as in the crowd
    alone = ci.counterfactual_information(zm.model, x[5:6], zm.ci_layer, progress=False)
    np.testing.assert_array_equal(alone.ci[0], ref.ci[5])


@pytest.mark.parametrize("method", ["auto", "generic", "naive"])
def test_every_path_is_batch_invariant(method):
    model = _gap_model()
    x = _images(11, seed=4)
    ref = ci.counterfactual_information(model, x, method=method, batch_size=1)
    perm = np.random.default_rng(1).permutation(11)
    for bs in (3, 32):
        res = ci.counterfactual_information(model, x[perm], method=method, batch_size=bs)
        np.testing.assert_array_equal(res.ci[np.argsort(perm)], ref.ci)


def test_predictions_do_not_depend_on_the_batch_size():
    model = _gap_model()
    x = _images(37)
    a, la = runner.with_logits(model, x, batch_size=1)
    b, lb = runner.with_logits(model, x, batch_size=64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)


# ------------------------------------------------------------------------------------ CI cache
def test_ci_cache_hits_and_recomputes_on_every_changed_input(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    count = _Counter(monkeypatch)
    model, x = _gap_model(), _images(3)
    a = ci.counterfactual_information(model, x, cache=True)
    assert count.n == 1
    b = ci.counterfactual_information(model, x, cache=True, batch_size=1)   # batching is not a key part
    assert count.n == 1
    np.testing.assert_array_equal(a.ci, b.ci)
    changes = [
        lambda: ci.counterfactual_information(model, x[:2], cache=True),
        lambda: ci.counterfactual_information(model, x, target=1, cache=True),
        lambda: ci.counterfactual_information(model, x, definition="logit", cache=True),
        lambda: ci.counterfactual_information(model, x, method="generic", cache=True),
        lambda: ci.counterfactual_information(model, x, layer="act", outputs="probabilities", method="naive",
                                              cache=True),
    ]
    for i, change in enumerate(changes):
        change()
        assert count.n == 2 + i
    # the same weights with a weightless layer inserted before the softmax: a different model
    scaled = _gap_model(scale=0.05)
    scaled.get_layer("act").set_weights(model.get_layer("act").get_weights())
    scaled.get_layer("logits").set_weights(model.get_layer("logits").get_weights())
    n = count.n
    c = ci.counterfactual_information(scaled, x, cache=True)
    assert count.n == n + 1
    assert np.abs(c.probability - a.probability).max() > 0.01
    # changed weights, in place
    w, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([w * 2, bias])
    ci.counterfactual_information(model, x, cache=True)
    assert count.n == n + 2
    np.testing.assert_array_equal(c.probability, ci.counterfactual_information(scaled, x).probability)


@pytest.mark.parametrize("damage", ["truncated", "empty", "missing_array", "garbage"])
def test_a_corrupted_ci_cache_entry_is_recomputed_with_a_warning(tmp_path, monkeypatch, damage, damage_entry):
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    model, x = _gap_model(), _images(2)
    a = ci.counterfactual_information(model, x, cache=True)
    (f,) = (tmp_path / "ci").glob("*.npz")
    damage_entry(f, damage, keep="predicted")  # the last kind: a valid npz without the "ci" array
    count = _Counter(monkeypatch)
    with pytest.warns(RuntimeWarning, match=f.name):
        b = ci.counterfactual_information(model, x, cache=True)
    assert count.n == 1
    np.testing.assert_array_equal(a.ci, b.ci)
    c = ci.counterfactual_information(model, x, cache=True)    # the replaced entry is good again
    assert count.n == 1
    np.testing.assert_array_equal(a.ci, c.ci)


def test_cache_load_of_a_corrupted_file_warns_and_deletes(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    k = cache.key("x")
    p = cache.save("things", k, {"a": np.arange(3)})
    p.write_bytes(b"not a zip")
    with pytest.warns(RuntimeWarning, match="unusable"):
        assert cache.load("things", k) is None
    assert not p.exists()


# ----------------------------------------------------------------------------- prototype cache
def _pool(labels, n_classes=4, seed=0):
    imgs = np.random.default_rng(seed).integers(0, 256, size=(len(labels), 6, 6, 3), dtype=np.uint8)
    return data.ImagePool("toy", tuple(f"t{i}" for i in range(len(labels))), np.asarray(labels),
                          tuple(str(c) for c in range(n_classes)), lambda idx: imgs[idx])


def _toy_zoo(model):
    return zoo.custom(model, lambda u: np.asarray(u, np.float32) / 127.5 - 1, name="toy")


def test_prototype_cache_recomputes_on_every_changed_input(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    model = _gap_model()
    zm = _toy_zoo(model)
    x = zm.preprocess(_pool(np.zeros(24, int))._load(np.arange(24)))
    pred = runner.probabilities(model, x).argmax(1)
    calls = []
    orig = prototypes.select_prototypes
    monkeypatch.setattr(prototypes, "select_prototypes", lambda *a, **k: calls.append(1) or orig(*a, **k))
    right = _pool(pred)
    wrong = _pool((pred + 1) % 4)
    bad = prototypes.for_pool(zm, wrong)
    good = prototypes.for_pool(zm, right)
    assert len(calls) == 2
    assert set(good.classes) == set(np.unique(pred)) and good.classes != bad.classes
    assert prototypes.for_pool(zm, right).classes == good.classes and len(calls) == 2   # a hit
    for changed in [lambda: prototypes.for_pool(zm, _pool(pred, n_classes=5)),           # class count
                    lambda: prototypes.for_pool(zm, right, limit=12),                     # the images
                    lambda: prototypes.for_pool(zm, right, definition="logit"),           # definition
                    lambda: prototypes.for_pool(zm, _pool(pred, seed=1)),                 # pixels
                    lambda: prototypes.for_pool(_toy_zoo(_gap_model(input_scale=0.5)), right)]:  # architecture
        n = len(calls)
        changed()
        assert len(calls) == n + 1
    # a corrupted entry is recomputed with a warning
    for f in (tmp_path / "prototypes").glob("*.npz"):
        f.write_bytes(b"")
    n = len(calls)
    with pytest.warns(RuntimeWarning, match="unusable"):
        again = prototypes.for_pool(zm, right)
    assert len(calls) == n + 1 and again.classes == good.classes
    np.testing.assert_array_equal(again.ci, good.ci)


# --------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad,match", [
    (lambda x: (x * 40 + 120).clip(0, 255).astype(np.uint8), "dtype uint8"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), "NaN or Inf"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.inf, x), "NaN or Inf"),
    (lambda x: x[:, :4], "shape"),
])
def test_bad_images_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        ci.counterfactual_information(_gap_model(), bad(_images(3)))


@pytest.mark.parametrize("batch_size", [0, -3, None, 2.5, True])
def test_bad_batch_sizes_are_refused(batch_size):
    with pytest.raises(ValueError, match=r"batch_size=.*positive integer"):
        ci.counterfactual_information(_gap_model(), _images(2), batch_size=batch_size)


@pytest.mark.parametrize("target,match", [(3.7, "integer class indices"), ([0, 1], r"shape \(2,\)"),
                                          (4, r"\[0, 4\)"), (-2, r"\[0, 4\)"), (np.array([1.0, 2.0, 3.0]),
                                                                            "integer class indices")])
def test_bad_targets_are_refused(target, match):
    with pytest.raises(ValueError, match=match):
        ci.counterfactual_information(_gap_model(), _images(3), target=target)


def test_logits_requested_for_a_softmax_model_is_refused():
    with pytest.raises(ValueError, match="ends in a softmax"):
        ci.counterfactual_information(_gap_model(), _images(2), outputs="logits")


def test_probability_definition_on_a_logit_model_is_refused():
    keras.utils.set_random_seed(5)
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(5, 3, padding="same", activation="relu", name="act")(i)
    logit_model = keras.Model(i, L.Dense(4)(L.GlobalAveragePooling2D()(x)))
    with pytest.raises(ValueError, match="not a probability vector"):
        ci.counterfactual_information(logit_model, _images(3) * 5)
    res = ci.counterfactual_information(logit_model, _images(3) * 5, outputs="logits", definition="logit")
    assert res.ci.shape == (3, 5)


def test_an_empty_batch_gives_an_empty_result():
    model = _gap_model()
    for method in ("auto", "generic", "naive"):
        res = ci.counterfactual_information(model, np.zeros((0, 6, 6, 3), np.float32), method=method)
        assert res.ci.shape == (0, 5) and res.ci.dtype == np.float32
        assert res.predicted.shape == res.probability.shape == res.target.shape == (0,)
    assert ci.reference_ablation(model, np.zeros((0, 6, 6, 3), np.float32), filters=[1, 2]).ci.shape == (0, 2)
