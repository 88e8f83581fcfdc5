"""The generic TFLite rebuild (causadv_lib.zoo.tflite) on tiny files made here with TensorFlow's converter.

Each tiny Keras network is converted float and with int8 post-training quantisation (a small
representative dataset; uint8 input and output like the Coral ImageNet files, or float input and
output around QUANTIZE/DEQUANTIZE), rebuilt as a float Keras model and compared with the TFLite
interpreter on the same inputs: float files to ~1e-5, quantised files to a few output quantisation
steps and on the top-1 class. Together the files use every operator of `tflite.SUPPORTED_OPS` (the
converter writes every squeeze as RESHAPE, so one file has its head RESHAPE turned into SQUEEZE).
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from causadv_lib import zoo
from causadv_lib.zoo import tflite as T
from causadv_lib.zoo.tflite.builder import sanitize

SIZE = 16
K = 6  # outputs of the tiny classifiers


def _features(inp):
    """The body: every non-head operator of the supported set (comments: the TFLite operator)."""
    x = keras.layers.ReLU(max_value=6.0, name="clip")(inp)                                   # RELU6
    x = keras.layers.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(x)                          # PAD
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu6", name="stem")(x)             # CONV_2D + fused RELU6
    gate = keras.layers.Conv2D(8, 1, activation="sigmoid", name="gate")(x)                   # LOGISTIC
    x = keras.layers.Multiply(name="gated")([x, gate])                                       # MUL
    x = keras.layers.Activation("hard_swish", name="hswish")(x)                              # HARD_SWISH
    y = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)   # DEPTHWISE_CONV_2D
    y = keras.layers.Conv2D(8, 1, name="proj")(y)
    x = keras.layers.ReLU(name="res_relu")(keras.layers.Add(name="res")([x, y]))            # ADD + fused RELU
    m = keras.layers.MaxPooling2D(3, strides=1, padding="same", name="maxp")(x)             # MAX_POOL_2D
    x = keras.layers.ReLU(name="cat_relu")(keras.layers.Concatenate(name="cat")([x, m]))    # CONCATENATION, RELU
    x = keras.layers.AveragePooling2D(2, name="avgp")(x)                                     # AVERAGE_POOL_2D (4x4)
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)               # MEAN
    s = keras.layers.Conv2D(16, 1, activation="sigmoid", name="se")(s)
    x = keras.layers.Multiply(name="se_mul")([x, s])                                         # MUL, broadcast
    return keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="last")(x)    # the CI layer (4x4)


def _net(head: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3), batch_size=1, name="image")
    x = _features(inp)
    if head == "conv":  # MobileNetV2 style: MEAN -> CONV_2D 1x1 -> RESHAPE -> SOFTMAX
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
        x = keras.layers.Reshape((K,), name="squeeze")(keras.layers.Conv2D(K, 1, name="head")(x))
    elif head == "pool":  # MobileNetV1 style: AVERAGE_POOL_2D over the map -> CONV_2D 1x1 -> RESHAPE
        x = keras.layers.AveragePooling2D(4, name="gap")(x)
        x = keras.layers.Reshape((K,), name="squeeze")(keras.layers.Conv2D(K, 1, name="head")(x))
    else:  # flatten -> FULLY_CONNECTED
        x = keras.layers.Dense(K, name="head")(keras.layers.Flatten(name="flat")(x))
    return keras.Model(inp, keras.layers.Softmax(name="sm")(x), name=f"tiny_{head}")


def _inputs(n: int, seed: int) -> np.ndarray:
    """Images in [-1, 1] that differ as a whole (a colour and a gradient each, plus noise), so that the
    tiny classifiers' outputs differ between images rather than averaging out over iid noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-1, 1, SIZE, dtype=np.float32)
    colour = rng.uniform(-0.8, 0.8, (n, 1, 1, 3))
    grad = rng.uniform(-0.5, 0.5, (n, 1, 1, 3)) * ramp[None, :, None, None] \
        + rng.uniform(-0.5, 0.5, (n, 1, 1, 3)) * ramp[None, None, :, None]
    return np.clip(colour + grad + rng.normal(0, 0.2, (n, SIZE, SIZE, 3)), -1, 1).astype(np.float32)


def _to_squeeze(buf: bytes) -> bytes:
    """The file with its head RESHAPE (N, 1, 1, K) -> (N, K) rewritten as SQUEEZE(axis 1, 2)."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(buf))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    (op,) = [o for o in model.subgraphs[0].operators if codes[o.opcodeIndex] == fb.BuiltinOperator.RESHAPE]
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.SQUEEZE
    code.version = 1
    model.operatorCodes.append(code)
    op.opcodeIndex, op.inputs = len(model.operatorCodes) - 1, op.inputs[:1]
    op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.SqueezeOptions, fb.SqueezeOptionsT()
    op.builtinOptions.squeezeDims = [1, 2]
    return bytes(fu.convert_object_to_bytearray(model))


@pytest.fixture(scope="module")
def files(tmp_path_factory, tflite_bytes):
    """(head, quantisation) -> path of the tiny TFLite file."""
    out = tmp_path_factory.mktemp("tflite")
    paths = {}
    for head in ("conv", "pool", "fc"):
        model = _net(head)
        for quant in (None, "uint8", "int8"):
            if head == "pool" and quant == "int8":
                continue
            buf = tflite_bytes(model, quant, representative=_inputs(32, 1))
            if head == "pool" and quant is None:
                buf = _to_squeeze(buf)
            paths[head, quant] = out / f"{head}_{quant or 'float'}.tflite"
            paths[head, quant].write_bytes(buf)
    return paths


def _ops(path) -> set[str]:
    return {op.name for op in T.TFLiteGraph.read(path).ops}


def _quantised_inputs(path, x):
    """(what the interpreter is fed, the real values the float rebuild takes) for float inputs x."""
    q = T.input_quantization(path)
    if q is None:
        return x, x
    scale, zero = q
    dtype = T.TFLiteGraph.read(path).dtype(T.TFLiteGraph.read(path).inputs[0])
    info = np.iinfo(dtype)
    qx = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return qx, ((qx.astype(np.float32) - zero) * scale).astype(np.float32)


def _interpreter_logits(path, fed):
    """The interpreter's dequantised input of its SOFTMAX (the logits) for `fed`, and their scale."""
    g = T.TFLiteGraph.read(path)
    t = next(op for op in g.ops if op.name == "SOFTMAX").inputs[0]
    interp = tf.lite.Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    scale, zero = next(d for d in interp.get_tensor_details() if d["index"] == t)["quantization"]
    out = []
    for x in fed:
        interp.set_tensor(interp.get_input_details()[0]["index"], x[None])
        interp.invoke()
        out.append((interp.get_tensor(t)[0].astype(np.float32) - zero) * scale)
    return np.stack(out), scale


# ------------------------------------------------------------------------------------ coverage
def test_the_tiny_files_cover_the_supported_operators(files):
    used = set().union(*(_ops(p) for p in files.values()))
    assert set(T.SUPPORTED_OPS) <= used, sorted(set(T.SUPPORTED_OPS) - used)
    assert "SQUEEZE" in _ops(files["pool", None]) and "DEQUANTIZE" in _ops(files["conv", "int8"])
    # the quantised files really are quantised: int8 weights, uint8 input
    g = T.TFLiteGraph.read(files["conv", "uint8"])
    assert g.dtype(g.inputs[0]) == np.uint8 and T.input_quantization(files["conv", "uint8"]) is not None
    conv = next(op for op in g.ops if op.name == "CONV_2D")
    assert g.dtype(conv.inputs[1]) == np.int8 and g.quantization(conv.inputs[1])[0].size == 8  # per channel


# ----------------------------------------------------------------------------------- agreement
@pytest.mark.parametrize("head", ["conv", "pool", "fc"])
def test_float_files_match_the_interpreter(files, head):
    path = files[head, None]
    model = T.build(path)
    assert zoo.check_structure(model) == [] and model.layers[-2].name == "logits"
    x = _inputs(8, 2)
    want = T.interpreter_predict(path, x)
    got = np.asarray(model.predict_on_batch(x))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # and the Keras network the file came from
    np.testing.assert_allclose(got, np.asarray(_net(head).predict_on_batch(x)), atol=1e-5)


@pytest.mark.parametrize("head,quant", [("conv", "uint8"), ("conv", "int8"), ("pool", "uint8"), ("fc", "uint8"),
                                        ("fc", "int8")])
def test_quantised_files_match_the_interpreter(files, head, quant):
    path = files[head, quant]
    model = T.build(path)
    assert zoo.check_structure(model) == []
    fed, real = _quantised_inputs(path, _inputs(40, 3))
    want = T.interpreter_predict(path, fed)
    got = np.asarray(model.predict_on_batch(real))
    assert np.abs(got - want).max() <= 8 / 256  # the quantised softmax output's scale is 1/256
    # logits: within a few quantisation steps of the interpreter's (int8 activations all the way)
    want_logits, step = _interpreter_logits(path, fed)
    got_logits = np.asarray(keras.Model(model.inputs, model.get_layer("logits").output).predict_on_batch(real))
    err = np.abs(got_logits - want_logits).max()
    assert err <= 32 * step  # measured 2.3 steps (conv, pool heads), 17 (fc head)
    # top-1 on the logits (the uint8 probabilities tie: several classes share the largest value)
    same = got_logits.argmax(1) == want_logits.argmax(1)
    assert same.mean() >= 0.9  # measured 0.95-0.975
    top2 = np.sort(want_logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * err  # no error of this size can flip these
    assert clear.sum() >= 5 and same[clear].all()


def test_interpreter_predict_quantises_float_inputs(files):
    path = files["conv", "uint8"]
    fed, real = _quantised_inputs(path, _inputs(3, 4))
    np.testing.assert_array_equal(T.interpreter_predict(path, real), T.interpreter_predict(path, fed))


# ------------------------------------------------------------------------------ graph and names
def test_layers_of_the_rebuild(files):
    model = T.build(files["conv", "uint8"])
    kinds = {type(lyr).__name__ for lyr in model.layers}
    assert {"Conv2D", "DepthwiseConv2D", "ReLU", "Multiply", "Add", "Concatenate", "MaxPooling2D",
            "AveragePooling2D", "ZeroPadding2D", "GlobalAveragePooling2D", "Activation", "Dense", "Softmax"} <= kinds
    dw = next(lyr for lyr in model.layers if isinstance(lyr, keras.layers.DepthwiseConv2D))
    assert dw.depth_multiplier == 2
    # the head: MEAN -> 1x1 CONV_2D -> RESHAPE -> SOFTMAX is GlobalAveragePooling2D -> Dense -> Softmax
    gap, dense, sm = model.layers[-3:]
    assert isinstance(gap, keras.layers.GlobalAveragePooling2D) and not gap.keepdims
    assert (dense.name, sm.name, dense.units) == ("logits", "probs", K)
    assert all(w.dtype == "float32" for w in model.weights)


def test_layer_names_come_from_the_graph(files):
    path = files["conv", None]
    g = T.TFLiteGraph.read(path)
    a, b = T.build(path), T.build(path)  # Keras's automatic names would differ between the two
    assert [lyr.name for lyr in a.layers] == [lyr.name for lyr in b.layers]
    names = [lyr.name for lyr in a.layers]
    assert len(set(names)) == len(names)
    stem = next(op for op in g.ops if op.name == "CONV_2D")  # stem conv with fused RELU6
    tensor = g.name(stem.outputs[0]).split(";")[0]
    assert tensor.endswith("/Relu6")
    assert sanitize(tensor) in names and sanitize(tensor.rsplit("/", 1)[0]) in names
    assert isinstance(a.get_layer(sanitize(tensor)), keras.layers.ReLU)
    assert isinstance(a.get_layer(sanitize(tensor.rsplit("/", 1)[0])), keras.layers.Conv2D)
    assert all("/" not in n for n in names)


@pytest.mark.parametrize("head", ["conv", "pool", "fc"])
def test_default_ci_layer_is_the_last_spatial_feature_map(files, head):
    model = T.build(files[head, "uint8"])
    layer = model.get_layer(T.default_ci_layer(model))
    assert isinstance(layer, keras.layers.ReLU) and tuple(layer.output.shape[1:]) == (4, 4, 12)
    assert "last" in layer.name


def test_float16_weights_are_folded(tmp_path):
    conv = tf.lite.TFLiteConverter.from_keras_model(_net("conv"))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    path = tmp_path / "fp16.tflite"
    path.write_bytes(conv.convert())
    assert "DEQUANTIZE" in _ops(path)
    x = _inputs(4, 5)
    np.testing.assert_allclose(T.build(path).predict_on_batch(x), T.interpreter_predict(path, x), atol=1e-5)


def test_constant_operands(tmp_path, save_tflite):
    """ADD and MUL with a constant (Keras Rescaling) on a map and on a pooled vector: ConstantOperand."""
    inp = keras.Input((4, 4, 3), batch_size=1)
    x = keras.layers.MaxPooling2D(2)(keras.layers.Rescaling(0.5, offset=0.25)(keras.layers.ReLU()(inp)))
    x = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = keras.layers.ReLU()(keras.layers.Rescaling(-2.0, offset=1.0)(x))
    x = keras.layers.Softmax()(keras.layers.Reshape((3,))(keras.layers.Conv2D(3, 1)(x)))
    path = save_tflite(keras.Model(inp, x), tmp_path, "const")
    g = T.TFLiteGraph.read(path)
    assert sum(op.name in ("ADD", "MUL") and g.is_constant(op.inputs[1]) for op in g.ops) == 4
    model = T.build(path)
    assert sum(isinstance(lyr, T.ConstantOperand) for lyr in model.layers) == 4
    x = np.random.default_rng(7).normal(size=(5, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict_on_batch(x), T.interpreter_predict(path, x), atol=1e-5)
    model.save(tmp_path / "const.keras")  # ConstantOperand is serialisable
    again = keras.saving.load_model(tmp_path / "const.keras")
    np.testing.assert_allclose(again.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)


# ------------------------------------------------------------------------------------ from_tflite
def _pre(images):
    return np.stack(images).astype(np.float32) / 127.5 - 1


def test_from_tflite_zoo_model_and_background_class(files):
    path = files["conv", None]
    zm = zoo.from_tflite(path, _pre, name="tiny")
    assert zm.class_names == tuple(str(i) for i in range(K)) and zm.input_shape == (SIZE, SIZE, 3)
    assert zoo.check_structure(zm.model) == [] and zm.ci_layer == T.default_ci_layer(zm.model)
    imgs = np.random.default_rng(6).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    want = T.interpreter_predict(path, _pre(imgs))
    np.testing.assert_allclose(zm.predict(imgs, batch_size=2), want, atol=1e-5)
    # one class name fewer than outputs: output 0 is the background class, dropped before the softmax
    bg = zoo.from_tflite(path, _pre, class_names=list("abcde"), name="tiny_bg", ci_layer="probs")
    assert bg.num_classes == K - 1 and bg.model.get_layer("logits").units == K - 1 and bg.ci_layer == "probs"
    np.testing.assert_allclose(bg.predict(imgs), want[:, 1:] / want[:, 1:].sum(1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(T.interpreter_predict(path, _pre(imgs), drop_background=True), want[:, 1:])
    with pytest.raises(ValueError, match="3 class names for 6 outputs"):
        zoo.from_tflite(path, _pre, class_names=list("abc"))


# ---------------------------------------------------------------------------------- unsupported
def test_unsupported_operators_are_named(tmp_path, save_tflite):
    inp = keras.Input((4, 4, 3), batch_size=1)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Activation("tanh", name="squash")(inp))
    path = save_tflite(keras.Model(inp, keras.layers.Softmax()(keras.layers.Dense(3)(x))), tmp_path, "tanh")
    with pytest.raises(T.UnsupportedOperatorError,
                       match=r"TFLite operator TANH \(operator 0, output tensor \d+ '.*squash"):
        T.build(path)

    inp = keras.Input((4, 4, 3), batch_size=1)
    x = keras.layers.Reshape((16, 3))(inp)
    x = keras.layers.Flatten()(keras.ops.matmul(keras.ops.transpose(x, (0, 2, 1)), x))
    path = save_tflite(keras.Model(inp, keras.layers.Softmax()(keras.layers.Dense(3)(x))), tmp_path, "bmm")
    with pytest.raises(T.UnsupportedOperatorError,
                       match=r"TFLite operator BATCH_MATMUL \(operator \d+.*supported operators: CONV_2D"):
        zoo.from_tflite(path, _pre)


def test_unsupported_variants_are_named(tmp_path, save_tflite):
    inp = keras.Input((4, 4, 3), batch_size=1)
    x = keras.layers.Reshape((16,))(keras.ops.mean(inp, axis=-1))  # MEAN over the channels
    path = save_tflite(keras.Model(inp, keras.layers.Softmax()(keras.layers.Dense(3)(x))), tmp_path, "cmean")
    with pytest.raises(T.UnsupportedOperatorError, match=r"TFLite operator MEAN \(operator 0.*axes \(3,\)"):
        T.build(path)
    inp = keras.Input((4, 4, 3), batch_size=1)
    x = keras.layers.GlobalAveragePooling2D()(inp)
    path = save_tflite(keras.Model(inp, keras.layers.Dense(3, activation="relu")(x)), tmp_path, "relu_out")
    with pytest.raises(T.UnsupportedOperatorError, match="logits FULLY_CONNECTED must be linear"):
        T.build(path)


# ------------------------------------------------------------------------------ MobileNetV1 inputs
def test_mobilenet_v1_preprocessing():
    """192x192 crops (shorter side to 219, centre) and x / 128 - 1, the file's input quantisation."""
    from causadv_lib import preprocess as pp

    rng = np.random.default_rng(8)
    square = rng.integers(0, 256, (219, 219, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pp.geometry_mobilenet_v1([square])[0], square[13:205, 13:205])
    imgs = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), rng.integers(0, 256, (227, 227, 3), dtype=np.uint8)]
    x = pp.preprocess_mobilenet_v1(imgs)
    assert x.shape == (2, 192, 192, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x, pp.normalize_mobilenet_v1(pp.geometry_mobilenet_v1(imgs)))
    np.testing.assert_array_equal(pp.geometry_mobilenet_v1(imgs)[0], pp.resize_crop(imgs[0], 192, "shorter_256_crop"))
    np.testing.assert_allclose(pp.normalize_mobilenet_v1(np.array([0.0, 128.0, 255.0]).reshape(1, 1, 1, 3)
                                                         * np.ones((1, 192, 192, 1))).reshape(-1, 3)[0],
                               [-1.0, 0.0, 127 / 128], atol=1e-7)
    with pytest.raises(ValueError, match=r"mobilenet_v1_imagenet.*\(N, 192, 192, 3\)"):
        pp.normalize_mobilenet_v1(np.zeros((1, 224, 224, 3)))
