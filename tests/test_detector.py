"""CausAdvDetector: ART's detector interface, calibrated on clean images only.

The false-positive rates are measured on clean CIFAR-10 evaluation images that the fit never saw, with a tiny
CNN trained for a few seconds (inputs x / 255) on the CIFAR-10 training images: 5,000 evaluation images fit
the detector, the other 5,000 (about 2,000 of them correctly classified) measure each flag's rate.
"""
import json

import keras
import numpy as np
import pytest
from art.defences.detector.evasion import EvasionDetector

from causadv_lib import attacks, data, detector, zoo
from causadv_lib.detector import CausAdvDetector, NotFittedError
from conftest import cifar_normalize, small_cifar_cnn

FLAGS = ("s1", "s2_rho", "s2_rank", "s3", "s4", "combined")


_normalize = cifar_normalize


def _tiny_cnn(seed: int = 0) -> keras.Model:
    return small_cifar_cnn(seed)


@pytest.fixture(scope="module")
def tiny(trained_cifar_cnn):
    """(zoo model, the 10,000 CIFAR-10 evaluation images, their labels, fit indices, test indices)."""
    zm = zoo.custom(trained_cifar_cnn, _normalize, outputs="logits", normalize=_normalize, name="tiny_cnn")
    ev = data.pool("cifar10_eval")
    x, y = ev.load(np.arange(len(ev))), np.asarray(ev.labels)
    order = np.random.default_rng(1).permutation(len(ev))
    return zm, x, y, np.sort(order[:5000]), np.sort(order[5000:])


@pytest.fixture(scope="module")
def fitted(tiny):
    """{fpr: (detector fitted on the fit half, its report on the test half)} at 5% and 1%."""
    zm, x, y, fit, test = tiny
    out = {}
    for fpr in (0.05, 0.01):
        det = CausAdvDetector(zm, fpr=fpr, holdout=0.8)
        det.fit(x[fit], y[fit])
        out[fpr] = det, det.detect(x[test])[0]
    return out


# ------------------------------------------------------------------------------ false-positive rates
@pytest.mark.parametrize("fpr", [0.05, 0.01])
def test_every_flag_has_the_requested_false_positive_rate_on_unseen_clean_images(tiny, fitted, fpr):
    zm, x, y, fit, test = tiny
    det, report = fitted[fpr]
    assert det.scores == FLAGS[:-1]                      # a model of no named dataset: both S2 scores
    correct = report["predicted"] == y[test]
    assert correct.sum() >= 1500, "too few correctly classified test images for a fair test"
    assert det.counts["combined_threshold"] >= 700
    rates = {k: float(report[f"{k}_flag"][correct].mean()) for k in FLAGS}
    off = {k: r for k, r in rates.items() if abs(r - fpr) > 0.02}
    print(f"fpr={fpr}: measured on {int(correct.sum())} clean test images:",
          ", ".join(f"{k} {r:.4f}" for k, r in rates.items()))
    assert not off, f"false-positive rates {rates} at fpr={fpr} on {int(correct.sum())} clean test images"


def test_the_report_holds_one_entry_per_image_and_flags_follow_the_thresholds(tiny, fitted):
    zm, x, y, fit, test = tiny
    det, report = fitted[0.05]
    n = len(test)
    assert set(report) == {"predicted", "probability", "combined_score", "combined_flag"} | \
        {f"{k}_{part}" for k in det.scores for part in ("score", "flag", "tail")}
    assert all(v.shape == (n,) for v in report.values())
    assert report["predicted"].dtype == np.int64 and report["combined_flag"].dtype == bool
    for k, (t, q) in det.thresholds.items():
        s, f = report[f"{k}_score"], report[f"{k}_flag"]
        assert f[s > t].all() and not f[s < t].any()     # ties at t are split by the tie-break number
        if k != "combined":
            tail = report[f"{k}_tail"][~np.isnan(s)]
            assert ((tail >= 0) & (tail < 1)).all()
    tails = np.stack([report[f"{k}_tail"] for k in det.scores], axis=1)
    np.testing.assert_array_equal(report["combined_score"], tails.max(axis=1))
    # a verdict does not depend on the batch an image comes in, nor on uint8 or float pixels
    part, flags = det.detect(x[test[:40]].astype(np.float32))
    for key in report:
        np.testing.assert_array_equal(part[key], report[key][:40], err_msg=key)
    np.testing.assert_array_equal(flags, report["combined_flag"][:40])


def test_the_detector_is_an_art_evasion_detector(fitted):
    det, _ = fitted[0.05]
    assert isinstance(det, EvasionDetector)
    p = det.get_params()
    assert p["fpr"] == 0.05 and p["holdout"] == 0.8 and p["scores"] == FLAGS[:-1]


# ------------------------------------------------------------------------------ determinism, save/load
def test_the_same_fit_gives_the_same_thresholds(tiny, fitted):
    zm, x, y, fit, test = tiny
    det, _ = fitted[0.05]
    again = CausAdvDetector(zm, fpr=0.05, holdout=0.8)
    again.fit(x[fit], np.eye(10, dtype=np.float32)[y[fit]])          # ART's one-hot labels: the same fit
    assert again.thresholds == det.thresholds
    assert again.counts == det.counts
    np.testing.assert_array_equal(again.prototypes.index, det.prototypes.index)
    other = CausAdvDetector(zm, fpr=0.05, holdout=0.8, seed=det.seed + 1)
    other.fit(x[fit], y[fit])
    assert not np.array_equal(other.prototypes.index, det.prototypes.index)   # the seed draws the split
    assert set(det.prototypes.index[det.prototypes.index >= 0]) <= set(range(len(fit)))


def test_save_and_load_give_identical_reports(tiny, fitted, tmp_path):
    zm, x, y, fit, test = tiny
    det, report = fitted[0.05]
    npz, js = det.save(tmp_path / "detector")
    assert (npz.name, js.name) == ("detector.npz", "detector.json")
    with np.load(npz, allow_pickle=False) as z:
        assert "proto_ci" in z.files and "reference_s1" in z.files
    meta = json.loads(js.read_text())
    assert meta["model"]["name"] == "tiny_cnn" and meta["settings"]["fpr"] == 0.05
    loaded = CausAdvDetector.load(tmp_path / "detector", zm)
    assert loaded.thresholds == det.thresholds and loaded.scores == det.scores
    got, flags = loaded.detect(x[test])
    assert set(got) == set(report)
    for key in report:
        np.testing.assert_array_equal(got[key], report[key], err_msg=key)
    np.testing.assert_array_equal(flags, report["combined_flag"])


def test_load_refuses_another_model_by_name(tiny, fitted, tmp_path):
    zm, *_ = tiny
    det, _ = fitted[0.05]
    det.save(tmp_path / "d")
    other = zoo.custom(_tiny_cnn(seed=7), _normalize, outputs="logits", normalize=_normalize, name="other_cnn")
    with pytest.raises(ValueError, match="fitted on model 'tiny_cnn'; the model given, 'other_cnn', differs"):
        CausAdvDetector.load(tmp_path / "d", other)
    (tmp_path / "d.npz").write_bytes((tmp_path / "d.npz").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match="does not match"):
        CausAdvDetector.load(tmp_path / "d", zm)
    with pytest.raises(FileNotFoundError, match="missing"):
        CausAdvDetector.load(tmp_path / "nothing", zm)


# ------------------------------------------------------------------------------ errors
def test_bad_input_is_refused_by_name(tiny, fitted):
    zm, x, y, fit, test = tiny
    det, _ = fitted[0.05]
    for fpr in (0, 1, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"fpr: expected a finite number in \(0, 1\)"):
            CausAdvDetector(zm, fpr=fpr)
    fresh = CausAdvDetector(zm)
    with pytest.raises(NotFittedError, match=r"detect: the detector is not fitted; call fit"):
        fresh.detect(x[:4])
    with pytest.raises(NotFittedError, match="not fitted"):
        fresh.save("never")
    with pytest.raises(ValueError, match=r"fit: y has shape \(9,\) for 10 images"):
        fresh.fit(x[:10], y[:9])
    with pytest.raises(ValueError, match=r"fit: y holds labels outside 0..9: \[10\]"):
        fresh.fit(x[:3], np.array([0, 10, 2]))
    with pytest.raises(ValueError, match=r"detect: x: image 0 has shape \(16, 16, 3\); the model expects \(32, 32, 3\)"):
        det.detect(x[:2, :16, :16])
    with pytest.raises(ValueError, match=r"fit: x: image 0 has shape \(16, 16, 3\)"):
        fresh.fit(x[:2, :16, :16], y[:2])
    with pytest.raises(ValueError, match=r"scale \[0, 1\] images by 255"):
        det.detect(x[:2] / 255.0)
    with pytest.raises(ValueError, match=r"detect: x: image 0 .* pixel values in \[300, 300\]; expected \[0, 255\]"):
        det.detect(np.full((2, 32, 32, 3), 300.0))
    with pytest.raises(ValueError, match=r"fit: too few clean images to calibrate at fpr=0.05: \d+ of the \d+ calibration"):
        fresh.fit(x[fit[:30]], y[fit[:30]])
    with pytest.raises(ValueError, match="s4: m = 40 exceeds the 32 filters of layer 'feat'"):
        CausAdvDetector(zm, scores=("s1", "s4"), s4=(3, 40))
    with pytest.raises(ValueError, match="scores: expected distinct names"):
        CausAdvDetector(zm, scores=("s1", "s5"))
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['threshold'\]"):
        det.detect(x[:2], threshold=3)
    no_normalize = zoo.custom(zm.model, _normalize, name="tiny_uint8_only")
    with pytest.raises(ValueError, match="non-integer float pixels, but zoo model 'tiny_uint8_only' has no normalize"):
        CausAdvDetector(no_normalize).fit(x[:4] * 0.5 + 0.25, y[:4])


def test_changed_parameters_unfit_the_detector(tiny):
    zm, x, y, fit, test = tiny
    det = CausAdvDetector(zm, fpr=0.05)
    det.fit(x[fit[::5]], y[fit[::5]])                   # the pool is class-ordered: every fifth
    det.set_params(fpr=0.05)                             # unchanged: still fitted
    assert det.fitted
    det.set_params(fpr=0.1)
    assert not det.fitted and det.fpr == 0.1
    with pytest.raises(ValueError, match=r"set_params: unknown parameter\(s\) \['alpha'\]"):
        det.set_params(alpha=0.1)
    det.fit(x[fit[::5]], y[fit[::5]])
    with pytest.raises(ValueError, match="fpr: expected a finite number"):
        det.set_params(fpr=2)
    assert det.fitted and det.fpr == 0.1                 # a refused value changes nothing


# ------------------------------------------------------------------------------ adversarial examples
def test_detect_runs_on_pgd_examples_of_the_tiny_model(tiny, fitted):
    """PGD's float pixels go straight in. No detection rate is asserted: on this 45%-accurate model PGD's
    examples look like its clean images (measured ROC-AUC of the strategies' scores about 0.4-0.5)."""
    zm, x, y, fit, test = tiny
    det, report = fitted[0.05]
    idx = test[report["predicted"] == y[test]][:12]
    adv = attacks.generate(zm, x[idx], labels=y[idx], attack="pgd", eps=8 / 255, cache=False, progress=False)
    got, flags = det.detect(adv.adversarial)
    assert flags.shape == (12,) and flags.dtype == bool
    assert np.array_equal(got["predicted"], adv.predicted)


def test_pgd_examples_are_flagged_more_often_than_clean_images_on_resnet20():
    """ResNet-20 (CIFAR-10): fitted on 800 evaluation images, the clean rate measured on 400 others, 24 of
    which, correctly classified, are attacked with PGD at 8/255."""
    zm = zoo.get("resnet20_cifar10")
    pool = data.pool("cifar10_eval")
    labels = np.asarray(pool.labels)
    order = np.random.default_rng(1).permutation(len(pool))
    fit, test = np.sort(order[:800]), np.sort(order[800:1200])
    det = CausAdvDetector(zm, fpr=0.05)
    assert det.scores == ("s1", "s2_rho", "s3", "s4")    # CIFAR-10: S2 as rho, as in the paper's Table 2
    det.fit(pool.load(fit), labels[fit])
    clean, _ = det.detect(pool.load(test))
    correct = clean["predicted"] == labels[test]
    clean_rate = float(clean["combined_flag"][correct].mean())
    idx = test[correct][:24]
    adv = attacks.generate(zm, pool.load(idx), labels=labels[idx], attack="pgd", eps=8 / 255, cache=False,
                           progress=False)
    assert adv.success.sum() >= 12
    _, flags = det.detect(adv.adversarial[adv.success])
    adv_rate = float(flags.mean())
    assert adv_rate > max(clean_rate, 3 * det.fpr), f"PGD flagged {adv_rate:.3f}, clean {clean_rate:.3f}"


def test_default_scores_follow_the_dataset_and_the_model():
    assert detector.default_scores("cifar10", 10, 64) == ("s1", "s2_rho", "s3", "s4")
    assert detector.default_scores("imagenet", 1000, 1280) == ("s1", "s2_rank", "s3", "s4")
    assert detector.default_scores(None, 10, 8) == ("s1", "s2_rho", "s2_rank", "s3")
    assert detector.default_scores(None, 5, 64) == ("s1", "s2_rho", "s3", "s4")


def test_one_sided_tails_and_conservative_ties(tiny):
    """tails="paper": the combined score is the largest one-sided tail (`metrics.clean_cdf`) in the paper's
    directions; ties="conservative": no tie is flagged, so no flag's rate exceeds fpr by more than the noise."""
    zm, x, y, fit, test = tiny
    det = CausAdvDetector(zm, fpr=0.05, holdout=0.8, tails="paper", ties="conservative")
    det.fit(x[fit], y[fit])
    assert all(q == 0.0 for _, q in det.thresholds.values())
    report, _ = det.detect(x[test])
    tails = np.stack([report[f"{k}_tail"] for k in det.scores], axis=1)
    np.testing.assert_array_equal(report["combined_score"], tails.max(axis=1))
    correct = report["predicted"] == y[test]
    for k in FLAGS:
        f, s = report[f"{k}_flag"], report[f"{k}_score"]
        t, _ = det.thresholds[k]
        np.testing.assert_array_equal(f, s > t)
        assert f[correct].mean() <= 0.05 + 0.02, k
