"""Peer detectors of adversarial examples, run by this project's code on the same images as CausAdv.

Every peer takes float pixels in [0, 255] at the model's input size (what `attacks.generate` returns;
uint8 accepted, the pixel contract of `pixels.check_images`), has the ART interface of `CausAdvDetector`
(an `art.defences.detector.evasion.EvasionDetector`: ``fit(x, y, ...)``, ``detect(x) -> (report,
is_adversarial)``) and a plain ``score(x)``: the per-image score for ROC analysis, larger = more suspicious.
The flag is ``score`` above a threshold set at the requested false-positive rate ``fpr`` on **held-out
clean images** (``metrics.clean_threshold``, ties split as `detector` splits them: an image's verdict
depends on its pixels and the seed only, never on the batch it comes in).

    >>> det = MaxSoftmaxDetector(zm, fpr=0.05)
    >>> det.fit(clean, labels)                                  # held-out clean images (labels: the split)
    >>> report, flags = det.detect(adversarial)                 # report["score"], report["flag"]
    >>> det.score(images)                                       # (N,) scores for ROC analysis
    >>> sup = MahalanobisDetector(zm); sup.fit(clean, labels, x_adv=adversarial_train)

============================== ============================= =================================================
detector                       needs at fit                  score
============================== ============================= =================================================
`MaxSoftmaxDetector`           clean images                  1 - max softmax probability (Hendrycks & Gimpel
                                                             2017), from the logits by `confidence.msp`
`FeatureSqueezingDetector`     clean images                  max over squeezers of the L1 distance between the
                                                             softmax on the input and on the squeezed input
                                                             (Xu et al. 2018), squeezers = ART preprocessors
                                                             through `defences`
`MahalanobisDetector`          clean images, labels **and    a logistic regression's log-odds on the minimum
                               adversarial examples**        Mahalanobis distance per layer (Lee et al. 2018)
`SubsetScanDetector`           clean images                  ART's `SubsetScanningDetector` score (Berk-Jones
                                                             subset scan of the CI layer's activations)
============================== ============================= =================================================

**Calibration.** ``fit`` splits the clean images, seeded and per class, into a part the detector learns
from (the squeezers and MSP learn nothing) and a calibration part (``holdout``), on whose scores the
threshold is set; realised false-positive rates on new clean images scatter by about
``sqrt(fpr (1 - fpr) / n_calibration)``. MSP and feature squeezing need no training part: every fit image
calibrates (``holdout`` is theirs only through the scores of a detector with a learnt part).

**Feature squeezing** (Xu et al. 2018, "Feature squeezing: detecting adversarial examples in deep neural
networks"). The squeezers are `defences.Purifier` objects, i.e. ART's ``FeatureSqueezing`` and
``SpatialSmoothing`` built as `defences` builds them (``clip_values=(0, 255)``): on CIFAR-10 (and a model of
no named dataset) 5-bit depth and a 2x2 median, Xu et al.'s CIFAR-10 choice; on ImageNet 5-bit depth, 2x2
and 3x3 medians. Xu et al.'s third CIFAR-10 squeezer, non-local means, has no ART preprocessor and is left
out. The score of an image is ``max_s sum_j |p_j(x) - p_j(s(x))|`` (0 to 2).

**Mahalanobis, the supervised peer** (Lee et al. 2018, "A simple unified framework for detecting
out-of-distribution samples and adversarial attacks"), chosen over LID (Ma et al. 2018) because its score of
an image is a function of that image alone: LID estimates each image's dimensionality from its k nearest
neighbours *within the minibatch it comes in*, so an image's score (and verdict) would change with the other
images of its batch and with the batch size, against this project's rule that a verdict depends on the
image only (and a calibrated false-positive rate then needs batches composed like the calibration
batches). Mahalanobis also needs only the CI layer's activations, which `runner` already computes. Fit:
the clean images outside the calibration part are split (seeded, per class) into a Gaussian part (the
class means and one shared covariance of the global-average-pooled activations of each layer in ``layers``,
default the CI layer, with the true labels) and a regression part; the feature of an image per layer is
``min_c (f - mu_c)^T Sigma^+ (f - mu_c)``; a scikit-learn ``StandardScaler + LogisticRegression`` is trained
on the regression part's clean images (label 0) against **all** the ``x_adv`` given (label 1); the score is
its log-odds (``decision_function``), thresholded on the calibration part. Lee et al.'s input
pre-processing (a small gradient step towards the closest class) is left out. The training images, clean
and adversarial, **must be disjoint from the images it is evaluated on** (and the adversarial examples
should be successful ones): evaluated on its own training images, a supervised detector looks better than
it is. ``fit`` without ``x_adv`` is refused.

**Subset scanning** (McFowland et al. 2013; ART's ``SubsetScanningDetector``). ART's class does not run on
this project's models as ART ships it, on Keras 3: with the project's ART classifier
(`attacks.art_classifier`, a ``TensorFlowV2Classifier`` whose model is the pixel-space logits callable) its
constructor raises ``ValueError("No layer names identified.")`` (``layer_names`` is None for anything but a
``tf.keras.Model``); with ART's ``TensorFlowV2Classifier`` on the zoo's functional Keras model the layer names
are found but ``get_activations`` raises ``ValueError("Method get_activations is not supported for
non-Sequential models.")``, and every zoo model is functional (only a ``keras.Sequential`` model works).
`SubsetScanDetector` therefore gives ART's detector a classifier (`ActivationsClassifier`, a subclass of the
project's) whose ``layer_names`` are the Keras model's and whose ``get_activations`` is `runner.activations`
on the normalised pixels; ART's own code does the rest (background p-values, the Berk-Jones scan). Fit: the
non-calibration clean images are ART's background data; the score is ART's ``report["scores"]``. ART's own
flag (a score above the largest background score, the background scored against itself) is replaced by the
threshold on the held-out calibration part at ``fpr``.

Errors name the input: images of the wrong size or range (`pixels.check_images`), ``detect`` before ``fit``
(`detector.NotFittedError`), ``fpr`` outside (0, 1), a missing ``x_adv``, labels of the wrong shape.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import attacks, checks, confidence, config, defences, runner, zoo
from .detector import TIES, NotFittedError, set_params_or_restore
from .detector import flag_at, threshold_at, tie_numbers   # the one tie rule: peers and CausAdv agree
from .art_imports import EvasionDetector, SubsetScanningDetector
from .pixels import check_images

__all__ = ["MaxSoftmaxDetector", "FeatureSqueezingDetector", "MahalanobisDetector", "SubsetScanDetector",
           "ActivationsClassifier", "SQUEEZERS", "default_squeezers", "NotFittedError", "PEERS"]

#: extra squeezer (ImageNet, Xu et al.): a 3x3 median, built as `defences` builds its purifiers
SPATIAL_SMOOTHING_3X3 = defences.Purifier("spatial_smoothing_3x3", "Spatial smoothing (3x3)", "SpatialSmoothing",
                                          {"window_size": 3}, short="SS 3x3 (Xu)")
#: dataset -> Xu et al.'s squeezers (bit depth, medians); non-local means has no ART preprocessor
SQUEEZERS = {"cifar10": (defences.PURIFIERS["feature_squeezing_5bit"], defences.PURIFIERS["spatial_smoothing_2x2"]),
             "imagenet": (defences.PURIFIERS["feature_squeezing_5bit"], defences.PURIFIERS["spatial_smoothing_2x2"],
                          SPATIAL_SMOOTHING_3X3)}


def default_squeezers(dataset) -> tuple:
    """Xu et al.'s squeezers for `dataset` (`SQUEEZERS`; a model of no named dataset gets CIFAR-10's)."""
    return SQUEEZERS.get(dataset, SQUEEZERS["cifar10"])


def _split(labels: np.ndarray, fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """(rest, part): a seeded per-class split, `fraction` of each class in `part` (both sorted)."""
    rest, part = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(fraction * idx.size))
        part.append(idx[:k])
        rest.append(idx[k:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(part))


class _Peer(EvasionDetector):
    """What every peer shares: inputs, calibration on held-out clean images, detect, score."""

    defence_params = ["fpr", "holdout", "seed", "ties"]
    #: whether the detector learns from part of the clean images (else all of them calibrate)
    learns = False
    #: the report entry the threshold is set on (the same order as ``score``)
    threshold_key = "score"

    def __init__(self, zoo_model, *, fpr: float = 0.05, holdout: float = 0.5, seed: int = config.SEED,
                 ties: str = "randomized") -> None:
        super().__init__()
        self.zoo_model = zoo.for_pixels(zoo.resolve(zoo_model))
        self.fpr, self.holdout, self.seed, self.ties = fpr, holdout, seed, ties
        self._check_params()
        self._fit = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def _check_params(self) -> None:
        self.fpr = checks.level(self.fpr, "fpr")
        self.holdout = checks.level(self.holdout, "holdout")
        self.seed = checks.seed(self.seed)
        if self.ties not in TIES:
            raise ValueError(f"ties: expected one of {TIES}, got {self.ties!r}")

    def set_params(self, **kwargs) -> None:
        """Change parameters (`defence_params`); a changed detector is fitted no more."""
        set_params_or_restore(self, kwargs, super().set_params)
        self._fit = None

    # ------------------------------------------------------------------------------------ inputs
    def _inputs(self, x, what: str) -> np.ndarray:
        """Float32 pixels of `x` under the pixel contract at the model's input size."""
        return check_images(x, self.zoo_model.input_shape, what=f"{self.name}.{what}: x")

    def _labels(self, y, n: int, what: str = "fit") -> np.ndarray:
        C = self.zoo_model.num_classes
        if y is None and not isinstance(self, MahalanobisDetector):
            return np.zeros(n, np.int64)                         # the labels only stratify the split
        if y is None:
            raise ValueError(f"{self.name}.{what}: y (the true class of each of the {n} images) is required")
        arr = np.asarray(y)
        if arr.ndim == 2 and arr.shape == (n, C):                # ART's one-hot labels
            arr = arr.argmax(axis=1)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(f"{self.name}.{what}: y has shape {arr.shape} for {n} images; expected (N,) class "
                             f"indices or (N, {C}) one-hot")
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer) or ((arr < 0) | (arr >= C)).any():
            raise ValueError(f"{self.name}.{what}: y must hold integer class indices in 0..{C - 1}")
        return arr.astype(np.int64)

    def _fitted(self, what: str) -> dict:
        if self._fit is None:
            raise NotFittedError(f"{self.name}.{what}: the detector is not fitted; call fit(clean_images, labels"
                                 + (", x_adv=adversarial_images" if isinstance(self, MahalanobisDetector) else "")
                                 + ") first")
        return self._fit

    @property
    def fitted(self) -> bool:
        return self._fit is not None

    @property
    def threshold(self) -> tuple[float, float]:
        """(t, q): flagged if score > t, or score == t and the image's tie-break number < q (the score of
        `threshold_key`: ``log_score`` for MSP)."""
        f = self._fitted("threshold")
        return float(f["t"]), float(f["q"])

    @property
    def counts(self) -> dict:
        """How many fit images went where."""
        return dict(self._fitted("counts")["counts"])

    # ------------------------------------------------------------------------------------ subclasses
    def _learn(self, pix: np.ndarray, labels: np.ndarray, batch_size: int, **kwargs) -> dict:
        """Learn from the training part (`learns`); returns what `_report` needs. Default: nothing."""
        return {}

    def _report(self, pix: np.ndarray, batch_size: int) -> dict:
        """{"score": (N,) float64, ...} per image."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------ ART interface
    def _calibrate(self, pix: np.ndarray, labels: np.ndarray, batch_size: int, **kwargs) -> None:
        rng = np.random.default_rng(self.seed)
        if self.learns:
            train, cal = _split(labels, self.holdout, rng)
        else:
            train, cal = np.zeros(0, np.int64), np.arange(len(pix))
        need = math.ceil(1.0 / self.fpr - 1e-9)
        if cal.size < need:
            raise ValueError(f"{self.name}.fit: too few clean images to calibrate at fpr={self.fpr:g}: {cal.size} "
                             f"calibration image(s) of {len(pix)}; at least {need} (1/fpr) are needed")
        self._fit = None
        learnt = self._learn(pix[train], labels[train], batch_size, **kwargs) if self.learns else {}
        self._fit = {"learnt": learnt}
        scores = self._report(pix[cal], batch_size)[self.threshold_key]
        t, q = threshold_at(scores, self.fpr, self.ties)
        self._fit |= {"t": t, "q": q, "calibration_scores": scores, "calibration_ids": cal,
                      "counts": {"images": int(len(pix)), "train": int(train.size), "calibration": int(cal.size),
                                 **learnt.get("counts", {})}}

    def fit(self, x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 128, nb_epochs: int = 20,
            **kwargs) -> None:
        """Calibrate on clean images `x` ((N, H, W, 3) uint8 or float pixels in [0, 255]) with labels `y`
        ((N,) or one-hot, or None: the labels only stratify the split of a detector with a learnt part). Nothing is trained by gradient: `nb_epochs` is
        ART's and ignored; `batch_size` never changes a result."""
        if kwargs:
            raise TypeError(f"{self.name}.fit: unexpected keyword argument(s) {sorted(kwargs)}")
        pix = self._inputs(x, "fit")
        labels = self._labels(y, len(pix))
        self._calibrate(pix, labels, checks.positive_int(batch_size, "batch_size"))

    def detect(self, x: np.ndarray, batch_size: int = 128, **kwargs) -> tuple[dict, np.ndarray]:
        """(report, is_adversarial) for images `x`: `report` holds (N,) arrays, ``score`` (larger = more
        suspicious), ``flag`` (= is_adversarial, at the requested FPR) and the detector's own entries."""
        if kwargs:
            raise TypeError(f"{self.name}.detect: unexpected keyword argument(s) {sorted(kwargs)}")
        f = self._fitted("detect")
        pix = self._inputs(x, "detect")
        report = self._report(pix, checks.positive_int(batch_size, "batch_size"))
        report["flag"] = flag_at(report[self.threshold_key], f["t"], f["q"], tie_numbers(pix, self.seed, 1)[:, 0])
        return report, report["flag"]

    def score(self, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """(N,) float64 score per image (larger = more suspicious), for ROC analysis. MSP and feature
        squeezing score without a fit; the learnt peers need one."""
        if self.learns:
            self._fitted("score")
        return self._report(self._inputs(x, "score"), checks.positive_int(batch_size, "batch_size"))["score"]


# ============================================================================================ MSP
class MaxSoftmaxDetector(_Peer):
    """Hendrycks & Gimpel (2017): score = 1 - max softmax probability, fitted on clean images only.

    p_max comes from the logits (`runner.with_logits`, `confidence.msp`, float64 and exact); report:
    ``score`` (1 - p_max), ``log_score`` (`confidence.msp_score`, log(1 - p_max): the same order, without
    the ties of 1 - p_max at 0 for saturated images), ``predicted``, ``flag``. The threshold is set on every
    fit image (nothing is learnt), on ``log_score``: the flags of ``score > t`` in the finer order."""

    threshold_key = "log_score"

    def _report(self, pix: np.ndarray, batch_size: int) -> dict:
        zm = self.zoo_model
        probs, logits = runner.with_logits(zm.model, zm.normalize(pix), batch_size=batch_size)
        if logits is None:
            raise ValueError(f"{self.name}: the logits of model {zm.name!r} cannot be read (keras_graph.logits_of)")
        return {"score": 1.0 - confidence.msp(logits), "log_score": confidence.msp_score(logits),
                "predicted": probs.argmax(axis=1).astype(np.int64)}


# ============================================================================================ squeezing
class FeatureSqueezingDetector(_Peer):
    """Xu et al. (2018): score = max over squeezers of ||softmax(x) - softmax(squeeze(x))||_1.

    squeezers: `defences.Purifier` objects or their names (default `default_squeezers` of the model's
    dataset). Report: ``score``, ``l1_NAME`` per squeezer, ``predicted``, ``flag``. Fitted on clean images
    only; every fit image calibrates."""

    defence_params = [*_Peer.defence_params, "squeezers"]

    def __init__(self, zoo_model, *, squeezers=None, **kwargs) -> None:
        self.squeezers = squeezers
        super().__init__(zoo_model, **kwargs)

    def _check_params(self) -> None:
        super()._check_params()
        given = default_squeezers(self.zoo_model.dataset) if self.squeezers is None else self.squeezers
        given = (given,) if isinstance(given, (str, defences.Purifier)) else tuple(given)
        sq = tuple(defences.get(s) for s in given)
        if not sq or any(not s.art_class or s.random for s in sq) or len({s.name for s in sq}) != len(sq):
            raise ValueError(f"squeezers: expected distinct deterministic ART squeezers (e.g. "
                             f"{[s.name for s in SQUEEZERS['cifar10']]}), got {self.squeezers!r}")
        self.squeezers = sq

    def _report(self, pix: np.ndarray, batch_size: int) -> dict:
        zm = self.zoo_model
        p = defences.predict(zm, pix, "none", batch_size=batch_size).astype(np.float64)
        report = {}
        for s in self.squeezers:
            q = defences.predict(zm, pix, s, batch_size=batch_size).astype(np.float64)
            report[f"l1_{s.name}"] = np.abs(p - q).sum(axis=1)
        report["score"] = np.max(np.stack(list(report.values()), axis=1), axis=1)
        report["predicted"] = p.argmax(axis=1).astype(np.int64)
        return report


# ============================================================================================ Mahalanobis
def _pooled(zm, pix: np.ndarray, layer: str) -> np.ndarray:
    """(N, K) float64 global-average-pooled activations of `layer` (`runner.activations`)."""
    a = runner.activations(zm.model, np.asarray(zm.normalize(pix), np.float32), layer)
    return a.reshape(len(a), -1, a.shape[-1]).mean(axis=1, dtype=np.float64)


class MahalanobisDetector(_Peer):
    """Lee et al. (2018), supervised: trained on clean **and adversarial** images (module docstring).

    ``fit(x_clean, y, x_adv=...)``: `x_clean` clean images with their true labels `y`, `x_adv` adversarial
    examples (successful ones, of the attack to be detected); both **must be disjoint from the images the
    detector is evaluated on** (a supervised detector scored on its training images is flattered).
    layers: layer names (default the zoo model's CI layer); gaussian_split: the share of the
    non-calibration clean images that fit the Gaussians (the rest train the regression). Report:
    ``score`` (the regression's log-odds of "adversarial"), ``mahalanobis_LAYER`` (min distance per
    layer), ``closest_class`` (of the first layer), ``flag``."""

    defence_params = [*_Peer.defence_params, "layers", "gaussian_split"]
    learns = True

    def __init__(self, zoo_model, *, layers=None, gaussian_split: float = 0.5, **kwargs) -> None:
        self.layers, self.gaussian_split = layers, gaussian_split
        super().__init__(zoo_model, **kwargs)

    def _check_params(self) -> None:
        super()._check_params()
        zm = self.zoo_model
        given = (zm.ci_layer,) if self.layers is None else (
            (self.layers,) if isinstance(self.layers, str) else tuple(self.layers))
        names = {layer.name for layer in zm.model.layers}
        bad = [g for g in given if not isinstance(g, str) or g not in names]
        if not given or bad:
            raise ValueError(f"layers: expected layer names of model {zm.name!r}, got {self.layers!r}"
                             + (f" ({bad} not among its layers)" if bad else ""))
        self.layers = given
        self.gaussian_split = checks.level(self.gaussian_split, "gaussian_split")

    def fit(self, x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 128, nb_epochs: int = 20,
            x_adv: np.ndarray | None = None, **kwargs) -> None:
        """Fit on clean images `x` with labels `y` and adversarial images `x_adv` (required; all of them
        disjoint from the evaluation images). `nb_epochs` is ART's and ignored."""
        if kwargs:
            raise TypeError(f"{self.name}.fit: unexpected keyword argument(s) {sorted(kwargs)}")
        if x_adv is None:
            raise ValueError(f"{self.name}.fit: x_adv (adversarial training examples, disjoint from the evaluation "
                             "images) is required: the Mahalanobis peer is supervised; fit(x_clean, y, x_adv=...)")
        pix = self._inputs(x, "fit")
        labels = self._labels(y, len(pix))
        adv = check_images(x_adv, self.zoo_model.input_shape, what=f"{self.name}.fit: x_adv")
        if not len(adv):
            raise ValueError(f"{self.name}.fit: x_adv holds no images")
        self._calibrate(pix, labels, checks.positive_int(batch_size, "batch_size"), adv=adv)

    def _features(self, gauss: dict, pix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((N, layers) min Mahalanobis distance per layer, (N,) closest class of the first layer)."""
        cols, closest = [], None
        for layer, (means, precision) in zip(self.layers, gauss["layers"]):
            f = _pooled(self.zoo_model, pix, layer)
            d = f[:, None, :] - means[None]                              # (N, C, K)
            m = np.einsum("nck,kl,ncl->nc", d, precision, d)
            cols.append(m.min(axis=1))
            closest = m.argmin(axis=1) if closest is None else closest
        return np.stack(cols, axis=1), gauss["classes"][closest]

    def _too_few(self, n: int, gauss: int, classes: int, reg: int) -> str | None:
        """Why `n` training images split into `gauss` Gaussian images of `classes` classes and `reg` regression
        images cannot fit the detector (None: they can)."""
        if gauss <= classes or not reg:
            return (f"{self.name}.fit: too few clean images: {n} outside the calibration part give {gauss} for the "
                    f"Gaussians ({classes} classes: class-conditional Gaussians need more than one image per class) "
                    f"and {reg} for the regression (gaussian_split={self.gaussian_split:g}); pass more clean images")
        return None

    def fit_problem(self, y) -> str | None:
        """Why `fit` with clean labels `y` would be refused for too few images (None: it would not), known before
        any adversarial example is made: the per-class split sizes depend on the labels only."""
        labels = self._labels(y, len(np.asarray(y)))
        train, _ = _split(labels, self.holdout, np.random.default_rng(self.seed))      # as `_calibrate` splits
        reg, gpart = _split(labels[train], self.gaussian_split, np.random.default_rng([self.seed, 1]))  # `_learn`
        return self._too_few(train.size, gpart.size, np.unique(labels[train][gpart]).size, reg.size)

    def _learn(self, pix: np.ndarray, labels: np.ndarray, batch_size: int, adv: np.ndarray) -> dict:
        rng = np.random.default_rng([self.seed, 1])
        reg, gpart = _split(labels, self.gaussian_split, rng)
        classes = np.unique(labels[gpart])
        problem = self._too_few(len(pix), gpart.size, classes.size, reg.size)
        if problem:
            raise ValueError(problem)
        layers = []
        for layer in self.layers:
            f = _pooled(self.zoo_model, pix[gpart], layer)
            y = labels[gpart]
            means = np.stack([f[y == c].mean(axis=0) for c in classes])
            centred = f - means[np.searchsorted(classes, y)]
            cov = centred.T @ centred / len(f)                        # shared covariance (maximum likelihood)
            layers.append((means, np.linalg.pinv(cov, hermitian=True)))
        gauss = {"layers": layers, "classes": classes}
        clean_f, _ = self._features(gauss, pix[reg])
        adv_f, _ = self._features(gauss, adv)
        X = np.concatenate([clean_f, adv_f])
        t = np.r_[np.zeros(len(clean_f)), np.ones(len(adv_f))]
        lr = make_pipeline(StandardScaler(), LogisticRegression(random_state=self.seed))
        lr.fit(X, t)
        return {"gauss": gauss, "regression": lr,
                "counts": {"gaussian": int(gpart.size), "regression_clean": int(reg.size),
                           "regression_adversarial": int(len(adv))}}

    def _report(self, pix: np.ndarray, batch_size: int) -> dict:
        learnt = self._fitted("detect")["learnt"]
        feats, closest = self._features(learnt["gauss"], pix)
        report = {f"mahalanobis_{layer}": feats[:, j] for j, layer in enumerate(self.layers)}
        report["score"] = learnt["regression"].decision_function(feats).astype(np.float64)
        report["closest_class"] = closest.astype(np.int64)
        return report

    @property
    def regression(self):
        """The fitted scikit-learn pipeline (StandardScaler, LogisticRegression)."""
        return self._fitted("regression")["learnt"]["regression"]


# ============================================================================================ subset scanning
class ActivationsClassifier(attacks.CompiledGradientClassifier):
    """The project's ART classifier of a zoo model (pixels in [0, 255] -> logits, `attacks.art_classifier`)
    with what ART's ``SubsetScanningDetector`` needs and ART's ``TensorFlowV2Classifier`` cannot give on a
    Keras 3 functional model: ``layer_names`` (the Keras model's) and ``get_activations`` (`runner.activations`
    on the normalised pixels)."""

    def __init__(self, zoo_model) -> None:
        zm = zoo.for_pixels(zoo.resolve(zoo_model))
        super().__init__(attacks.art_classifier(zm).model, zm.num_classes, zm.input_shape)
        self._zoo_model = zm

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self._zoo_model.model.layers]

    def get_activations(self, x, layer, batch_size: int = 128, framework: bool = False):
        names = self.layer_names
        name = names[layer] if isinstance(layer, (int, np.integer)) else layer
        if name not in names:
            raise ValueError(f"layer {layer!r} is not a layer of model {self._zoo_model.name!r}")
        zm = self._zoo_model
        pix = check_images(np.asarray(x, np.float32), zm.input_shape, what="ActivationsClassifier: x")
        return runner.activations(zm.model, np.asarray(zm.normalize(pix), np.float32), name)


class SubsetScanDetector(_Peer):
    """ART's ``SubsetScanningDetector`` on the CI layer (module docstring: why through `ActivationsClassifier`).

    Fitted on clean images only: the non-calibration part is ART's background data. layer: default the zoo
    model's CI layer; scoring_function: ART's (``"BerkJones"``, ``"HigherCriticism"``,
    ``"KolmarovSmirnov"``). Report: ``score`` (ART's ``report["scores"]``), ``art_flag`` (ART's own rule: a
    score above every background score), ``flag`` (at the requested FPR on the held-out calibration part)."""

    defence_params = [*_Peer.defence_params, "layer", "scoring_function"]
    learns = True

    def __init__(self, zoo_model, *, layer=None, scoring_function: str = "BerkJones", **kwargs) -> None:
        self.layer, self.scoring_function = layer, scoring_function
        super().__init__(zoo_model, **kwargs)

    def _check_params(self) -> None:
        super()._check_params()
        zm = self.zoo_model
        layer = zm.ci_layer if self.layer is None else self.layer
        if not isinstance(layer, str) or layer not in {x.name for x in zm.model.layers}:
            raise ValueError(f"layer: expected a layer name of model {zm.name!r}, got {self.layer!r}")
        self.layer = layer
        if self.scoring_function not in ("BerkJones", "HigherCriticism", "KolmarovSmirnov"):
            raise ValueError(f"scoring_function: expected 'BerkJones', 'HigherCriticism' or 'KolmarovSmirnov', got "
                             f"{self.scoring_function!r}")

    def _learn(self, pix: np.ndarray, labels: np.ndarray, batch_size: int) -> dict:
        if len(pix) < 2:
            raise ValueError(f"{self.name}.fit: too few clean images for ART's background data ({len(pix)})")
        art = SubsetScanningDetector(ActivationsClassifier(self.zoo_model), pix, layer=self.layer,
                                     scoring_function=self.scoring_function, verbose=False)
        return {"art": art, "counts": {"background": int(len(pix))}}

    def _report(self, pix: np.ndarray, batch_size: int) -> dict:
        art = self._fitted("detect")["learnt"]["art"]
        report, art_flag = art.detect(pix, batch_size=batch_size)
        return {"score": np.asarray(report["scores"], np.float64), "art_flag": np.asarray(art_flag, bool)}

    @property
    def art_detector(self) -> SubsetScanningDetector:
        """ART's fitted detector."""
        return self._fitted("art_detector")["learnt"]["art"]


#: the peers, by the name notebooks use
PEERS = {"msp": MaxSoftmaxDetector, "feature_squeezing": FeatureSqueezingDetector,
         "mahalanobis": MahalanobisDetector, "subset_scanning": SubsetScanDetector}
