"""The adapter for private Keras internals: each internal it reads, on this Keras version.

A Keras upgrade that moves one of them fails here, naming it, instead of somewhere deep in the CI engine.
"""
import keras
import numpy as np
import pytest
from keras import layers as L

from causadv_lib import keras_graph as kg


def _model():
    keras.utils.set_random_seed(0)
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv")(i)
    x = L.BatchNormalization(name="bn")(x)
    a = L.ReLU(name="act")(x)
    x = L.Add(name="add")([a, L.Conv2D(4, 1, name="skip")(a)])
    x = L.Dense(3, name="logits")(L.GlobalAveragePooling2D(name="gap")(x))
    return keras.Model(i, L.Softmax(name="probs")(x), name="net")


def test_the_private_internals_exist():
    """Every private attribute the adapter reads, read directly (an AttributeError here names it)."""
    m = _model()
    assert isinstance(m._nodes_by_depth, dict)
    seq = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    assert seq._functional is not None and hasattr(seq._functional, "_nodes_by_depth")
    node = m._nodes_by_depth[0][0]
    args, kwargs = node.arguments.fill_in({id(t): t for t in node.input_tensors})
    assert args[0] is node.input_tensors[0] and isinstance(kwargs, dict)
    assert L.BatchNormalization()._call_has_training_arg is True
    assert L.ReLU()._call_has_training_arg is False


def test_nodes_are_topological_and_execute_like_the_model():
    m = _model()
    nodes = kg.nodes(kg.functional(m))
    names = [n.operation.name for n in nodes]
    assert names.index("act") < names.index("skip") < names.index("add") < names.index("probs")
    assert "input_layer" not in " ".join(names)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32)
    values = {id(m.inputs[0]): x}
    for n in nodes:
        for t, y in zip(n.outputs, kg.call(n, values)):
            values[id(t)] = y
    np.testing.assert_allclose(values[id(m.outputs[0])], m(x, training=False), atol=1e-6)
    assert kg.accepts_training(m.get_layer("bn")) and not kg.accepts_training(m.get_layer("act"))
    assert kg.producer(nodes, m.outputs[0]).operation.name == "probs"
    assert sorted(n.operation.name for n in kg.consumers(nodes, kg.output_of(m, "act"))) == ["add", "skip"]


def test_a_missing_internal_is_reported_as_such():
    class NoDepth:
        name = "x"
    with pytest.raises(kg.KerasInternalsError, match="_nodes_by_depth.*keras_graph"):
        kg.nodes(NoDepth())


def test_subclassed_models_are_refused_with_the_fix():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = L.Conv2D(3, 3)
            self.gap = L.GlobalAveragePooling2D()
            self.dense = L.Dense(2, activation="softmax")

        def call(self, x):
            return self.dense(self.gap(self.conv(x)))

    net = Net()
    with pytest.raises(TypeError, match="subclassed model 'Net'.*net.call"):
        kg.functional(net)
    i = keras.Input((6, 6, 3))
    traced = keras.Model(i, net.call(i))       # the fix the message gives: the same layers, a graph
    assert [n.operation for n in kg.nodes(traced)] == [net.conv, net.gap, net.dense]


def test_softmax_kinds():
    i = keras.Input((5,))
    for layer, kind in [(L.Softmax(), "layer"), (L.Softmax(axis=1), "layer"), (L.Activation("softmax"), "layer"),
                        (L.Dense(3, activation="softmax"), "dense"), (L.Dense(3), None),
                        (L.Activation(lambda t: keras.ops.softmax(t)), None)]:
        m = keras.Model(i, layer(i))
        assert kg.softmax_kind(kg.producer(kg.nodes(m), m.outputs[0])) == kind, layer
    i3 = keras.Input((4, 5))
    m = keras.Model(i3, L.Softmax(axis=1)(i3))   # over the middle axis: not a class softmax
    assert kg.softmax_kind(kg.nodes(m)[-1]) is None


def _nested():
    keras.utils.set_random_seed(1)
    bi = keras.Input((8, 8, 3))
    b = L.Conv2D(4, 3, padding="same", name="b_conv")(bi)
    b = L.BatchNormalization(name="b_bn")(b)
    base = keras.Model(bi, L.ReLU(name="b_relu")(b), name="base")
    i = keras.Input((8, 8, 3))
    x = base(i, training=False)
    x = L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="gap")(x))
    return keras.Model(i, L.Softmax(name="sm")(x), name="outer"), base


def test_flatten_shares_weights_and_computes_the_same():
    m, base = _nested()
    flat = kg.flatten(m)
    assert flat is not m and kg.flatten(flat) is flat
    assert [lyr.name for lyr in flat.layers[1:]] == ["b_conv", "b_bn", "b_relu", "gap", "head", "sm"]
    assert flat.get_layer("b_conv") is base.get_layer("b_conv")            # shared, not copied
    x = np.random.default_rng(2).normal(size=(3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(flat(x, training=False), m(x, training=False))
    # the nested call's training=False reaches the inner batchnorm (the transfer-learning idiom)
    bn = next(n for n in kg.nodes(flat) if n.operation.name == "b_bn")
    assert kg.fill_in(bn, {id(t): t for t in bn.input_tensors})[1].get("training") is False
    # Sequential outer
    seq = keras.Sequential([keras.Input((8, 8, 3)), base, L.GlobalAveragePooling2D(), L.Dense(2)])
    np.testing.assert_allclose(kg.flatten(seq)(x), seq(x), atol=1e-6)


def test_layer_names_paths_and_outputs():
    m, base = _nested()
    assert kg.find_layer(m, "base/b_relu") is base.get_layer("b_relu")
    assert kg.find_layer(m, "b_relu") is base.get_layer("b_relu")           # unique inner name
    assert kg.layer_paths(m)[id(base.get_layer("b_bn"))] == "base/b_bn"
    with pytest.raises(ValueError, match=r"did you mean 'base/b_relu'.*'outer/inner'"):
        kg.find_layer(m, "b_rel")
    flat = kg.flatten(m)
    assert kg.output_of(flat, "b_relu") is not base.get_layer("b_relu").output  # not the first call's
    assert tuple(kg.output_of(flat, "b_relu").shape) == (None, 8, 8, 4)
    with pytest.raises(ValueError, match="not called in the graph"):
        kg.output_of(m, "b_relu")


def test_logits_of_is_the_input_of_the_final_softmax_in_the_models_own_graph():
    i = keras.Input((5,))
    z = L.Dense(3, name="z")(i)
    for end, kind in [(L.Softmax(), "softmax_input"), (L.Activation("softmax"), "softmax_input"),
                      (L.Activation(lambda t: keras.ops.softmax(t)), "none")]:
        lg = kg.logits_of(keras.Model(i, end(z)))
        assert lg.kind == kind and lg.known == (kind != "none")
        assert lg.tensor is (z if lg.known else None)
    dense = keras.Model(i, L.Dense(3, activation="softmax", name="d")(i))
    lg = kg.logits_of(dense)
    assert lg.kind == "dense" and lg.node.operation.name == "d" and lg.tensor is dense.outputs[0]
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    w, b = dense.get_layer("d").get_weights()
    np.testing.assert_allclose(kg.dense_logits(lg.node, {id(dense.inputs[0]): x}), x @ w + b, rtol=1e-5, atol=1e-6)
    logit_model = keras.Model(i, z)
    assert kg.logits_of(logit_model, "logits").tensor is logit_model.outputs[0]
    # a model rebuilt from another's layers: the logits tensor of *its* graph, not the first call's
    m, _ = _nested()
    flat = kg.flatten(m)
    assert kg.logits_of(flat).tensor is kg.output_of(flat, "head") is not m.get_layer("head").output


def test_default_ci_layer_and_graph_of():
    assert kg.default_ci_layer(_model()) == "add"                       # the last (h, w, K) map
    m, base = _nested()
    assert kg.default_ci_layer(m) == "base/b_relu"                      # inside the nested model
    assert kg.graph_of(m) is kg.graph_of(m) and not any(kg.is_nested(n.operation) for n in kg.nodes(kg.graph_of(m)))
    assert kg.graph_of(_model()).name == "net"                          # no nesting: the model's own graph
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv")(i)
    x = L.Conv2D(5, 1, name="one_by_one")(L.GlobalAveragePooling2D(keepdims=True, name="gap")(x))
    head = keras.Model(i, L.Softmax()(L.Flatten()(x)))
    assert kg.default_ci_layer(head) == "conv"                          # 1 x 1 maps are passed over
