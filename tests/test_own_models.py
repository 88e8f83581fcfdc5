"""Bring your own model: the models people have (nested keras.applications bases, logit outputs, softmaxes the
engine does not recognise, subclassed models) through `zoo.custom`, `ci` and the reference ablation.

keras.applications models are built with weights=None at small input sizes (offline, fast); their numbers
are not meaningful, only that every path agrees with plain ablation.
"""
import keras
import numpy as np
import pytest
from keras import layers as L

from causadv_lib import attacks, ci, zoo
from causadv_lib import keras_graph as kg

TOL = 1e-5
A = keras.applications


def _x(n, size, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, size, size, 3)).astype(np.float32)


def _agree(model, x, layer=None, outputs="probabilities", filters=(0, 3, 7), definitions=ci.DEFINITIONS):
    """Every definition: the auto path against the reference ablation on a few filters."""
    for d in definitions:
        res = ci.counterfactual_information(model, x, layer, definition=d, outputs=outputs)
        ref = ci.reference_ablation(model, x, layer, filters=list(filters), definition=d, outputs=outputs)
        assert res.layer == ref.layer
        scale = max(1.0, float(np.abs(ref.ci).max()))
        assert np.abs(res.ci[:, list(filters)] - ref.ci).max() <= TOL * scale, (d, res.path)
        np.testing.assert_array_equal(res.predicted, ref.predicted)
    return res


# ------------------------------------------------------------------------------- nested models
@pytest.fixture(scope="module")
def transfer():
    """The usual transfer-learning shape: Sequential([Input, keras.applications base, GAP, Dense, Softmax])."""
    keras.utils.set_random_seed(0)
    base = A.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None)
    return keras.Sequential([keras.Input((96, 96, 3)), base, L.GlobalAveragePooling2D(), L.Dense(10),
                             L.Softmax()]), base


def test_nested_model_default_and_inner_layers(transfer):
    model, base = transfer
    assert ci.default_layer(model) == f"{base.name}/out_relu"
    x = _x(2, 96)
    res = _agree(model, x, definitions=("probability", "log_probability"))
    assert res.layer == f"{base.name}/out_relu" and res.path == "closed_form_gap" and res.ci.shape == (2, 1280)
    for name in (f"{base.name}/out_relu", "out_relu"):        # by path, or by a unique inner name
        np.testing.assert_array_equal(ci.counterfactual_information(model, x, name).ci, res.ci)
    inner = ci.counterfactual_information(model, x, f"{base.name}/block_16_project_BN", method="generic")
    assert inner.path == "generic" and inner.ci.shape == (2, 320)
    with pytest.raises(ValueError, match="is a nested model.*out_relu"):
        ci.counterfactual_information(model, x, base.name)
    with pytest.raises(ValueError, match="did you mean"):
        ci.counterfactual_information(model, x, "out_rel")


def test_custom_flattens_nested_models_and_shared_heads(transfer):
    model, base = transfer
    zm = zoo.custom(model, lambda im: np.asarray(im, np.float32) / 127.5 - 1, name="tl")
    assert zm.ci_layer == "out_relu" and zm.model.get_layer("out_relu") is base.get_layer("out_relu")
    assert not any(kg.is_nested(lyr) for lyr in zm.model.layers)
    x = _x(2, 96, seed=1)
    np.testing.assert_allclose(zm.predict_inputs(x), model(x, training=False), atol=1e-6)
    a = ci.counterfactual_information(zm.model, x, zm.ci_layer)
    np.testing.assert_array_equal(a.ci, ci.counterfactual_information(model, x).ci)
    # a model rebuilt from another's layers (the head reused: each layer's *first* call is elsewhere)
    flat = zoo.flatten(model)
    again = zoo.custom(flat, zm.preprocess)
    logits = attacks._logits_tensor(again.model)                     # read in the model's own graph
    assert keras.Model(again.model.inputs, logits) is not None        # the attacks' logits model builds
    np.testing.assert_array_equal(ci.counterfactual_information(again.model, x, again.ci_layer).ci, a.ci)


# ------------------------------------------------------------------------------- outputs
def _small(end):
    keras.utils.set_random_seed(4)
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="act")(i)
    x = L.Dense(5, name="logits")(L.GlobalAveragePooling2D()(x))
    return keras.Model(i, end(x) if end else x, name="small")


def test_logit_models_work_with_every_definition():
    logit_model = _small(None)
    x = _x(4, 8)
    _agree(logit_model, x, outputs="logits")                       # reference_ablation used to crash here
    zm = zoo.custom(logit_model, lambda im: np.asarray(im, np.float32) / 255, outputs="logits")
    assert zm.outputs == "logits" and isinstance(zm.model.layers[-1], L.Softmax) and zm.model.layers[-1].name == "probs"
    assert zoo.check_structure(zm.model) == []
    for d in ci.DEFINITIONS:
        wrapped = ci.counterfactual_information(zm.model, x, definition=d)
        direct = ci.counterfactual_information(logit_model, x, definition=d, outputs="logits")
        assert np.abs(wrapped.ci - direct.ci).max() <= 1e-6, d
    _agree(zm.model, x)
    assert zoo.custom(_small(L.Softmax()), zm.preprocess).outputs == "probabilities"


@pytest.mark.parametrize("end", [lambda: L.Softmax(axis=1), lambda: L.Activation(lambda t: keras.ops.softmax(t))],
                         ids=["softmax_axis1", "softmax_in_a_lambda"])
def test_reference_ablation_on_softmaxes_in_every_form(end):
    model = _small(end())
    x = _x(3, 8, seed=2)
    recognised = isinstance(model.layers[-1], L.Softmax)
    _agree(model, x, definitions=ci.DEFINITIONS if recognised else ("probability", "authors"))


def test_subclassed_models_say_how_to_fix_them():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = L.Conv2D(4, 3, activation="relu", name="conv")
            self.gap = L.GlobalAveragePooling2D()
            self.out = L.Dense(3, activation="softmax", name="out")

        def call(self, x):
            return self.out(self.gap(self.conv(x)))

    net = Net()
    net(_x(1, 8))
    for call in (lambda: zoo.custom(net, lambda im: im), lambda: ci.counterfactual_information(net, _x(1, 8))):
        with pytest.raises(TypeError, match=r"subclassed model 'Net'.*keras.Model\(inputs, net.call\(inputs\)\)"):
            call()
    i = keras.Input((8, 8, 3))
    zm = zoo.custom(keras.Model(i, net.call(i)), lambda im: im)     # the fix the message gives
    assert zm.ci_layer == "conv"
    _agree(zm.model, _x(2, 8), filters=(0, 2))


# ------------------------------------------------------------------------------- default layer
#: family -> (builder, input size, the expected default layer: a name, or a check of the chosen layer)
FAMILIES = {
    "MobileNet": (A.MobileNet, 64, "conv_pw_13_relu"),
    "MobileNetV2": (A.MobileNetV2, 64, "out_relu"),
    # the auto-named activation after Conv_1, not the 1x1 classifier convolution "logits"
    "MobileNetV3Small": (A.MobileNetV3Small, 64, "after conv_1_bn"),
    "ResNet50": (A.ResNet50, 64, "conv5_block3_out"),
    "ResNet50V2": (A.ResNet50V2, 64, "post_relu"),
    "EfficientNetB0": (A.EfficientNetB0, 64, "top_activation"),
    "VGG16": (A.VGG16, 64, "block5_conv3"),
    "Xception": (A.Xception, 71, "block14_sepconv2_act"),
    "InceptionV3": (A.InceptionV3, 107, "mixed10"),
    "ConvNeXtTiny": (A.ConvNeXtTiny, 64, "the last residual add"),
}


def test_default_layer_on_keras_applications():
    """The last feature map with H x W > 1, never a classifier written as 1x1 convolutions."""
    built = {}
    for family, (build, size, want) in FAMILIES.items():
        model = built[family] = build(input_shape=(size, size, 3), weights=None, classes=10)
        name = ci.default_layer(model)
        out = kg.output_of(model, name)
        assert len(out.shape) == 4 and out.shape[1] * out.shape[2] > 1, (family, name, out.shape)
        nodes = kg.nodes(model)
        if want == "after conv_1_bn":
            prev = kg.producer(nodes, kg.producer(nodes, out).input_tensors[0]).operation.name
            assert prev == "conv_1_bn" and name != "logits", (family, name)
        elif want == "the last residual add":
            assert name.startswith("add") and kg.producer(nodes, out).operation is kg.find_layer(model, name)
        else:
            assert name == want, (family, name)
    res = ci.counterfactual_information(built["MobileNetV3Small"], _x(1, 64), method="generic")
    assert res.ci.shape == (1, 576)
    # ConvNeXt's default layer is a keras.ops operation (its residual add), not a Layer
    _agree(built["ConvNeXtTiny"], _x(1, 64) * 50, filters=(0, 100), definitions=("probability", "logit"))
