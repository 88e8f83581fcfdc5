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
