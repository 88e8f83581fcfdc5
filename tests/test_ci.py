"""Counterfactual information: every path and definition against plain ablation on tiny models."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers as L

from causadv_lib import ci
from causadv_lib import keras_graph as kg
from causadv_lib import logprob

TOL = 1e-5


# ------------------------------------------------------------------------------- tiny architectures
def _bn_stats(model, seed):
    """Non-trivial batchnorm statistics, so that removal is not the identity after a batchnorm."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            k = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, k), rng.normal(0, .3, k), rng.normal(.2, .3, k),
                               rng.uniform(.5, 2, k)])
    return model


def flatten_dense():
    """VGG-like: conv -> ReLU (the CI layer) -> max pool (4x4 left) -> flatten -> dense -> dropout -> dense."""
    keras.utils.set_random_seed(0)
    x = i = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.Conv2D(6, 3, padding="same", name="conv_last")(x)
    x = L.ReLU(name="act")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(16, activation="relu")(x)
    x = L.Dropout(0.5)(x)
    x = L.Dense(5, name="logits")(x)
    return keras.Model(i, L.Softmax()(x), name="flatten_dense")


def gap(dense_softmax=False):
    """MobileNet-like: conv -> conv+ReLU (the CI layer) -> global average pooling -> dense -> softmax."""
    keras.utils.set_random_seed(1)
    x = i = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.Conv2D(7, 3, padding="same", activation="relu", name="act")(x)
    x = L.GlobalAveragePooling2D()(x)
    if dense_softmax:
        return keras.Model(i, L.Dense(5, activation="softmax")(x), name="gap_dense_softmax")
    x = L.Dense(5, name="logits")(x)
    return keras.Model(i, L.Activation("softmax")(x), name="gap")


def bn_head(reduction="flatten"):
    """Batchnorm between the ablated ReLU and the head (the authors' conv -> ReLU -> BN blocks)."""
    keras.utils.set_random_seed(2)
    x = i = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="act")(x)
    x = L.BatchNormalization(name="bn_after")(x)
    if reduction == "flatten":
        x = L.Flatten()(L.MaxPooling2D(4)(x))
    else:
        x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10, activation="relu")(x)
    x = L.BatchNormalization()(x)
    x = L.Dense(5)(x)
    return _bn_stats(keras.Model(i, L.Softmax()(x), name=f"bn_{reduction}"), 2)


def resnet():
    """One residual block: the stem ReLU feeds both the block and the skip Add."""
    keras.utils.set_random_seed(3)
    x = i = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="stem")(x)
    a = L.ReLU(name="stem_relu")(x)
    y = L.Conv2D(6, 3, padding="same", name="b_conv1")(a)
    y = L.ReLU(name="b_relu1")(y)
    y = L.Conv2D(6, 3, padding="same", name="b_conv2")(y)
    y = L.BatchNormalization(name="b_bn")(y)
    x = L.ReLU(name="out_relu")(L.Add(name="b_add")([y, a]))
    x = L.Dense(5, name="logits")(L.GlobalAveragePooling2D()(x))
    return _bn_stats(keras.Model(i, L.Softmax()(x), name="resnet"), 3)


def logits_out():
    """A model that outputs logits (average pooling -> flatten -> dense, no softmax)."""
    keras.utils.set_random_seed(4)
    x = i = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="act")(x)
    x = L.Flatten()(L.AveragePooling2D(2)(x))
    return keras.Model(i, L.Dense(4)(x), name="logits_out")


def images(n=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 8, 8, 3)).astype(np.float32)


#: (builder, layer, outputs, the path method="auto" must take)
CASES = {
    "flatten_dense": (flatten_dense, None, "probabilities", "closed_form_flatten_dense"),
    "gap": (gap, None, "probabilities", "closed_form_gap"),
    "gap_dense_softmax": (lambda: gap(True), None, "probabilities", "closed_form_gap"),
    "bn_flatten": (bn_head, "act", "probabilities", "closed_form_flatten_dense"),
    "bn_gap": (lambda: bn_head("gap"), "act", "probabilities", "closed_form_gap"),
    "resnet_skip_source": (resnet, "stem_relu", "probabilities", "generic"),
    "resnet_inside_block": (resnet, "b_relu1", "probabilities", "generic"),
    "resnet_last": (resnet, None, "probabilities", "closed_form_gap"),
    "not_last_conv": (gap, "conv2d", "probabilities", "generic"),
    "logits_out": (logits_out, None, "logits", "closed_form_flatten_dense"),
}
_MODELS = {}


def _model(case):
    if case not in _MODELS:
        _MODELS[case] = CASES[case][0]()
    return _MODELS[case]


def _layer(case):
    layer = CASES[case][1]
    if layer == "conv2d":  # the first conv of the gap model, whatever keras named it
        return next(lyr.name for lyr in _model(case).layers if isinstance(lyr, L.Conv2D))
    return layer


# ------------------------------------------------------------------------------- agreement
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("definition", ci.DEFINITIONS)
def test_paths_agree_with_plain_ablation(case, definition):
    model, layer, outputs = _model(case), _layer(case), CASES[case][2]
    x = images()
    ref = ci.counterfactual_information(model, x, layer, definition=definition, outputs=outputs, method="naive")
    assert ref.path == "naive" and ref.ci.dtype == np.float32 and ref.ci.shape == (3, ref.ci.shape[1])
    assert np.abs(ref.ci).max() > 1e-3  # the reference itself is not trivially zero
    for method, path in (("auto", CASES[case][3]), ("generic", "generic")):
        res = ci.counterfactual_information(model, x, layer, definition=definition, outputs=outputs, method=method)
        assert res.path == path
        assert np.abs(res.ci - ref.ci).max() <= TOL, (method, np.abs(res.ci - ref.ci).max())
        np.testing.assert_array_equal(res.predicted, ref.predicted)
        np.testing.assert_allclose(res.probability, ref.probability, atol=1e-6)
        np.testing.assert_array_equal(res.target, ref.predicted)


def test_reference_is_plain_ablation():
    """The naive path equals zeroing the channel by hand and running the model again."""
    model = _model("resnet_skip_source")
    x = images(2)
    ref = ci.counterfactual_information(model, x, "stem_relu", method="naive")
    stem = keras.Model(model.inputs[0], model.get_layer("stem_relu").output)
    a = stem(x).numpy()
    p = model(x).numpy()
    for k in (0, 3):
        a_k = a.copy()
        a_k[..., k] = 0
        y = model.get_layer("b_conv1")(a_k)
        y = model.get_layer("b_conv2")(model.get_layer("b_relu1")(y))
        y = model.get_layer("b_bn")(y, training=False)
        h = model.get_layer("out_relu")(model.get_layer("b_add")([y, a_k]))
        q = keras.ops.softmax(model.get_layer("logits")(keras.ops.mean(h, axis=(1, 2)))).numpy()
        c = p.argmax(1)
        np.testing.assert_allclose(ref.ci[:, k], p[np.arange(2), c] - q[np.arange(2), c], atol=TOL)


def test_target_overrides_the_class():
    model = _model("bn_flatten")
    x = images()
    t = np.array([0, 3, 4])
    ref = ci.counterfactual_information(model, x, "act", target=t, method="naive")
    res = ci.counterfactual_information(model, x, "act", target=t)
    np.testing.assert_array_equal(res.target, t)
    assert np.abs(res.ci - ref.ci).max() <= TOL


# ------------------------------------------------------------------------------- exact zeros
def _kill(model, conv_name, k):
    """Make channel k of a conv+ReLU dead: zero kernel, negative bias => ReLU output exactly 0."""
    conv = model.get_layer(conv_name)
    w, b = conv.get_weights()
    w[..., k], b[k] = 0.0, -1.0
    conv.set_weights([w, b])


@pytest.mark.parametrize("builder,conv,layer", [
    (flatten_dense, "conv_last", "act"), (gap, "act", "act"), (bn_head, "act", "act"),
    (lambda: bn_head("gap"), "act", "act"), (resnet, "stem", "stem_relu")])
def test_dead_channel_gives_exactly_zero(builder, conv, layer):
    model = builder()
    _kill(model, conv, 2)
    x = images(4, seed=5)
    for definition in ci.DEFINITIONS:
        for method in ci.METHODS:
            res = ci.counterfactual_information(model, x, layer, definition=definition, method=method)
            assert np.all(res.ci[:, 2] == 0.0), (definition, method, res.path, res.ci[:, 2])
            assert np.count_nonzero(res.ci[:, [0, 1, 3]]) > 0


def test_generic_chunks_keep_exact_zeros(monkeypatch):
    """Memory-bounded chunks (several per image, several images per chunk) change nothing."""
    model = bn_head()
    _kill(model, "act", 1)
    x = images(5, seed=6)
    ref = ci.counterfactual_information(model, x, "act", method="naive")
    per_row = 8 * 8 * 6
    for rows in (3, 4, 7, 2 * 7 + 1):  # 2-3 ablations per call ... 2 images per call
        monkeypatch.setattr(ci.engine, "ELEMENT_BUDGET", rows * per_row)
        res = ci.counterfactual_information(model, x, "act", method="generic", batch_size=3)
        assert np.abs(res.ci - ref.ci).max() <= TOL
        assert np.all(res.ci[:, 1] == 0.0)


def test_saturated_model_log_probability_is_nonzero():
    """p_c == 1.0 in float32, the probability CI is mostly exactly 0, the log-probability CI is not."""
    keras.utils.set_random_seed(7)
    x = i = keras.Input((8, 8, 3))
    x = L.Conv2D(12, 3, padding="same", activation="relu", name="act")(x)
    x = L.Dense(4, name="logits")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(i, L.Softmax()(x))
    w, b = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([w, np.array([40.0, 0, 0, 0], np.float32)])  # class 0 wins by ~40
    _kill(model, "act", 5)
    xs = images(3, seed=8)
    p = ci.counterfactual_information(model, xs, definition="probability")
    assert np.all(p.probability == 1.0) and np.all(p.predicted == 0)
    assert np.count_nonzero(p.ci) < p.ci.size // 2
    for method in ("generic", "naive"):  # the same exact zeros on every path (strategy 3 counts them)
        q = ci.counterfactual_information(model, xs, definition="probability", method=method)
        np.testing.assert_array_equal(q.ci == 0, p.ci == 0)
    for method in ci.METHODS:
        lp = ci.counterfactual_information(model, xs, definition="log_probability", method=method)
        live = np.arange(12) != 5
        assert np.all(lp.ci[:, 5] == 0.0)
        assert np.all(lp.ci[:, live] != 0.0), method
        # independent float64 check: log p_0 from the float32 logits
        logits = keras.Model(model.inputs[0], model.get_layer("logits").output)(xs).numpy().astype(np.float64)
        w64 = w.astype(np.float64)
        a = keras.Model(model.inputs[0], model.get_layer("act").output)(xs).numpy().astype(np.float64)
        m = a.mean(axis=(1, 2))                                        # (N, K)
        z_abl = logits[:, None, :] - m[:, :, None] * w64[None]        # (N, K, C)

        def logp0(z):
            return -np.log1p(np.exp(z[..., 1:] - z[..., :1]).sum(-1))
        want = logp0(logits)[:, None] - logp0(z_abl)
        # float32 logits carry ~4e-6 absolute error at a gap of 40, i.e. ~4e-6 relative in sum exp(...)
        np.testing.assert_allclose(lp.ci[:, live], want[:, live], rtol=1e-3, atol=1e-4 * np.abs(want).max())


def test_the_graph_log_probability_is_the_numpy_formula():
    """`ci.definitions.log_prob` (TensorFlow, in the CI graph) and `logprob.log_prob` (numpy float64) are one
    formula: in float64 they agree to rounding, saturated rows included."""
    rng = np.random.default_rng(9)
    z = np.concatenate([rng.normal(size=(30, 5)) * 3, rng.normal(size=(10, 5)) + 45 * np.eye(5)[rng.integers(0, 5, 10)]])
    c = rng.integers(0, 5, len(z)).astype(np.int32)
    graph = ci.definitions.log_prob(tf.constant(z), tf.constant(c)).numpy()
    np.testing.assert_allclose(graph, logprob.log_prob(z, c), rtol=1e-12, atol=0)


# ------------------------------------------------------------------------------- graph and API
def test_subgraph_follows_skip_connections():
    model = _model("resnet_skip_source")
    nodes = kg.nodes(kg.functional(model))
    a = model.get_layer("stem_relu").output
    down, frontier = ci.plan.subgraph(nodes, a)
    names = [n.operation.name for n in down]
    assert "b_add" in names and "b_conv1" in names and frontier == []
    down, frontier = ci.plan.subgraph(nodes, model.get_layer("b_relu1").output)
    assert [t is a for t in frontier] == [True]  # the skip reads the stem, computed before the layer
    assert "b_conv1" not in [n.operation.name for n in down]


def test_default_layer_and_patterns():
    assert ci.default_layer(_model("flatten_dense")) == "act"
    assert ci.default_layer(_model("resnet_last")) == "out_relu"
    assert ci.default_layer(_model("bn_flatten")) == "bn_after"  # the last rank-4 output, as the authors'
    assert ci.closed_form_pattern(_model("gap")) == "closed_form_gap"
    assert ci.closed_form_pattern(_model("resnet_last"), "stem_relu") is None
    path, why = ci.closed_form_pattern(_model("resnet_last"), "stem_relu", reason=True)
    assert path is None and "'stem_relu'" in why and "'b_add'" in why and "keras_tensor" not in why, why
    path, why = ci.closed_form_pattern(_model("bn_flatten"), "act", reason=True)
    assert path == "closed_form_flatten_dense" and why == ""


def test_clear_errors():
    model = _model("flatten_dense")
    x = images(1)
    dense = next(lyr.name for lyr in model.layers if isinstance(lyr, L.Dense))
    with pytest.raises(ValueError, match=f"{dense}.*shape"):
        ci.counterfactual_information(model, x, dense)
    with pytest.raises(ValueError, match="not a layer"):
        ci.counterfactual_information(model, x, "nope")
    with pytest.raises(ValueError, match="definition"):
        ci.counterfactual_information(model, x, definition="prob")
    with pytest.raises(ValueError, match="expects"):
        ci.counterfactual_information(model, x[:, :4])
    with pytest.raises(ValueError, match="target"):
        ci.counterfactual_information(model, x, target=9)
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    sig = keras.Model(i, L.Dense(3, activation="sigmoid")(L.Flatten()(L.Conv2D(2, 3, name="c")(i))))
    with pytest.raises(ValueError, match="logits"):
        ci.counterfactual_information(sig, x, definition="logit")


def test_mixed_precision_is_refused():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        i = keras.Input((8, 8, 3))
        m = keras.Model(i, L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(2, 3, name="c")(i))))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    with pytest.raises(ValueError, match="float32"):
        ci.counterfactual_information(m, images(1), outputs="logits")


def test_batching_is_deterministic():
    model = _model("flatten_dense")
    x = images(5, seed=9)
    a = ci.counterfactual_information(model, x, batch_size=2)
    b = ci.counterfactual_information(model, x, batch_size=2)
    c = ci.counterfactual_information(model, x, batch_size=5)
    np.testing.assert_array_equal(a.ci, b.ci)
    assert np.abs(a.ci - c.ci).max() <= 1e-6


def test_cache_serves_identical_arrays(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    model = _model("gap")
    x = images(2)
    a = ci.counterfactual_information(model, x, cache=True)
    files = list((tmp_path / "ci").glob("*.npz"))
    assert len(files) == 1
    computed = []
    monkeypatch.setattr(ci.engine, "run_closed", lambda *args, **kw: computed.append(1) or (_ for _ in ()).throw(
        AssertionError("the cache did not hit: the CI was computed again")))
    b = ci.counterfactual_information(model, x, cache=True)
    assert not computed
    np.testing.assert_array_equal(a.ci, b.ci)
    np.testing.assert_array_equal(a.predicted, b.predicted)
    assert b.path == a.path
    monkeypatch.undo()
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    ci.counterfactual_information(model, x, definition="logit", cache=True)
    assert len(list((tmp_path / "ci").glob("*.npz"))) == 2


def test_keyed_inputs_are_made_only_on_a_miss_and_give_the_same_ci(tmp_path, monkeypatch):
    """Inputs given as `KeyedInputs`: the cache key holds their key, `make` runs once (on the miss), a hit never
    makes them, the result is bit-identical to the inputs given as an array; another key is another entry;
    without the cache they are made and used as given; a wrong count or bad n is refused."""
    monkeypatch.setenv("CAUSADV_CACHE", str(tmp_path))
    model, x = _model("gap"), images(3)
    made = []
    keyed = lambda key, arr=x: ci.KeyedInputs(len(arr), key, lambda: made.append(key) or arr)  # noqa: E731
    plain = ci.counterfactual_information(model, x)
    for _ in range(2):
        got = ci.counterfactual_information(model, keyed(["entry", 1]), cache=True, target=None)
        np.testing.assert_array_equal(got.ci, plain.ci)
        np.testing.assert_array_equal(got.predicted, plain.predicted)
        assert got.path == plain.path
    assert made == [["entry", 1]]
    ci.counterfactual_information(model, keyed(["entry", 2]), cache=True)
    assert made == [["entry", 1], ["entry", 2]] and len(list((tmp_path / "ci").glob("*.npz"))) == 2
    uncached = ci.counterfactual_information(model, keyed(["entry", 3]))
    np.testing.assert_array_equal(uncached.ci, plain.ci)
    assert made[-1] == ["entry", 3]
    empty = ci.counterfactual_information(model, ci.KeyedInputs(0, ["none"], lambda: made.append("empty")), cache=True)
    assert empty.ci.shape == (0, plain.ci.shape[1]) and made[-1] != "empty"
    with pytest.raises(ValueError, match="promised n=2"):
        ci.counterfactual_information(model, ci.KeyedInputs(2, ["entry", 4], lambda: x), cache=True)
    with pytest.raises(ValueError, match="n="):
        ci.counterfactual_information(model, ci.KeyedInputs(-1, ["entry", 5], lambda: x), cache=True)
    with pytest.raises(ValueError, match="target has shape"):
        ci.counterfactual_information(model, keyed(["entry", 6]), target=[0, 1], cache=True)


def test_changed_weights_are_seen():
    """The closed form keeps a transposed copy of the first Dense kernel: changing it in place is seen."""
    model = flatten_dense()
    x = images(2)
    before = ci.counterfactual_information(model, x)
    dense = next(lyr for lyr in model.layers if isinstance(lyr, L.Dense))
    w, b = dense.get_weights()
    dense.set_weights([w[::-1].copy(), b])
    after = ci.counterfactual_information(model, x)
    ref = ci.counterfactual_information(model, x, method="naive")
    assert after.path == "closed_form_flatten_dense"
    assert np.abs(after.ci - ref.ci).max() <= TOL and np.abs(after.ci - before.ci).max() > 1e-3


def test_images_per_call_is_a_fixed_layout():
    """The head's images per call depend on (model, layer) alone, divide MICRO_BATCH and fit HEAD_BUDGET."""
    model = _model("flatten_dense")
    b = ci.images_per_call(model)
    assert 1 <= b <= ci.MICRO_BATCH and ci.MICRO_BATCH % b == 0
    assert ci.images_per_call(_model("resnet_skip_source"), "stem_relu") == ci.MICRO_BATCH


@pytest.mark.slow
@pytest.mark.parametrize("name,pool,step", [("vgg16_bn_cifar10", "lossless_cifar10", 1),
                                            ("resnet56_cifar10", "lossless_cifar10", 1),
                                            ("mobilenet_v2_imagenet", "lossless_imagenet", 20)])
def test_zoo_models_agree_with_plain_ablation(name, pool, step):
    """Full scale: the auto path on the zoo's models against one forward pass per removed filter."""
    from causadv_lib import data, zoo
    zm = zoo.get(name)
    p = data.pool(pool)
    x = zm.preprocess(p.load([0, 1, 2]))
    for definition in ci.DEFINITIONS:
        res = ci.counterfactual_information(zm.model, x, zm.ci_layer, definition=definition)
        assert res.path.startswith("closed_form")
        ks = np.arange(0, res.ci.shape[1], step)
        ref = ci.reference_ablation(zm.model, x, zm.ci_layer, filters=ks, definition=definition)
        assert np.abs(res.ci[:, ks] - ref.ci).max() <= TOL * max(1.0, np.abs(ref.ci).max())
        np.testing.assert_array_equal(res.predicted, ref.predicted)
        if definition == "probability":
            # a live filter whose effect is below float32 resolution gives exactly 0 or +-1-2 ulp
            # depending on the rounding of each path; dead channels are exactly 0 on both
            odd = (res.ci[:, ks] == 0) != (ref.ci == 0)
            ulp = np.spacing(res.probability)[:, None] * np.ones_like(ref.ci)
            assert odd.mean() <= 0.01 and np.all(np.abs(res.ci[:, ks] - ref.ci)[odd] <= 2 * ulp[odd])


def test_engines_built_one_per_model_do_not_warn_of_retracing():
    """Notebook 01 builds several engines (one compiled function each, traced once): TensorFlow's 'triggered
    tf.function retracing' warning about them is a false alarm and must not reach the notebooks' outputs."""
    import logging

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = tf.get_logger()
    logger.addHandler(handler)
    try:
        inp = keras.Input((8, 8, 3))
        h = L.Conv2D(4, 3, activation="relu", name="conv")(inp)
        out = L.Softmax()(L.Dense(3)(L.GlobalAveragePooling2D()(h)))
        x = np.random.default_rng(0).random((3, 8, 8, 3)).astype(np.float32)
        for _ in range(4):
            m = keras.Model(inp, out)
            for d in ci.DEFINITIONS:
                ci.counterfactual_information(m, x, "conv", definition=d)
    finally:
        logger.removeHandler(handler)
    assert not [m for m in seen if "retracing" in m]
