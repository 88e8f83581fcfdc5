"""On-disk cache: keys change with every parameter, hits return identical arrays, writes are atomic."""
import keras
import numpy as np
import pytest

from causadv_lib import cache


def test_key_is_stable_and_typed():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    k = cache.key("ci", a, "layer", 1, 0.5, None, {"b": 2, "a": [1, 2]})
    assert k == cache.key("ci", a.copy(), "layer", 1, 0.5, None, {"a": [1, 2], "b": 2})
    assert len({cache.key(1), cache.key(1.0), cache.key("1"), cache.key(True), cache.key(b"1")}) == 5
    assert cache.key("ab", "c") != cache.key("a", "bc")


@pytest.mark.parametrize("change", ["layer", "definition", "input_byte", "dtype", "shape", "version"])
def test_a_changed_parameter_changes_the_key(change):
    x = np.zeros((2, 4, 4, 3), np.float32)
    parts = dict(layer="relu13", definition="probability", x=x, version="0.1.0")
    base = cache.key(parts["layer"], parts["definition"], parts["x"], parts["version"])
    if change == "layer":
        parts["layer"] = "relu12"
    elif change == "definition":
        parts["definition"] = "log_probability"
    elif change == "input_byte":
        y = x.copy()
        y.view(np.uint8).reshape(-1)[17] ^= 1  # one bit of one input byte
        parts["x"] = y
    elif change == "dtype":
        parts["x"] = x.astype(np.float64)
    elif change == "shape":
        parts["x"] = x.reshape(4, 2, 4, 3)
    else:
        parts["version"] = "0.1.1"
    assert cache.key(parts["layer"], parts["definition"], parts["x"], parts["version"]) != base


def test_weights_fingerprint_follows_every_weight():
    keras.utils.set_random_seed(0)
    i = keras.Input((4, 4, 3))
    m = keras.Model(i, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(i))))
    fp = cache.weights_fingerprint(m)
    assert fp == cache.weights_fingerprint(m)
    w = m.layers[1].get_weights()
    w[1][0] += 1e-7  # one bias entry of the conv, in place on the same model object
    m.layers[1].set_weights(w)
    assert cache.weights_fingerprint(m) != fp


def test_save_load_roundtrip_and_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    k = cache.key("x")
    assert cache.load("unit", k) is None
    arrays = {"ci": np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32),
              "path": np.array("closed_form_gap"), "ids": np.array(["a", "bb"])}
    p = cache.save("unit", k, arrays)
    assert p == tmp_path / "unit" / f"{k}.npz" and not list(p.parent.glob("*.tmp"))
    got = cache.load("unit", k)
    assert set(got) == set(arrays)
    for name in arrays:
        np.testing.assert_array_equal(got[name], arrays[name])
        assert got[name].dtype == arrays[name].dtype


def test_bad_inputs_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    with pytest.raises(TypeError):
        cache.key(object())
    with pytest.raises(TypeError):
        cache.save("unit", cache.key(1), {"x": np.array([{}], dtype=object)})
    with pytest.raises(ValueError):
        cache.path("../escape", cache.key(1))
    with pytest.raises(ValueError):
        cache.path("unit", "not-a-key")
