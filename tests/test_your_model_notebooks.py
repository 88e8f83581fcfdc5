"""Your model through the paper's notebooks: a tiny CNN trained here, as a .keras file and as an int8 .tflite file,
runs notebooks 02-04 (the .tflite file: 02, where it is loaded and run) at the smoke profile through the file-path parameters (model, dataset, normalize) into an
output folder of its own. The results JSON carry the paper's columns beside ours, the derived evaluation sample
is written there, and paper_figures/ is not touched."""
import json

import numpy as np
import papermill
import pytest

from causadv_lib import config, data, spread

from conftest import cifar_normalize  # noqa: E402
import nbval_build  # noqa: E402 (tests/nbval_build.py: the notebooks as papermill executes them)

NOTEBOOKS = ("02_experiment_setup", "03_ci_distributions", "04_detection_strategies")


def _tree(root):
    """Every file under `root` with its size and modification time (what a run could change)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory, save_tflite, trained_cifar_cnn):
    """The session's small trained CIFAR-10 CNN (conftest; inputs x / 255, logits out), saved both ways."""
    model = trained_cifar_cnn
    train = data.pool("cifar10_prototypes")
    x = cifar_normalize(train.load(spread.spread(len(train), 64)))   # int8 calibration inputs
    folder = tmp_path_factory.mktemp("models")
    keras_path = folder / "tiny_cnn.keras"
    model.save(keras_path)
    tflite_path = save_tflite(model, folder, "tiny_cnn_int8", quant="int8", representative=x[:64])
    return {"keras": keras_path, "tflite": tflite_path}


@pytest.mark.parametrize("kind", ["keras", "tflite"])
def test_notebooks_02_to_04_run_on_a_model_file_into_their_own_folder(tiny_files, kind, tmp_path, monkeypatch):
    verified = config.cache_dir() / "verified.json"         # this run's verification record, carried over
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path / "cache"))   # an empty results cache
    if verified.exists():                                    # spare the kernels a second sha256 pass
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache" / "verified.json").write_bytes(verified.read_bytes())
    before = _tree(config.FIGURES_ROOT)
    out = tmp_path / "out"
    params = {"profile": "smoke", "model": str(tiny_files[kind]), "dataset": "cifar10", "normalize": "[0,1]",
              "out": str(out)}
    notebooks = NOTEBOOKS if kind == "keras" else NOTEBOOKS[:1]   # the .tflite file: loaded and run through 02
    sources = nbval_build.prepare([config.NOTEBOOKS_DIR / f"{n}.py" for n in notebooks], tmp_path / "src", "smoke")
    for name, src in zip(notebooks, sources):
        papermill.execute_notebook(str(src), str(tmp_path / f"{name}.run.ipynb"), parameters=params,
                                   kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    assert _tree(config.FIGURES_ROOT) == before, "a run with out= wrote into paper_figures/"
    stem = tiny_files[kind].stem
    results = {n: json.loads((out / f"{n}.json").read_text()) for n in notebooks}
    setup = results["02_experiment_setup"]["tables"]["table02_setup"]["rows"]
    assert [r["dataset"] for r in setup] == ["CIFAR-10"] and setup[0]["model"] == stem
    assert setup[0]["classes"] == 10 and setup[0]["correct"] == setup[0]["images"] == 10   # smoke: 10 x 1
    assert setup[0]["sample list"] == f"{stem}__cifar10_eval.txt (derived)"
    assert (out / f"{stem}__cifar10_eval.txt").read_text().startswith(f"# model: {stem}\n")
    # the attack table and the paper's CIFAR-10 Tables 2 and 3: the paper's columns beside ours, filled on its rows
    for nb, table in (("02_experiment_setup", "table02_attack_success"), ("04_detection_strategies", "table04_pearson_rho"),
                      ("04_detection_strategies", "table04_zero_filters")):
        if nb not in results:
            continue
        t = results[nb]["tables"][table]
        paper_cols = [c for c in t["columns"] if c.startswith("paper")]
        assert paper_cols, (table, t["columns"])
        assert any(r.get(c) not in (None, "") for r in t["rows"] for c in paper_cols), (table, t["rows"][:3])
    if kind == "keras":
        assert results["04_detection_strategies"]["tables"]["table04_roc_auc"]["rows"]
        assert (out / "fig03_statistics_cifar10_24.png").exists() or list(out.glob("fig03_statistics_cifar10*.png"))
