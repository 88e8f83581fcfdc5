"""Shared pytest set-up: quiet TensorFlow, the `slow` tier, deterministic seeds; shared fixtures (a damaged cache
entry, TFLite files of Keras models)."""
import os
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Slow tests (full-scale reproduction) run only with RUN_SLOW=1 or an explicit `-m slow`."""
    if os.environ.get("RUN_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="full-scale check: set RUN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def damage_entry():
    """damage(file, how, keep): spoil a cache entry: "truncated", "empty", "garbage", or else a valid npz holding
    only the array `keep` (so that a required one is missing)."""
    def damage(f, how: str, keep: str):
        raw = f.read_bytes()
        if how == "truncated":
            f.write_bytes(raw[:len(raw) // 2])
        elif how == "empty":
            f.write_bytes(b"")
        elif how == "garbage":
            f.write_bytes(b"PK\x03\x04" + b"\0" * 64)
        else:
            with zipfile.ZipFile(f, "w") as z:
                z.writestr(f"{keep}.npy", b"")
    return damage


@pytest.fixture(scope="session")
def tflite_bytes():
    """tflite_bytes(model, quant=None, representative=None): a Keras model converted by TensorFlow's TFLite
    converter. quant None: float; "int8": int8 post-training quantisation with float input and output (around
    QUANTIZE/DEQUANTIZE); "uint8": the same with uint8 input and output (like the Coral ImageNet files).
    `representative`: the calibration inputs (an array of single inputs) of a quantised conversion."""
    import tensorflow as tf  # only the tests that convert models pay for importing TensorFlow here

    def convert(model, quant: str | None = None, representative=None) -> bytes:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if quant:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([x[None]] for x in representative)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if quant == "uint8":
                conv.inference_input_type = conv.inference_output_type = tf.uint8
        return conv.convert()
    return convert


@pytest.fixture(scope="session")
def save_tflite(tflite_bytes):
    """save_tflite(model, folder, name, quant=None, representative=None): `tflite_bytes` written to
    ``folder/NAME.tflite``; returns that path."""
    def save(model, folder, name: str, quant: str | None = None, representative=None):
        path = folder / f"{name}.tflite"
        path.write_bytes(tflite_bytes(model, quant, representative))
        return path
    return save


def cifar_normalize(pixels):
    """Float pixels in [0, 255] -> the inputs of `small_cifar_cnn` (x / 255)."""
    import numpy as np  # noqa: PLC0415 (kept out of conftest's top: see tflite_bytes)
    return np.asarray(pixels, np.float32) / 255.0


def small_cifar_cnn(seed: int = 0, name: str = "tiny_cnn"):
    """An untrained small CNN for 32 x 32 x 3 inputs: Conv-Pool-Conv-Pool-Conv ("feat")-GAP-Dense ("logits")."""
    import keras  # noqa: PLC0415 (only the tests that build models pay for importing TensorFlow here)
    from keras import layers as L  # noqa: PLC0415
    keras.utils.set_random_seed(seed)
    i = keras.Input((32, 32, 3))
    h = L.MaxPooling2D()(L.Conv2D(16, 3, padding="same", activation="relu")(i))
    h = L.MaxPooling2D()(L.Conv2D(32, 3, padding="same", activation="relu")(h))
    h = L.Conv2D(32, 3, padding="same", activation="relu", name="feat")(h)
    return keras.Model(i, L.Dense(10, name="logits")(L.GlobalAveragePooling2D()(h)), name=name)


@pytest.fixture(scope="session")
def trained_cifar_cnn():
    """`small_cifar_cnn` trained once per test session (about 30 s) on the mirror's 10,000 CIFAR-10 training images
    (inputs x / 255, 5 epochs; about 43% top-1 on the evaluation pool), logits out. Shared by the tests that need a
    trained model of their own (detector, peers, command line, model files); none may change its weights."""
    import keras  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from causadv_lib import data  # noqa: PLC0415
    train = data.pool("cifar10_prototypes")
    model = small_cifar_cnn()
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(cifar_normalize(train.load(np.arange(len(train)))), np.asarray(train.labels), epochs=5, batch_size=64,
              verbose=0)
    return model
