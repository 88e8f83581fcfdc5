"""One way to name a model (`zoo.resolve`, `zoo.register`): ZooModels, zoo names, your names, model files.

The models are tiny CNNs built here with random weights (32 x 32 x 3, 10 classes, a few thousand weights),
saved as ``.keras`` or converted to ``.tflite`` in tmp_path; only agreement with the Keras model (or the
TFLite interpreter) on the same images is checked, never accuracy.
"""
import os

import keras
import numpy as np
import pytest
from keras import layers as L

from causadv_lib import data, preprocess, zoo
from causadv_lib.zoo import tflite as T

#: probabilities of the resolved model against the Keras model's on the same inputs (float32 arithmetic,
#: the softmax split off a Dense computed separately)
TOL = 1e-6
#: the TFLite interpreter's float kernels against Keras'
TFLITE_TOL = 1e-5
ACCEPTED = ("a path to a .keras or .tflite file with dataset= and normalize= (one of '[0,1]', '[-1,1]', "
            "'imagenet-caffe', 'imagenet-torch'")


def _cnn(end: str = "softmax", size: int = 32, classes: int = 10, batch_size=None) -> keras.Model:
    """Two convolutions and a dense head; `end`: "softmax" (a Softmax layer), "dense_softmax" (a Dense with
    softmax activation) or "logits" (no softmax)."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((size, size, 3), batch_size=batch_size)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Conv2D(12, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(classes, activation="softmax" if end == "dense_softmax" else None, name="head")(x)
    return keras.Model(inp, L.Softmax(name="sm")(x) if end == "softmax" else x, name=f"cnn_{end}")


def _images(n: int = 6, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _save(model: keras.Model, folder, name: str):
    path = folder / f"{name}.keras"
    model.save(path)
    return path


@pytest.fixture
def cleanup_registry():
    """Registered names made by a test are removed after it (the registry is per process)."""
    before = set(zoo.registered())
    yield
    for name in set(zoo.registered()) - before:
        zoo.unregister(name)


# ------------------------------------------------------------------------------------- .keras files
@pytest.mark.parametrize("end", ["softmax", "dense_softmax"])
def test_keras_file_with_softmax_agrees_with_the_keras_model(tmp_path, end):
    model = _cnn(end)
    path = _save(model, tmp_path, f"my-net {end}")
    zm = zoo.resolve(path, dataset="cifar10", normalize="[0,1]")
    assert isinstance(zm, zoo.ZooModel) and zm.name == f"my_net_{end}" and zm.outputs == "probabilities"
    assert zm.dataset == "cifar10" and zm.class_names == data.CIFAR10_CLASSES and zm.input_shape == (32, 32, 3)
    assert zm.ci_layer == "conv2" and zoo.check_structure(zm.model) == []
    assert zm.normalize is zoo.NORMALIZATIONS["[0,1]"] is preprocess.to_zero_one
    imgs = _images()
    np.testing.assert_allclose(zm.predict(imgs), model.predict_on_batch(imgs.astype(np.float32) / 255), atol=TOL)
    np.testing.assert_array_equal(zm.geometry(imgs), imgs)                  # CIFAR-10 at 32 x 32: no resizing
    np.testing.assert_array_equal(zm.preprocess(imgs), zm.normalize(zm.geometry(imgs)))
    np.testing.assert_array_equal(zm.preprocess(imgs), imgs.astype(np.float32) / np.float32(255))


def test_keras_file_with_logits_gets_a_softmax(tmp_path):
    model = _cnn("logits")
    zm = zoo.resolve(str(_save(model, tmp_path, "logit_net")), dataset="cifar10", normalize="[-1,1]")
    assert zm.outputs == "logits" and zm.model.layers[-1].name == "probs" and zm.normalize is preprocess.to_unit_range
    imgs = _images(seed=1)
    logits = np.asarray(model.predict_on_batch(imgs.astype(np.float32) / 127.5 - 1), np.float64)
    want = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(zm.predict(imgs), want / want.sum(1, keepdims=True), atol=TOL)
    np.testing.assert_array_equal(zm.preprocess(imgs), zm.normalize(zm.geometry(imgs)))


@pytest.mark.parametrize("dataset, size, normalize, classes", [("imagenet", 48, "imagenet-caffe", 1000),
                                                               ("imagenet", 40, "imagenet-torch", 1000),
                                                               ("cifar10", 40, "[0,1]", 10)])
def test_geometry_is_the_datasets_resize_to_the_input_size(tmp_path, dataset, size, normalize, classes):
    zm = zoo.resolve(_save(_cnn(size=size, classes=classes), tmp_path, "net"), dataset=dataset, normalize=normalize)
    assert zm.input_shape == (size, size, 3) and zm.num_classes == classes
    photos = [_images(1, 32, seed=2)[0], np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8)]
    if dataset == "imagenet":   # shorter side to size / 0.875, central crop, as the ImageNet zoo models
        assert zm.class_names == data.imagenet_class_names()
        want = preprocess.geometry_imagenet(photos, size=size)
    else:                       # CIFAR-10 images resized to the model's size
        want = preprocess.geometry_imagenet(photos, method="plain", size=size)
    np.testing.assert_array_equal(zm.geometry(photos), want)
    np.testing.assert_array_equal(zm.preprocess(photos), zoo.NORMALIZATIONS[normalize](want))


def test_the_named_normalizations():
    x = np.random.default_rng(4).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
    want = {"[0,1]": x / 255, "[-1,1]": x / 127.5 - 1, "imagenet-caffe": x[..., ::-1] - [103.939, 116.779, 123.68],
            "imagenet-torch": (x / 255 - mean) / std}
    assert list(zoo.NORMALIZATIONS) == list(want)
    for name, fn in zoo.NORMALIZATIONS.items():
        got = fn(x)
        assert got.dtype == np.float32 and got.shape == x.shape, name
        np.testing.assert_allclose(got, want[name], rtol=1e-6, atol=1e-5, err_msg=name)
    # the zoo models' own normalisations are the same arithmetic at their input size
    big = np.random.default_rng(5).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    np.testing.assert_array_equal(zoo.NORMALIZATIONS["imagenet-caffe"](big), preprocess.normalize_vgg16_imagenet(big))
    np.testing.assert_array_equal(zoo.NORMALIZATIONS["imagenet-torch"](big[:, :32, :32]),
                                  preprocess.normalize_resnet_cifar10(big[:, :32, :32]))
    with pytest.raises(ValueError, match="to_caffe_bgr: expected RGB pixel values with 3 channels last"):
        zoo.NORMALIZATIONS["imagenet-caffe"](x[..., :2])
    with pytest.raises(ValueError, match="scaled to"):
        zoo.NORMALIZATIONS["[0,1]"](x / 255)


def test_model_files_are_read_once_per_process(tmp_path, monkeypatch):
    path = _save(_cnn(), tmp_path, "once")
    zm = zoo.resolve(path, dataset="cifar10", normalize="[0,1]")
    assert zoo.resolve(str(path), dataset="cifar10", normalize="[0,1]") is zm
    monkeypatch.chdir(tmp_path)
    assert zoo.resolve("once.keras", dataset="cifar10", normalize="[0,1]") is zm          # a relative path
    other = zoo.resolve(path, dataset="cifar10", normalize="[-1,1]")
    assert other is not zm and other.normalize is preprocess.to_unit_range
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))                         # the file changed
    assert zoo.resolve(path, dataset="cifar10", normalize="[0,1]") is not zm


# ------------------------------------------------------------------------------------ .tflite files
def test_tflite_file_agrees_with_the_interpreter_and_keras(tmp_path, save_tflite):
    model = _cnn("softmax", batch_size=1)
    path = save_tflite(model, tmp_path, "tiny_cnn")
    zm = zoo.resolve(path, dataset="cifar10", normalize="[-1,1]")
    assert zm.name == "tiny_cnn" and zm.class_names == data.CIFAR10_CLASSES and zm.normalize is preprocess.to_unit_range
    assert zoo.check_structure(zm.model) == [] and zm.ci_layer == T.default_ci_layer(zm.model)
    imgs = _images(seed=6)
    np.testing.assert_array_equal(zm.preprocess(imgs), zm.normalize(zm.geometry(imgs)))
    probs = zm.predict(imgs)
    np.testing.assert_allclose(probs, T.interpreter_predict(path, zm.preprocess(imgs)), atol=TFLITE_TOL)
    np.testing.assert_allclose(probs, model.predict_on_batch(imgs / 127.5 - 1), atol=TFLITE_TOL)
    assert zoo.resolve(str(path), dataset="cifar10", normalize="[-1,1]") is zm


def test_a_quantised_input_must_agree_with_normalize(tmp_path, save_tflite):
    calibration = np.concatenate([np.full((1, 32, 32, 3), -1.0), np.full((1, 32, 32, 3), 1.0),
                                  np.random.default_rng(7).uniform(-1, 1, (14, 32, 32, 3))]).astype(np.float32)
    path = save_tflite(_cnn("softmax", batch_size=1), tmp_path, "quant", quant="uint8", representative=calibration)
    scale, zero = T.input_quantization(path)
    assert abs(scale - 2 / 255) < 1e-4                          # inputs calibrated on [-1, 1]
    zm = zoo.resolve(path, dataset="cifar10", normalize="[-1,1]")
    assert zm.input_shape == (32, 32, 3)
    with pytest.raises(ValueError, match=r"quantised input maps pixel values 0 and 255 to -0\.99\d* and 1\.00\d* "
                                         r"\(scale 0\.00784\d*, zero point 12[78]\); "
                                         r"normalize='\[0,1\]' maps them to 0 and 1$"):
        zoo.resolve(path, dataset="cifar10", normalize="[0,1]")


# ------------------------------------------------------------------------------------------- names
def test_register_resolve_unregister(cleanup_registry):
    zm = zoo.custom(_cnn(), preprocess.to_zero_one, name="mine_model", dataset="cifar10",
                    normalize=preprocess.to_zero_one, class_names=data.CIFAR10_CLASSES)
    builtin = zoo.names()
    assert zoo.register("mine", zm) is zm
    assert zoo.get("mine") is zm and zoo.resolve("mine") is zm and zoo.resolve(zm) is zm
    assert zoo.registered() == ["mine"] and zoo.names() == builtin
    assert zoo.resolve("mine", dataset="cifar10") is zm
    with pytest.raises(ValueError, match=r"'mine' is already registered \(model 'mine_model'\); pass replace=True"):
        zoo.register("mine", zm)
    other = zoo.custom(_cnn("logits"), preprocess.to_zero_one, outputs="logits", name="other")
    assert zoo.register("mine", other, replace=True) is other and zoo.get("mine") is other
    with pytest.raises(zoo.UnknownModelError) as err:
        zoo.resolve("mien")
    assert "registered names: mine" in str(err.value) and "did you mean 'mine'" in str(err.value)
    assert zoo.unregister("mine") is other and zoo.registered() == []
    with pytest.raises(zoo.UnknownModelError, match=r"registered names: none \(zoo.register"):
        zoo.get("mine")


def test_register_refusals(cleanup_registry):
    zm = zoo.custom(_cnn(), preprocess.to_zero_one, name="r")
    with pytest.raises(TypeError, match=r"zoo.register\('k', \.\.\.\): expected a ZooModel .* got Functional"):
        zoo.register("k", zm.model)
    with pytest.raises(ValueError, match="'resnet20_cifar10' is a built-in zoo model name"):
        zoo.register("resnet20_cifar10", zm)
    for bad in ("", "  ", 3):
        with pytest.raises(ValueError, match="the name must be a non-empty string"):
            zoo.register(bad, zm)
    for pathlike in ("net.keras", "models/net"):
        with pytest.raises(ValueError, match="would be read as a model file path"):
            zoo.register(pathlike, zm)
    with pytest.raises(ValueError, match="'vgg16_bn_cifar10' is a built-in zoo model name; only names given"):
        zoo.unregister("vgg16_bn_cifar10")
    with pytest.raises(zoo.UnknownModelError, match="'nobody' is not registered; registered names: none"):
        zoo.unregister("nobody")
    assert zoo.registered() == []


# --------------------------------------------------------------------------------------- refusals
def test_unknown_names_list_what_is_accepted():
    with pytest.raises(zoo.UnknownModelError) as err:
        zoo.resolve("resnet110")
    msg = str(err.value)
    assert isinstance(err.value, KeyError) and msg.startswith("unknown zoo model 'resnet110'")
    assert all(n in msg for n in zoo.names()) and "registered names: none" in msg and ACCEPTED in msg
    assert "dataset one of 'imagenet', 'cifar10'" in msg
    with pytest.raises(TypeError, match="a zoo model name or a model file path, got int; accepted: zoo names"):
        zoo.resolve(3)


def test_model_file_refusals(tmp_path):
    path = _save(_cnn(), tmp_path, "net")
    with pytest.raises(FileNotFoundError, match=r"no model file '.*missing\.keras'; accepted: zoo names") as err:
        zoo.resolve(tmp_path / "missing.keras", dataset="cifar10", normalize="[0,1]")
    assert ACCEPTED in str(err.value)
    (tmp_path / "folder.keras").mkdir()
    with pytest.raises(FileNotFoundError, match=r"folder\.keras' \(it is a folder\)"):
        zoo.resolve(tmp_path / "folder.keras", dataset="cifar10", normalize="[0,1]")
    (tmp_path / "net.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"net\.h5' is not a model file \(suffix '\.h5'; "
                                         r"expected \.keras or \.tflite\)"):
        zoo.resolve(str(tmp_path / "net.h5"), dataset="cifar10", normalize="[0,1]")
    for kwargs in ({}, {"dataset": "cifar10"}, {"normalize": "[0,1]"}):
        with pytest.raises(ValueError, match="a model file needs dataset= and normalize=, got dataset=") as err:
            zoo.resolve(path, **kwargs)
        assert ACCEPTED in str(err.value)
    with pytest.raises(ValueError, match=r"normalize='0-1'; expected one of '\[0,1\]', '\[-1,1\]', 'imagenet-caffe'"):
        zoo.resolve(path, dataset="cifar10", normalize="0-1")
    with pytest.raises(ValueError, match=r"dataset='mnist'; expected one of \('imagenet', 'cifar10'\)"):
        zoo.resolve(path, dataset="mnist", normalize="[0,1]")
    with pytest.raises(ValueError, match="the model has 10 outputs, dataset 'imagenet' has 1000 classes"):
        zoo.resolve(path, dataset="imagenet", normalize="[0,1]")


def test_unusable_files_are_named(tmp_path):
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.keras'\): Keras cannot load it"):
        zoo.resolve(tmp_path / "junk.keras", dataset="cifar10", normalize="[0,1]")
    (tmp_path / "junk.tflite").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match=r"junk\.tflite'\): not a readable TFLite file"):
        zoo.resolve(tmp_path / "junk.tflite", dataset="cifar10", normalize="[0,1]")
    inp = keras.Input((32, 24, 3))
    wide = keras.Model(inp, L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(inp))))
    with pytest.raises(ValueError, match=r"input shape \(32, 24, 3\); a model file needs a fixed square RGB input"):
        zoo.resolve(_save(wide, tmp_path, "wide"), dataset="cifar10", normalize="[0,1]")


@keras.saving.register_keras_serializable(package="test_zoo_spec")
class HiddenSoftmax(L.Layer):
    """A softmax the package cannot see (a layer of one's own)."""

    def call(self, x):
        return keras.ops.softmax(x)


def test_a_softmax_it_cannot_see_is_refused_not_doubled(tmp_path):
    inp = keras.Input((32, 32, 3))
    x = L.Dense(10)(L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu")(inp)))
    path = _save(keras.Model(inp, HiddenSoftmax()(x)), tmp_path, "hidden")
    with pytest.raises(ValueError, match="outputs are probability vectors, but it does not end in a softmax layer"):
        zoo.resolve(path, dataset="cifar10", normalize="[0,1]")


def test_names_and_zoo_models_bring_their_own_normalisation(cleanup_registry):
    zm = zoo.register("mine", zoo.custom(_cnn(), preprocess.to_zero_one, name="m", dataset="cifar10",
                                         class_names=data.CIFAR10_CLASSES))
    with pytest.raises(ValueError, match=r"zoo.resolve\('mine', normalize='\[0,1\]'\): normalize= is for model files"):
        zoo.resolve("mine", normalize="[0,1]")
    with pytest.raises(ValueError, match=r"zoo.resolve\('m', dataset='imagenet'\): the model's dataset is 'cifar10'"):
        zoo.resolve(zm, dataset="imagenet")
