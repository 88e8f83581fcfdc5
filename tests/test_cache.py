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


# ------------------------------------------------------------------------------------------ code hash
def _import_file(path, name):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=(
        [str(path.parent)] if path.name == "__init__.py" else None))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def fresh_modules(monkeypatch):
    """Import tiny modules from files; forget them (and their code hashes) afterwards."""
    import sys

    monkeypatch.setattr(cache, "_CODE_HASHES", {})
    names = []

    def make(path, name, text):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        names.append(name)
        return _import_file(path, name)
    yield make
    for name in names:
        sys.modules.pop(name, None)


def test_a_changed_function_source_changes_the_code_hash(tmp_path, fresh_modules):
    a = fresh_modules(tmp_path / "a" / "tinymod_a.py", "tinymod_a", "def f(x):\n    return x + 1\n")
    a2 = fresh_modules(tmp_path / "a2" / "tinymod_a2.py", "tinymod_a2", "def f(x):\n    return x + 1\n")
    b = fresh_modules(tmp_path / "b" / "tinymod_b.py", "tinymod_b", "def f(x):\n    return x + 2\n")
    assert a.f(1) != b.f(1)
    h = cache.code_hash(a)
    assert len(h) == 64 and h == cache.code_hash("tinymod_a")      # a module or its dotted name
    assert cache.code_hash(b) != h
    assert cache.code_hash(a2) != h                                   # the module name is part of it
    assert cache.code_hash(a, b) == cache.code_hash(b, a) == cache.code_hash(b, a, a)
    assert len({cache.code_hash(a, b), cache.code_hash(a), cache.code_hash(b)}) == 3


def test_code_hash_of_a_package_covers_every_py_file(tmp_path, fresh_modules):
    files = {"__init__.py": "from . import engine\n", "engine.py": "def run():\n    return 1\n",
             "sub/__init__.py": "", "sub/runner.py": "STEP = 8\n"}

    def package(where, changes={}):
        """Package `tinypkg` (same name every time) in its own folder, with `changes` to its files."""
        root = tmp_path / where / "tinypkg"
        for rel, text in {**files, **changes}.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        (root / "__pycache__").mkdir(exist_ok=True)
        (root / "__pycache__" / "stale.py").write_text("ignored\n")    # never hashed
        return cache.code_hash(fresh_modules(root / "__init__.py", "tinypkg", files["__init__.py"]))

    h = package("base")
    assert package("copy") == h, "the same files under the same name hash alike, wherever they are"
    assert package("pycache", {"__pycache__/other.py": "x = 1\n"}) == h
    for i, changes in enumerate([{"engine.py": "def run():\n    return 2\n"}, {"sub/runner.py": "STEP = 16\n"},
                                 {"extra.py": "# a new file\n"}, {"sub/__init__.py": "\n"}]):
        assert package(f"changed{i}", changes) != h, changes
    # a real module and a real package of the library
    from causadv_lib import ci, zoo
    assert cache.code_hash(ci) == cache.code_hash("causadv_lib.ci")
    assert cache.code_hash(zoo) != cache.code_hash(zoo.tflite)


def test_code_hash_is_computed_once_per_process(tmp_path, fresh_modules):
    f = tmp_path / "tinymod_once.py"
    mod = fresh_modules(f, "tinymod_once", "X = 1\n")
    h = cache.code_hash(mod)
    f.write_text("X = 2\n")         # the running process still runs X = 1: it keeps the hash of what it imported
    assert cache.code_hash(mod) == h
    assert cache._CODE_HASHES and all(len(v) == 64 for v in cache._CODE_HASHES.values())


def test_code_hash_refuses_what_it_cannot_hash():
    with pytest.raises(ValueError):
        cache.code_hash()
    with pytest.raises(TypeError):
        cache.code_hash(3)
    with pytest.raises(TypeError):
        import sys
        cache.code_hash(sys)        # built in: no source file
    with pytest.raises(ModuleNotFoundError):
        cache.code_hash("causadv_lib.no_such_module")


# -------------------------------------------------------------------------------------------- cached
class _Compute:
    def __init__(self, value=0.0):
        self.calls, self.value = 0, value

    def __call__(self):
        self.calls += 1
        rng = np.random.default_rng(self.calls)
        return {"x": rng.normal(size=(3, 4)).astype(np.float32) + np.float32(self.value),
                "n": np.arange(3, dtype=np.int64), "path": np.array("closed_form_gap")}


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    return tmp_path


def test_cached_hit_serves_identical_arrays_without_computing(own_cache):
    compute = _Compute()
    first = cache.cached("unit", ["a", np.ones(3)], compute, required=("x", "n"), code=(cache,))
    (f,) = (own_cache / "unit").glob("*.npz")
    again = cache.cached("unit", ["a", np.ones(3)], compute, required=("x", "n"), code=(cache,))
    assert compute.calls == 1
    assert set(again) == set(first) == {"x", "n", "path"}
    for name in first:
        assert again[name].dtype == first[name].dtype and again[name].shape == first[name].shape
        assert again[name].tobytes() == first[name].tobytes()
    assert str(again["path"]) == "closed_form_gap"
    assert list((own_cache / "unit").glob("*.npz")) == [f]


def test_cached_recomputes_on_a_changed_parameter_or_code(own_cache, tmp_path, fresh_modules):
    a = fresh_modules(tmp_path / "m" / "tinymod_c1.py", "tinymod_c1", "def f():\n    return 1\n")
    b = fresh_modules(tmp_path / "m" / "tinymod_c2.py", "tinymod_c2", "def f():\n    return 2\n")
    compute = _Compute()
    run = lambda parts, code=(a,): cache.cached("unit", parts, compute, code=code)  # noqa: E731
    run([1, "probability"])
    assert compute.calls == 1
    run([1, "probability"])
    assert compute.calls == 1
    for changed in ([2, "probability"], [1.0, "probability"], [1, "logit"], [1, "probability", None]):
        n = compute.calls
        run(changed)
        assert compute.calls == n + 1, changed
    run([1, "probability"], code=(b,))        # same parameters, other code
    assert compute.calls == 6
    run([1, "probability"], code=(a, b))
    assert compute.calls == 7
    run([1, "probability"])
    assert compute.calls == 7
    cache.cached("other", [1, "probability"], compute, code=(a,))   # the namespace is part of the key
    assert compute.calls == 8


def test_cached_validate_failure_warns_deletes_and_recomputes(own_cache):
    compute = _Compute()
    first = cache.cached("unit", [1], compute, code=(cache,))
    (f,) = (own_cache / "unit").glob("*.npz")
    seen = []

    def refuse_once(arrays):
        seen.append(sorted(arrays))
        return "x has the wrong shape" if len(seen) == 1 else None

    with pytest.warns(RuntimeWarning, match=rf"{f.name}.*x has the wrong shape"):
        second = cache.cached("unit", [1], compute, code=(cache,), validate=refuse_once)
    assert compute.calls == 2 and seen == [["n", "path", "x"]] * 2      # the refused entry, then the recomputation
    assert f.exists()                              # the recomputed entry replaced the refused one
    assert second["x"].tobytes() != first["x"].tobytes()          # recomputed (this compute differs per call)
    third = cache.cached("unit", [1], compute, code=(cache,), validate=refuse_once)
    assert compute.calls == 2 and third["x"].tobytes() == second["x"].tobytes() and len(seen) == 2


def test_cached_refused_entry_is_deleted_even_when_compute_fails(own_cache):
    cache.cached("unit", [1], _Compute(), code=(cache,))
    (f,) = (own_cache / "unit").glob("*.npz")

    def broken():
        raise RuntimeError("compute failed")
    with pytest.warns(RuntimeWarning, match="unusable"), pytest.raises(RuntimeError, match="compute failed"):
        cache.cached("unit", [1], broken, code=(cache,), validate=lambda a: "stale")
    assert not f.exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "missing_array"])
def test_cached_corrupted_entry_warns_deletes_and_recomputes(own_cache, damage, damage_entry):
    compute = _Compute()
    first = cache.cached("unit", [1], compute, required=("x", "n"), code=(cache,))
    (f,) = (own_cache / "unit").glob("*.npz")
    damage_entry(f, damage, keep="n")          # the last kind: a valid npz without the required "x"
    with pytest.warns(RuntimeWarning, match=f.name):
        second = cache.cached("unit", [1], compute, required=("x", "n"), code=(cache,))
    assert compute.calls == 2 and set(second) == set(first)
    cache.cached("unit", [1], compute, required=("x", "n"), code=(cache,))
    assert compute.calls == 2


def test_cached_refuses_bad_use(own_cache):
    with pytest.raises(TypeError):
        cache.cached("unit", [1], _Compute())                                  # code is required
    with pytest.raises(ValueError):
        cache.cached("unit", [1], _Compute(), code=())
    with pytest.raises(TypeError, match="dict"):
        cache.cached("unit", [1], lambda: np.zeros(3), code=(cache,))
    with pytest.raises(ValueError, match="required"):
        cache.cached("unit", [1], _Compute(), required=("ci",), code=(cache,))
    assert not list(own_cache.glob("unit/*.npz"))


def test_cached_validates_each_entry_content_once(own_cache):
    """`validate` runs once per entry's bytes: not on the hits after a computation or a passed check, and again
    on an entry whose bytes changed (a replaced file is checked, and refused here)."""
    compute, seen = _Compute(), []

    def check(arrays):
        seen.append(arrays["x"].tobytes())
        return None if arrays["n"][0] == 0 else "n does not start at 0"

    first = cache.cached("unit", [1], compute, code=(cache,), validate=check)
    assert compute.calls == 1 and len(seen) == 1                 # just computed: checked once, recorded
    for _ in range(2):
        hit = cache.cached("unit", [1], compute, code=(cache,), validate=check)
        assert hit["x"].tobytes() == first["x"].tobytes()
    assert compute.calls == 1 and len(seen) == 1
    cache.cached("unit", [2], compute, code=(cache,))           # written without a validator: checked on first use
    cache.cached("unit", [2], compute, code=(cache,), validate=check)
    cache.cached("unit", [2], compute, code=(cache,), validate=check)
    assert compute.calls == 2 and len(seen) == 2
    (f,) = [p for p in (own_cache / "unit").glob("*.npz")
            if p.read_bytes() == cache.path("unit", cache.key("unit", [1], ["code", cache.code_hash(cache)])).read_bytes()]
    np.savez(f, **(dict(first) | {"n": first["n"] + 1}))         # the same key, other bytes, a wrong entry
    with pytest.warns(RuntimeWarning, match=rf"{f.name}.*n does not start at 0"):
        again = cache.cached("unit", [1], compute, code=(cache,), validate=check)
    assert compute.calls == 3 and len(seen) == 4 and again["n"][0] == 0     # the refusal, then the recomputation


def test_mapped_arrays_of_a_checked_entry_are_read_only_views_of_its_bytes(own_cache):
    """`mapped` arrays of an entry whose bytes passed `validate` are served as read-only views of the file mapped
    in memory, bit-identical and in the file's order; before that check (and without a `validate`) every array
    is read by np.load, and a mapped entry whose file changed is checked again."""
    compute = _Compute()
    run = lambda: cache.cached("unit", [1], compute, code=(cache,), validate=lambda a: None,  # noqa: E731
                               mapped=("x", "absent"))
    first = run()                                                     # computed: plain arrays
    assert first["x"].flags.writeable and compute.calls == 1
    hit = run()
    assert compute.calls == 1 and list(hit) == list(first) == ["x", "n", "path"]
    assert not hit["x"].flags.writeable and hit["n"].flags.writeable     # x viewed in the file, n read
    assert hit["x"].tobytes() == first["x"].tobytes() and hit["x"].dtype == first["x"].dtype
    assert hit["x"].shape == first["x"].shape
    assert hit["x"].ctypes.data % cache.ALIGN == 0 and hit["x"].flags.aligned          # written aligned
    f = cache.path("unit", cache.entry_key("unit", [1], (cache,)))
    f.write_bytes(cache._npz_bytes(dict(first) | {"x": np.asfortranarray(first["x"] * 2)}))  # other bytes:
    again = run()                                                                           # checked again, read
    assert again["x"].flags.writeable and np.array_equal(again["x"], first["x"] * 2)
    mapped = run()                                                    # now checked: viewed, Fortran order kept
    assert not mapped["x"].flags.writeable and np.array_equal(mapped["x"], first["x"] * 2)
    assert mapped["x"].flags.f_contiguous
    np.savez(f, **(dict(first) | {"x": first["x"] * 3}))             # np.savez's members start unaligned:
    run()
    unaligned = run()                                                 # checked, then read, never viewed
    assert unaligned["x"].flags.writeable and np.array_equal(unaligned["x"], first["x"] * 3)
    plain = cache.cached("unit", [2], compute, code=(cache,), mapped=("x",))   # no validate: never mapped
    plain = cache.cached("unit", [2], compute, code=(cache,), mapped=("x",))
    assert plain["x"].flags.writeable and compute.calls == 2


def test_entry_key_is_the_key_cached_stores_under(own_cache):
    cache.cached("unit", [1, np.ones(2)], _Compute(), code=(cache,))
    (f,) = (own_cache / "unit").glob("*.npz")
    assert f.stem == cache.entry_key("unit", [1, np.ones(2)], (cache,)) == cache.entry_key("unit", [1, np.ones(2)], cache)
    assert cache.entry_key("unit", [2, np.ones(2)], (cache,)) != f.stem


def test_model_fingerprint_once_per_model_inside_models_fixed(monkeypatch):
    keras.utils.set_random_seed(0)
    i = keras.Input((4, 4, 3))
    m = keras.Model(i, keras.layers.Dense(2)(keras.layers.Flatten()(i)))
    other = keras.models.clone_model(m)
    calls = []
    real = cache._model_fingerprint
    monkeypatch.setattr(cache, "_model_fingerprint", lambda model: calls.append(model) or real(model))
    fp = cache.model_fingerprint(m)
    assert cache.model_fingerprint(m) == fp and len(calls) == 2          # outside: every call recomputes
    with cache.models_fixed():
        assert [cache.model_fingerprint(x) for x in (m, m, other, m, other)] == [fp, fp, real(other), fp, real(other)]
        with cache.models_fixed():                                         # nested: the same memo
            assert cache.model_fingerprint(m) == fp
    assert len(calls) == 2 + 2                                             # inside: m and other once each
    w = m.layers[-1].get_weights()
    w[1][0] += 1.0
    m.layers[-1].set_weights(w)
    assert cache.model_fingerprint(m) != fp                               # after the block: a change is seen
