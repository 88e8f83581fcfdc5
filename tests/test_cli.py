"""The ``causadv`` command line: inspect and detect on a tiny CNN saved as a .keras file (inputs x / 255), its
detector fitted on a few hundred CIFAR-10 training images once and then loaded from the cache; one-line errors
with exit status 2 and nothing written."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from causadv_lib import cli, data, zoo
from causadv_lib import ci as _ci
from causadv_lib.cli import commands
from causadv_lib.detector import CausAdvDetector

EVAL = [0, 1500, 3000, 4500, 6000, 7500]       # images of six classes of cifar10_eval (ordered by class)


@pytest.fixture(scope="module")
def env(tmp_path_factory, trained_cifar_cnn):
    """(model file, the command line's model arguments, a folder of PNGs (two in a subfolder), their pixels,
    the cache folder); the cache is this module's own, empty at the start."""
    root = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAUSADV_CACHE", str(root / "cache"))
        model = trained_cifar_cnn
        file = root / "tiny.keras"
        model.save(file)
        pix = data.pool("cifar10_eval").load(EVAL)
        folder = root / "images"
        (folder / "sub").mkdir(parents=True)
        for k, p in zip(EVAL, pix):
            Image.fromarray(p).save((folder / "sub" if k % 2 else folder) / f"img{k:04d}.png")
        args = ["--model", str(file), "--dataset", "cifar10", "--normalize", "[0,1]", "--fit-images", "500",
                "--fpr", "0.1"]
        yield file, args, folder, pix, root / "cache"


def _images(folder):
    return sorted((f for f in folder.rglob("img*.png") if not f.name.endswith(".causadv.png")),
                  key=lambda f: f.relative_to(folder).as_posix())


def test_help_documents_both_commands_also_as_a_subprocess():
    run = subprocess.run([sys.executable, "-m", "causadv_lib.cli", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "causadv inspect IMAGE" in run.stdout and "causadv detect DIR" in run.stdout


def test_an_error_is_one_line_on_the_real_stderr_of_a_subprocess(tmp_path):
    """TensorFlow's C++ start-up lines (written to fd 2 at import) stay out of it."""
    run = subprocess.run([sys.executable, "-m", "causadv_lib.cli", "inspect", str(tmp_path / "foo.png")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"causadv: error: no such image: {tmp_path / 'foo.png'}"], run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize("command, words", [("inspect", ["--attack", "--eps", "--out", "steadier thresholds",
                                                         ".causadv.png"]),
                                            ("detect", ["DIR", "--out", "causadv_verdicts.csv", "steadier"])])
def test_each_command_has_its_help(capsys, command, words):
    assert cli.main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for w in words:
        assert w in text


def test_inspect_fits_the_detector_once_then_loads_it_from_the_cache(env, capsys, monkeypatch):
    file, args, folder, pix, cache_dir = env
    first = [str(f) for f in _images(folder)[:2]]
    assert cli.main(["inspect", *first, *args]) == 0
    out1, err1 = capsys.readouterr()
    assert "fitting the detector on 500 clean cifar10_eval images" in err1 and "saved to" in err1
    saved = sorted(p.suffix for p in (cache_dir / "detector").iterdir())
    assert saved == [".json", ".npz"]

    def refit(*a, **k):
        raise AssertionError("the detector was fitted again instead of loaded from the cache")
    monkeypatch.setattr(CausAdvDetector, "fit", refit)
    assert cli.main(["inspect", *first, *args]) == 0
    out2, err2 = capsys.readouterr()
    assert "detector loaded from" in err2 and "fitting" not in err2
    assert out2 == out1                                   # the same verdicts from the loaded detector
    # other settings are another detector: a different fpr fits anew
    monkeypatch.undo()
    assert cli.main(["inspect", first[0], *args[:-1], "0.2", "-q"]) == 0
    err = capsys.readouterr().err                          # -q: no notes (a library warning stays, one line)
    assert all(ln.startswith("causadv: warning: ") for ln in err.splitlines()), err
    assert len(list((cache_dir / "detector").glob("*.json"))) == 2


def test_inspect_prints_the_prediction_counts_and_verdicts_and_writes_the_heatmap(env, capsys):
    file, args, folder, pix, _ = env
    files = _images(folder)
    assert cli.main(["inspect", *map(str, files), *args, "-q"]) == 0
    out = capsys.readouterr().out
    zm = zoo.resolve(file, dataset="cifar10", normalize="[0,1]")
    x = np.stack([np.asarray(Image.open(f)) for f in files])
    probs = zm.predict(x)
    res = _ci.counterfactual_information(zm.model, zm.normalize(x.astype(np.float32)), zm.ci_layer)
    for k, f in enumerate(files):
        block = out.split(f"{f}:\n", 1)[1].split("\n  verdict:", 1)[0]
        c = int(probs[k].argmax())
        assert f"prediction: {zm.class_names[c]} (class {c}), probability {probs[k, c]:.4f}" in block
        K = res.ci.shape[1]
        assert (f"{int((res.ci[k] > 0).sum())} causal filters (CI > 0), {int((res.ci[k] == 0).sum())} zero "
                f"filters (CI == 0) of {K}") in block
        for s in ("s1", "s2_rho", "s3", "s4", "combined"):
            line = next(ln for ln in block.splitlines() if ln.split()[:1] == [s])
            assert line.split()[3] in ("clean", "ADVERSARIAL", "no")
        png = f.parent / f"{f.stem}.causadv.png"
        assert f"heatmap: {png}" in out
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert out.count("  verdict: ") == len(files)


def test_inspect_with_an_attack_inspects_the_adversarial_image_too_and_out_places_the_heatmap(env, capsys,
                                                                                              tmp_path):
    file, args, folder, pix, _ = env
    f = _images(folder)[0]
    before = f.parent / f"{f.stem}.causadv.png"
    before.unlink(missing_ok=True)
    assert cli.main(["inspect", str(f), *args, "--attack", "fgsm", "--eps", "8", "--out", str(tmp_path / "o"),
                     "-q"]) == 0
    out = capsys.readouterr().out
    assert " FGSM eps=8/255 (untargeted, against the prediction; attack " in out
    assert out.count("  verdict: ") == 2 and out.count("  prediction: ") == 2
    assert (tmp_path / "o" / f"{f.stem}.causadv.png").is_file() and not before.exists()
    assert cli.main(["inspect", str(f), *args, "--attack", "pgd", "--eps", "0.02", "--out", str(tmp_path / "o"),
                     "-q"]) == 0
    assert " PGD eps=5.1/255 " in capsys.readouterr().out


def test_detect_writes_one_row_per_image_with_the_detectors_verdicts(env, capsys):
    file, args, folder, pix, cache_dir = env
    (folder / "notes.txt").write_text("not an image, not an image suffix: ignored")
    (folder / "sub" / "img0000.causadv.png").write_bytes((folder / "img0000.png").read_bytes())  # a heatmap: skipped
    out_csv = folder / "causadv_verdicts.csv"
    assert cli.main(["detect", str(folder), *args]) == 0
    out, err = capsys.readouterr()
    assert str(out_csv) in out and "causadv detect" in err           # the summary; the progress bar
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    files = _images(folder)
    assert [r["file"] for r in rows] == [f.relative_to(folder).as_posix() for f in files]
    zm = zoo.resolve(file, dataset="cifar10", normalize="[0,1]")
    det = CausAdvDetector.load(_fitted(cache_dir, zm, 0.1), zm)
    x = np.stack([np.asarray(Image.open(f)) for f in files])
    report, flags = det.detect(x)
    assert list(rows[0]) == commands.csv_columns(det.scores)
    assert list(rows[0])[:4] == ["file", "prediction", "class", "probability"]
    for j, r in enumerate(rows):
        assert int(r["prediction"]) == report["predicted"][j] and r["class"] == zm.class_names[report["predicted"][j]]
        assert float(r["probability"]) == pytest.approx(float(report["probability"][j]))
        for k in (*det.scores, "combined"):
            assert r[f"{k}_flag"] == str(int(report[f"{k}_flag"][j]))
            assert np.isclose(float(r[f"{k}_score"]), report[f"{k}_score"][j], equal_nan=True)
    assert [r["combined_flag"] for r in rows] == [str(int(v)) for v in flags]
    # --out elsewhere
    assert cli.main(["detect", str(folder), *args, "-q", "--out", str(folder.parent / "v.csv")]) == 0
    assert (folder.parent / "v.csv").read_text() == out_csv.read_text()


def _fitted(cache_dir, zm, fpr):
    """The cached detector of `zm` at `fpr` (the one whose JSON says so)."""
    for js in (cache_dir / "detector").glob("*.json"):
        if json.loads(js.read_text())["settings"]["fpr"] == fpr:
            return js
    raise AssertionError("no cached detector")


@pytest.mark.parametrize("case", ["missing image", "not an image", "unknown model", "missing model file",
                                  "unknown attack", "bad eps", "model file without dataset", "missing folder",
                                  "bad image in folder", "normalize on a zoo name"])
def test_bad_input_is_one_line_on_stderr_exit_2_and_nothing_written(env, capsys, tmp_path, case):
    file, args, folder, pix, _ = env
    good = tmp_path / "good.png"
    Image.fromarray(pix[0]).save(good)
    bad = tmp_path / "bad.png"
    bad.write_text("this is no PNG")
    argv, named = {
        "missing image": (["inspect", str(good), str(tmp_path / "foo.png"), *args], "no such image: "),
        "not an image": (["inspect", str(good), str(bad), *args], f"not an image: {bad}"),
        "unknown model": (["inspect", str(good), "--model", "nosuchnet"], "'nosuchnet'"),
        "missing model file": (["inspect", str(good), "--model", str(tmp_path / "m.keras"), "--dataset", "cifar10",
                                "--normalize", "[0,1]"], f"no such model file: {tmp_path / 'm.keras'}"),
        "unknown attack": (["inspect", str(good), *args, "--attack", "cw"], "'cw'"),
        "bad eps": (["inspect", str(good), *args, "--attack", "pgd", "--eps", "300"], "'300'"),
        "model file without dataset": (["inspect", str(good), "--model", str(file)], "--dataset"),
        "missing folder": (["detect", str(tmp_path / "nowhere"), *args], f"no such folder: {tmp_path / 'nowhere'}"),
        "bad image in folder": (["detect", str(tmp_path), *args], f"not an image: {bad}"),
        "normalize on a zoo name": (["inspect", str(good), "--model", "resnet20_cifar10", "--normalize", "[0,1]"],
                                    "'resnet20_cifar10'"),
    }[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("causadv: error: ") and named in lines[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before           # no heatmap, no CSV


def test_eps_reads_grey_levels_and_fractions():
    assert cli.eps_value("8") == pytest.approx(8 / 255)
    assert cli.eps_value("8/255") == pytest.approx(8 / 255)
    assert cli.eps_value("0.03") == pytest.approx(0.03)
    assert cli.eps_value("255") == 1.0
    for bad in ("0", "-1", "256", "x", "1/0", "nan"):
        with pytest.raises(Exception, match="invalid eps"):
            cli.eps_value(bad)
