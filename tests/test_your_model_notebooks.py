"""Your model through the paper's notebooks: a tiny CNN trained here, as a .keras file and as an int8 .tflite file,
runs notebooks 02-04 at the smoke profile through the file-path parameters (model, dataset, normalize) into an
output folder of its own. The results JSON carry the paper's columns beside ours, the derived evaluation sample
is written there, and paper_figures/ is not touched."""
import json

import jupytext
import keras
import numpy as np
import papermill
import pytest
import tensorflow as tf
from keras import layers as L

from causadv_lib import config, data

NOTEBOOKS = ("02_experiment_setup", "03_ci_distributions", "04_detection_strategies")


def _tree(root):
    """Every file under `root` with its size and modification time (what a run could change)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """A small CNN trained for a few seconds on CIFAR-10 training images (inputs x / 255), saved both ways."""
    pool = data.pool("cifar10_prototypes")
    idx = np.arange(min(3000, len(pool)))
    x = pool.load(idx).astype(np.float32) / 255.0
    y = pool.labels[idx]
    keras.utils.set_random_seed(config.SEED)
    inp = keras.Input((32, 32, 3))
    h = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(32, 3, padding="same", activation="relu", name="features")(h)
    out = L.Softmax()(L.Dense(10)(L.GlobalAveragePooling2D()(h)))
    model = keras.Model(inp, out, name="tiny_cnn")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=4, verbose=0, shuffle=False)
    folder = tmp_path_factory.mktemp("models")
    keras_path = folder / "tiny_cnn.keras"
    model.save(keras_path)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(64))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    tflite_path = folder / "tiny_cnn_int8.tflite"
    tflite_path.write_bytes(conv.convert())
    return {"keras": keras_path, "tflite": tflite_path}


@pytest.mark.parametrize("kind", ["keras", "tflite"])
def test_notebooks_02_to_04_run_on_a_model_file_into_their_own_folder(tiny_files, kind, tmp_path, monkeypatch):
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path / "cache"))
    verified = config.PROJECT_ROOT / ".cache" / "verified.json"
    if verified.exists():                                    # spare the kernels a full sha256 pass
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache" / "verified.json").write_bytes(verified.read_bytes())
    before = _tree(config.FIGURES_ROOT)
    out = tmp_path / "out"
    params = {"profile": "smoke", "model": str(tiny_files[kind]), "dataset": "cifar10", "normalize": "[0,1]",
              "out": str(out)}
    for name in NOTEBOOKS:
        src = tmp_path / f"{name}.ipynb"
        jupytext.write(jupytext.read(config.NOTEBOOKS_DIR / f"{name}.py"), src)
        papermill.execute_notebook(str(src), str(tmp_path / f"{name}.run.ipynb"), parameters=params,
                                   kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    assert _tree(config.FIGURES_ROOT) == before, "a run with out= wrote into paper_figures/"
    stem = tiny_files[kind].stem
    results = {n: json.loads((out / f"{n}.json").read_text()) for n in NOTEBOOKS}
    setup = results["02_experiment_setup"]["tables"]["table02_setup"]["rows"]
    assert [r["dataset"] for r in setup] == ["CIFAR-10"] and setup[0]["model"] == stem
    assert setup[0]["sample list"] == f"{stem}__cifar10_eval.txt (derived)"
    assert (out / f"{stem}__cifar10_eval.txt").read_text().startswith(f"# model: {stem}\n")
    # Tables 2 and 3 and Figure 3's counts: the paper's columns beside ours, filled on the paper's rows
    for nb, table in (("02_experiment_setup", "table02_attack_success"), ("04_detection_strategies", "table04_pearson_top5"),
                      ("04_detection_strategies", "table04_zero_filters"), ("04_detection_strategies", "table04_common_features")):
        t = results[nb]["tables"][table]
        paper_cols = [c for c in t["columns"] if c.startswith("paper")]
        assert paper_cols, (table, t["columns"])
        assert any(r.get(c) not in (None, "") for r in t["rows"] for c in paper_cols), (table, t["rows"][:3])
    assert results["04_detection_strategies"]["tables"]["table04_roc_auc"]["rows"]
    assert (out / "fig03_statistics_cifar10_24.png").exists() or list(out.glob("fig03_statistics_cifar10*.png"))
