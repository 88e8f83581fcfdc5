"""Prototypes: the most confident correctly classified instance per class, with its CI vector."""
import warnings

import keras
import numpy as np
import pytest
from keras import layers as L

from causadv_lib import ci, runner
from causadv_lib.prototypes import MissingPrototypesWarning, Prototypes, select_prototypes


def _model():
    keras.utils.set_random_seed(11)
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(5, 3, padding="same", activation="relu", name="act")(i)
    x = L.Dense(4, name="logits")(L.GlobalAveragePooling2D()(x))
    return keras.Model(i, L.Softmax()(x), name="proto_net")


def test_selects_the_most_confident_correct_instance(tmp_path):
    model = _model()
    x = np.random.default_rng(0).normal(size=(40, 6, 6, 3)).astype(np.float32)
    probs = runner.probabilities(model, x)
    pred = probs.argmax(1)
    labels = pred.copy()
    labels[::3] = (labels[::3] + 1) % 4           # a third misclassified on purpose
    absent = 3
    labels[labels == absent] = (absent + 1) % 4   # no instance of class 3 at all
    ids = [f"img{i:03d}" for i in range(len(x))]
    with pytest.warns(MissingPrototypesWarning, match="no correctly classified image of class(es)? .*3"):
        pr = select_prototypes(model, x, labels, ids, layer="act", batch_size=7)
    assert pr.num_classes == 4 and absent in pr.missing
    assert pr.index[absent] == -1 and pr.ids[absent] == "" and np.isnan(pr.ci[absent]).all()
    with pytest.raises(KeyError):
        pr.vector(absent)
    for c in range(4):
        if c in pr.missing:
            continue
        ok = np.flatnonzero((labels == c) & (pred == c))
        best = ok[np.argmax(probs[ok, c])]
        assert probs[pr.index[c], c] == probs[best, c] and pred[pr.index[c]] == c
        assert pr.ids[c] == ids[pr.index[c]]
        np.testing.assert_allclose(pr.probability[c], probs[pr.index[c], c], rtol=1e-6)
        ref = ci.counterfactual_information(model, x[pr.index[c]:pr.index[c] + 1], "act")
        np.testing.assert_array_equal(pr.vector(c), ref.ci[0])
    pr.save(tmp_path / "protos")
    back = Prototypes.load(tmp_path / "protos")
    assert back.ids == pr.ids and back.missing == pr.missing and back.layer == "act"
    np.testing.assert_array_equal(back.ci, pr.ci)
    np.testing.assert_array_equal(back.index, pr.index)


def test_ties_at_probability_one_are_broken_by_log_probability():
    model = _model()
    w, _ = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([w, np.array([60.0, 0, 0, 0], np.float32)])  # saturated class 0
    x = np.random.default_rng(1).normal(size=(12, 6, 6, 3)).astype(np.float32)
    probs, logits = runner.with_logits(model, x)
    assert np.all(probs[:, 0] >= np.float32(0.99999994))  # 1.0 or one ulp below, by batch position
    with pytest.warns(MissingPrototypesWarning, match="3 of 4 classes have no prototype"):
        pr = select_prototypes(model, x, np.zeros(12, int), [str(i) for i in range(12)], layer="act")
    margin = logits[:, 0] - np.log(np.exp(logits[:, 1:]).sum(1))
    assert pr.index[0] == np.argmax(margin)
    assert pr.missing == (1, 2, 3) and pr.probability[0] == 1.0


# ------------------------------------------------------------------------------- your own images
def _zoo_model():
    from causadv_lib import zoo
    return zoo.custom(_model(), lambda im: np.asarray(im, np.float32) / 127.5 - 1, name="proto_zm",
                      class_names=["a", "b", "c", "d"])


@pytest.mark.filterwarnings("ignore::causadv_lib.prototypes.MissingPrototypesWarning")  # 2 of its 4 classes predicted
def test_from_images_is_images_and_labels_in_prototypes_out(tmp_path, monkeypatch):
    from causadv_lib import prototypes
    from causadv_lib.data import ImagePool

    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    zm = _zoo_model()
    imgs = np.random.default_rng(3).integers(0, 256, (30, 6, 6, 3), dtype=np.uint8)
    labels = zm.predict(imgs).argmax(1)
    pr = prototypes.from_images(zm, imgs, labels)
    ref = select_prototypes(zm.model, zm.preprocess(imgs), labels, [str(i) for i in range(30)], layer=zm.ci_layer)
    np.testing.assert_array_equal(pr.index, ref.index)
    np.testing.assert_array_equal(pr.ci, ref.ci)
    assert pr.ids == ref.ids and pr.layer == "act"
    as_list = prototypes.from_images(zm, list(imgs), labels, ids=[f"im{i}" for i in range(30)], cache=True)
    np.testing.assert_array_equal(as_list.ci, pr.ci)
    assert as_list.ids[pr.classes[0]] == f"im{pr.index[pr.classes[0]]}"
    pool = ImagePool.from_arrays(imgs, labels, zm.class_names)
    np.testing.assert_array_equal(prototypes.for_pool(zm, pool, cache=False).ci, pr.ci)
    lazy = ImagePool.from_loader("lazy", [str(i) for i in range(30)], labels, zm.class_names, lambda idx: imgs[idx])
    np.testing.assert_array_equal(lazy.load([3, 1]), imgs[[3, 1]])


def test_mix_ups_get_errors_that_say_what_to_do():
    from causadv_lib import prototypes
    from causadv_lib.data import DataError, ImagePool

    zm = _zoo_model()
    imgs = np.random.default_rng(4).integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    labels = np.arange(8) % 4
    with pytest.raises(TypeError, match="ZooModel.*from_images"):
        select_prototypes(zm, zm.preprocess(imgs), labels, list("abcdefgh"))
    with pytest.raises(ValueError, match="dtype uint8.*from_images"):
        select_prototypes(zm.model, imgs, labels, list("abcdefgh"))
    with pytest.raises(TypeError, match="ZooModel.*zoo.custom"):
        prototypes.for_pool(zm.model, ImagePool.from_arrays(imgs, labels))
    with pytest.raises(TypeError, match="ImagePool.*from_images"):
        prototypes.for_pool(zm, imgs)
    with pytest.raises(TypeError, match="ZooModel.*zoo.custom"):
        prototypes.from_images(zm.model, imgs, labels)
    with pytest.raises(ValueError, match="float32.*uint8 RGB.*select_prototypes"):
        prototypes.from_images(zm, zm.preprocess(imgs), labels)
    with pytest.raises(ValueError, match="labels outside"):
        prototypes.from_images(zm, imgs, labels + 4)
    with pytest.raises(ValueError, match="8 images but 3 labels"):
        prototypes.from_images(zm, imgs, labels[:3])
    with pytest.raises(DataError, match="uint8 RGB"):
        ImagePool.from_arrays(imgs[..., 0], labels)


# ------------------------------------------------------------------------------- classes without a prototype
def _saturated(classes: int = 10):
    """A model that predicts class 0 for every input."""
    keras.utils.set_random_seed(12)
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(5, 3, padding="same", activation="relu", name="act")(i)
    head = L.Dense(classes, name="logits")
    x = head(L.GlobalAveragePooling2D()(x))
    model = keras.Model(i, L.Softmax()(x), name="saturated")
    w, b = head.get_weights()
    head.set_weights([w * 0, np.r_[30.0, np.zeros(classes - 1)].astype(np.float32)])
    return model


def test_classes_without_a_prototype_are_warned_about_by_every_entry_point(tmp_path, monkeypatch):
    from causadv_lib import prototypes, zoo
    from causadv_lib.data import ImagePool

    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    model = _saturated()
    x = np.random.default_rng(5).normal(size=(20, 6, 6, 3)).astype(np.float32)
    labels = np.arange(20) % 10                        # every class present, only class 0 correctly classified
    with pytest.warns(MissingPrototypesWarning) as record:
        pr = select_prototypes(model, x, labels, [str(i) for i in range(20)], layer="act")
    assert pr.missing == tuple(range(1, 10)) and len(record) == 1
    assert str(record[0].message) == (
        "9 of 10 classes have no prototype: no correctly classified image of classes 1, 2, 3, 4, 5 and 4 more among "
        "the 20 images searched; strategies 2 and 4 do not count samples predicted as these classes "
        "(Prototypes.missing lists them)")
    assert record[0].filename == __file__ and issubclass(MissingPrototypesWarning, UserWarning)

    names = [f"c{k}" for k in range(10)]
    zm = zoo.custom(model, lambda im: np.asarray(im, np.float32) / 127.5 - 1, name="sat", class_names=names)
    imgs = np.random.default_rng(6).integers(0, 256, (20, 6, 6, 3), dtype=np.uint8)
    for cache in (False, True, True):                  # computed, stored, read from the cache: one warning each
        with pytest.warns(MissingPrototypesWarning, match=r"9 of 10 .* classes 1 \('c1'\), 2 \('c2'\), 3 "
                                                          r"\('c3'\), 4 \('c4'\), 5 \('c5'\) and 4 more") as record:
            prototypes.from_images(zm, imgs, labels, cache=cache)
        assert len(record) == 1 and record[0].filename == __file__
    pool = ImagePool.from_arrays(imgs, np.where(labels == 1, 1, 0), names)   # class 1 misclassified, 2..9 absent
    with pytest.warns(MissingPrototypesWarning, match=r"among the 10 images searched") as record:
        prototypes.for_pool(zm, pool, limit=10, cache=False)
    assert len(record) == 1 and record[0].filename == __file__


def test_no_warning_when_every_class_has_a_prototype():
    i = keras.Input((6, 6, 3))
    act = L.Conv2D(2, 1, activation="relu", name="act")
    head = L.Dense(2, name="logits")
    model = keras.Model(i, L.Softmax()(head(L.GlobalAveragePooling2D()(act(i)))))
    act.set_weights([np.float32([[[[1, -1], [0, 0], [0, 0]]]]), np.zeros(2, np.float32)])   # relu(+-channel 0)
    head.set_weights([np.eye(2, dtype=np.float32) * 5, np.zeros(2, np.float32)])
    x = np.stack([np.full((6, 6, 3), v, np.float32) for v in (1.0, -1.0, 0.5)])           # classes 0, 1, 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingPrototypesWarning)
        pr = select_prototypes(model, x, [0, 1, 0], ["a", "b", "c"], layer="act")
    assert pr.missing == () and pr.index.tolist() == [0, 1]


@pytest.mark.parametrize("definition", ["log_probability", "logit"])
def test_with_definition_equals_a_search_under_that_definition(tmp_path, monkeypatch, definition):
    """The prototypes under another CI definition are the same images with their CI vectors recomputed: bit for
    bit what a whole new search under that definition gives (limit and missing classes included)."""
    from causadv_lib import prototypes
    from causadv_lib.data import ImagePool

    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    zm = _zoo_model()
    imgs = np.random.default_rng(5).integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    labels = zm.predict(imgs).argmax(1)
    labels[labels == labels[0]] = (labels[0] + 1) % 4        # one class never correct: a missing prototype
    pool = ImagePool.from_arrays(imgs, labels, zm.class_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingPrototypesWarning)
        base = prototypes.for_pool(zm, pool, limit=30, cache=False)
        want = prototypes.for_pool(zm, pool, limit=30, definition=definition, cache=False)
    got = prototypes.with_definition(base, zm, pool, definition, cache=False)
    assert got.definition == definition and got.missing == want.missing and len(got.missing) >= 1
    for f in ("index", "probability", "ci"):
        assert getattr(got, f).tobytes() == getattr(want, f).tobytes(), f
    assert got.ids == want.ids and got.layer == want.layer
    assert prototypes.with_definition(base, zm, pool, "probability") is base
