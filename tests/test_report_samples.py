"""report: atomic, deterministic outputs; samples: seeded choice and the committed-list format."""
import json

import numpy as np
import pytest

from causadv_lib import config, report, samples


def _write(tmp_path, value):
    rep = report.Report("nb", "smoke", out_dir=tmp_path)
    rep.record("acc", np.float32(0.5))
    rep.record("counts", np.arange(3))
    rep.table("t", [{"model": "m", "top1": value, "n": np.int64(3)}], caption="c")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([0, 1], [value, 1])
    rep.figure(fig, "f")
    plt.close(fig)
    return rep.save()


def test_report_is_deterministic_and_complete(tmp_path):
    a = _write(tmp_path / "a", 0.25)
    b = _write(tmp_path / "b", 0.25)
    for name in ["nb.json", "t.csv", "t.md", "f.png", "f.pdf"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    res = json.loads(a.read_text())
    assert res["values"] == {"acc": 0.5, "counts": [0, 1, 2]}
    assert res["tables"]["t"]["rows"] == [{"model": "m", "top1": 0.25, "n": 3}]
    assert res["figures"] == ["f"] and res["profile"] == "smoke"
    assert "| m | 0.2500 | 3 |" in (tmp_path / "a" / "t.md").read_text()
    assert not list((tmp_path / "a").glob(".*tmp"))


def test_report_rejects_unknown_profile(tmp_path):
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        report.Report("nb", "huge", out_dir=tmp_path)


def test_choose_is_seeded_correct_and_stratified():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    predicted = np.where(rng.random(200) < 0.8, labels, (labels + 1) % 10)
    a = samples.choose(labels, predicted, n_classes=4, per_class=3, seed=1)
    b = samples.choose(labels, predicted, n_classes=4, per_class=3, seed=1)
    c = samples.choose(labels, predicted, n_classes=4, per_class=3, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(labels[a] == predicted[a])
    assert len(np.unique(labels[a])) == 4 and np.all(np.bincount(labels[a])[np.unique(labels[a])] == 3)
    assert list(labels[a]) == sorted(labels[a])


def test_choose_refuses_too_few_classes():
    labels = np.array([0, 0, 1])
    with pytest.raises(ValueError, match="only 1 classes"):
        samples.choose(labels, labels, n_classes=2, per_class=2)


def test_sample_list_roundtrip_and_subset(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "SAMPLES_DIR", tmp_path)
    s = samples.SampleList("m", "p", ("a", "b", "c", "d", "e"), (0, 0, 1, 1, 2))
    path = samples.write_list(s, rule="test")
    assert path.parent == tmp_path
    back = samples.load_list("m", "p")
    assert back == s
    sub = back.subset(n_classes=2, per_class=1)
    assert sub.ids == ("a", "c") and sub.labels == (0, 1)
    with pytest.raises(ValueError, match="fewer than 3"):
        back.subset(n_classes=2, per_class=3)


@pytest.mark.parametrize("model,pool", sorted(samples.PAPER_LISTS), ids=lambda v: str(v))
def test_committed_lists_match_their_pools(model, pool):
    from causadv_lib import data

    s = samples.load_list(model, pool)
    p = data.pool(pool)
    idx = p.index_of(s.ids)
    assert np.array_equal(p.labels[idx], np.array(s.labels)), "labels in the list differ from the pool's"
    assert len(set(s.ids)) == len(s.ids)
    prof = config.get_profile("paper")
    classes_attr, per_class_attr = samples.PAPER_LISTS[(model, pool)]
    counts = np.unique(s.labels, return_counts=True)[1]
    assert len(counts) == getattr(prof, classes_attr) and set(counts) == {getattr(prof, per_class_attr)}
    assert list(s.labels) == sorted(s.labels)
    for profile in config.PROFILES:
        sub = samples.for_profile(model, pool, profile)
        assert set(sub.ids) <= set(s.ids)


@pytest.mark.slow
@pytest.mark.parametrize("model,pool", sorted(samples.PAPER_LISTS), ids=lambda v: str(v))
def test_committed_lists_are_rederived_identically(model, pool):
    assert samples.derive(model, pool) == samples.load_list(model, pool)


def test_derived_sample_is_seeded_correct_spread_cached_and_warns_on_few_classes(tmp_path, monkeypatch):
    """A model without a committed list: its sample holds correctly classified images only, one class after
    another; only the classes with the paper scale's images per class (10 on CIFAR-10) are taken, with a
    FewClassesWarning; the choice is cached by the model's fingerprint (the second call predicts nothing)."""
    import keras

    from causadv_lib import data, zoo
    from causadv_lib.zoo import evaluate

    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path))
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    zm = zoo.custom(keras.Model(inp, out), lambda x: np.asarray(x, np.float32) / 255, name="tinyderived",
                    dataset="cifar10")
    labels = np.repeat(np.arange(10), 12)                    # 12 images per class
    predicted = labels.copy()
    predicted[labels >= 3] = (labels[labels >= 3] + 1) % 10  # classes 3-9: wrong on every image ...
    predicted[[36, 48]] = [3, 4]                              # ... but one image each of classes 3 and 4
    ids = tuple(f"img{i:03d}" for i in range(len(labels)))
    pool = data.ImagePool("cifar10_eval", ids, labels, data.CIFAR10_CLASSES, lambda idx: None)
    monkeypatch.setattr(data, "pool", lambda name: pool)
    calls = []
    monkeypatch.setattr(evaluate, "top1", lambda model, p, progress=False: calls.append(1) or
                        type("Top1", (), {"predictions": predicted})())
    with pytest.warns(samples.FewClassesWarning, match="only 3 classes"):
        first = samples.derived(zm, "cifar10_eval", "smoke")
    assert first.model == "tinyderived" and first.labels == (0, 1, 2)     # smoke: one image per class
    idx = [ids.index(i) for i in first.ids]
    assert all(predicted[i] == labels[i] for i in idx)
    with pytest.warns(samples.FewClassesWarning):
        again = samples.derived(zm, "cifar10_eval", "smoke")
    assert again == first and len(calls) == 1
    predicted[:] = (labels + 1) % 10                         # a model that is always wrong
    with pytest.raises(ValueError, match="no class of pool cifar10_eval"):
        samples.derived(zm, "cifar10_eval", "smoke", seed=2)   # another seed: another cache entry
