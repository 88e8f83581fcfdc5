"""CausAdv as a detector: ART's `EvasionDetector` interface, fitted on clean images only.

    >>> det = CausAdvDetector(zoo.get("vgg16_bn_cifar10"), fpr=0.05)
    >>> det.fit(clean_pixels, labels)                    # clean images and their labels, nothing adversarial
    >>> report, is_adversarial = det.detect(pixels)      # uint8 or float pixels in [0, 255]
    >>> det.save("runs/detector"); det = CausAdvDetector.load("runs/detector", zm)

**Fit** (clean images and labels only). The images are split, seeded and per class, into a *prototype
part* (``1 - holdout``) and a *calibration part* (``holdout``). The prototypes come from the first
(`prototypes.select_prototypes`: per class the correctly classified image the model is most confident
of, paper section 3.2). The calibration part's correctly classified images (the clean set of the field's
standard) get their CI vectors and each strategy's score (`SCORES`, computed by the functions of
`strategies`; larger = more suspicious, in the paper's direction). Keeping the prototypes out of the
calibration matters: a prototype's own S2 rho is 1 and its S4 overlap complete, so calibrating on it
would set thresholds no new image meets.

**Per-strategy flags.** Each score's threshold is set on all calibration scores at the requested FPR:
``t = metrics.clean_threshold(scores, fpr)`` and, because counts (S1, S3, S4) and ranks (S2 top-k) tie
heavily, a tie fraction ``q``: an image is flagged if ``score > t``, or ``score == t`` and its tie-break
number ``u < q``, with ``q`` chosen so that exactly ``fpr`` of the calibration scores would be flagged
(a randomised test; ``ties="conservative"`` flags only ``score > t``, FPR <= fpr but possibly far
below it). ``u`` is a uniform number derived from a hash of the image's float32 pixels and the seed:
the same image always gets the same verdict, whatever batch it comes in, and a saved and loaded
detector gives identical reports.

**Combined score** (no adversarial example needed either). For each strategy a calibrated tail:
``tails="two-sided"`` (default) ``metrics.clean_tail_score`` = 1 - the two-sided empirical tail
probability, so that a score pushed to either end of the clean distribution counts (notebook 08 shows
attacks whose scores move against the paper's direction, ROC-AUC below 0.5); ``tails="paper"``
``metrics.clean_cdf`` = 1 - the one-sided tail probability in the paper's direction. The combined score
is the most extreme tail over the strategies (the largest; a strategy that cannot judge an image, its
class without a prototype, is left out of the maximum). The maximum of dependent tails has no known
null distribution, so its threshold is calibrated empirically, by **a second split**: the correctly
classified calibration images are split (seeded) into a reference half A (``combined_split``), whose
scores define the tails, and a half B, on whose combined scores (tails against A) the combined
threshold is set at ``fpr``, with the same tie rule. Why a split and not the same data or cross-fitting:
given A and the prototypes the combined score is a fixed function of the image, and B and a new clean
image are exchangeable, so the combined flag's false-positive rate is ``fpr`` in expectation over B
exactly, in finite samples (split conformal). Calibrating on A's own scores would score each image
against a reference that contains it (optimistic, most for small sets); cross-fitting uses every image
twice but scores new images against a different reference than the out-of-fold ones, so its guarantee
is only approximate. The price is precision: the combined threshold rests on B alone (the realised FPR
scatters by about sqrt(fpr (1 - fpr) / n_B), 0.7 points at 5% with 1000 images in B).

All guarantees are for images like the calibration images: correctly classified clean images of the
same distribution. A misclassified clean image is scored against its (wrong) predicted class's
prototype and is flagged more often; the field counts those apart (notes/evaluation-standard.md).

**Detect** returns ``(report, is_adversarial)``; `report` is a dict of (N,) arrays, one entry per image:

  ``predicted``       int64    the model's class
  ``probability``     float32  its probability
  ``KEY_score``       float64  strategy KEY's score (`SCORES`; larger = more suspicious); NaN where the
                               strategy cannot judge the image (its predicted class has no prototype)
  ``KEY_flag``        bool     the strategy's verdict at the requested FPR (False where NaN)
  ``KEY_tail``        float64  its calibrated tail (two-sided or one-sided, see above), in (0, 1)
  ``combined_score``  float64  the largest tail over the strategies
  ``combined_flag``   bool     the combined verdict at the requested FPR: ``is_adversarial``

Saved as ``PATH.npz`` (arrays, no pickle) and ``PATH.json`` (settings, the model's fingerprint, counts),
both written atomically; `load` refuses another model, by name and fingerprint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
from pathlib import Path
from types import MappingProxyType

import numpy as np

from . import __version__, checks, config, metrics, runner, strategies, zoo
from .art_imports import EvasionDetector
from . import prototypes as protolib
from . import cache as ccache
from . import ci as _ci
from .io import atomic_write_bytes
from .pixels import check_images
from .vocab import DATASETS, S2_TOPK

#: the strategy scores the detector can use (larger = more suspicious, in the paper's direction)
SCORES = MappingProxyType({
    "s1": "S1: -#causal filters (CI > 0)",
    "s2_rho": "S2: -rho with the predicted class's prototype (CIFAR-10 style)",
    "s2_rank": "S2: rank of the predicted class among the prototypes by rho (ImageNet style, top-k)",
    "s3": "S3: -#zero filters (CI == 0)",
    "s4": "S4: -#top-n causal filters in the prototype's top-m",
})
TAILS = ("two-sided", "paper")
TIES = ("randomized", "conservative")
#: the file format written by `save`
FORMAT = "causadv-detector/1"


class NotFittedError(RuntimeError):
    """`detect` or `save` on a detector that was not fitted (or whose parameters changed since)."""


def default_scores(dataset, num_classes: int, num_filters: int, *, s2_k: int = S2_TOPK,
                   s4: tuple[int, int] = (3, 10)) -> tuple[str, ...]:
    """The scores used when none are named: S1, S3; S2 as the paper runs it on the dataset (ImageNet: the
    top-k rank; CIFAR-10: rho; a model of no named dataset: both, the rank where k < the number of classes);
    S4 where the layer has at least m filters."""
    out = ["s1"]
    if dataset != "imagenet":
        out.append("s2_rho")
    if (dataset == "imagenet" or dataset is None) and s2_k < num_classes:
        out.append("s2_rank")
    out.append("s3")
    if s4[1] <= num_filters:
        out.append("s4")
    return tuple(out)


def tie_numbers(x: np.ndarray, seed: int, n: int) -> np.ndarray:
    """(N, n) tie-break numbers in [0, 1): from a hash of each image's float32 pixels and `seed`, so an image
    gets the same numbers whatever batch it is in."""
    salt = int(seed).to_bytes(8, "little")
    out = np.empty((len(x), n))
    for i in range(len(x)):
        digest = hashlib.blake2b(np.ascontiguousarray(x[i], np.float32).tobytes(), digest_size=16, salt=salt)
        out[i] = np.random.default_rng(int.from_bytes(digest.digest(), "little")).random(n)
    return out


def threshold_at(scores: np.ndarray, fpr: float, ties: str) -> tuple[float, float]:
    """(t, q): flag ``score > t`` or (``score == t`` and u < q); q makes exactly fpr of `scores` flagged
    (``ties="randomized"``) or is 0 (``"conservative"``, FPR <= fpr)."""
    s = scores[~np.isnan(scores)]
    t = metrics.clean_threshold(s, fpr)
    if ties == "conservative" or math.isinf(t):
        return t, 0.0
    above, at = int((s > t).sum()), int((s == t).sum())
    return t, float(min(1.0, max(0.0, (fpr * s.size - above) / at)))


def flag_at(scores: np.ndarray, t: float, q: float, u: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ~np.isnan(scores) & ((scores > t) | ((scores == t) & (u < q)))


def set_params_or_restore(detector, kwargs: dict, set_params) -> bool:
    """ART's `set_params` (the callable given) on a detector, with names outside its `defence_params` refused and,
    when a value is refused, every parameter restored; returns whether any parameter changed."""
    unknown = sorted(set(kwargs) - set(detector.defence_params))
    if unknown:
        raise ValueError(f"set_params: unknown parameter(s) {unknown}; expected some of {detector.defence_params}")
    before = detector.get_params()
    try:
        set_params(**kwargs)
    except Exception:
        for k, v in before.items():
            setattr(detector, k, v)
        raise
    return detector.get_params() != before


class CausAdvDetector(EvasionDetector):
    """CausAdv's four strategies as one detector, calibrated on clean images only (module docstring).

    zoo_model: a ZooModel (`zoo.get`, `zoo.custom`, `zoo.resolve`) or a name `zoo.resolve` accepts.
    fpr: the false-positive rate every flag is calibrated to, in (0, 1). definition: the CI definition
    (`ci.DEFINITIONS`); layer: the CI layer (default the zoo model's). holdout: the fraction of the fit
    images used for calibration, the rest giving the prototypes. seed: the seeded splits and tie-breaks.
    scores: which of `SCORES` (default `default_scores`); s2_k: the k of S2's top-k rank; s4: S4's (n, m).
    tails: ``"two-sided"`` or ``"paper"`` (the combined score's tails); combined_split: the share of the
    calibration images whose scores define the tails (the rest calibrate the combined threshold); ties:
    ``"randomized"`` or ``"conservative"``. cache, progress: passed to the CI computation.
    """

    defence_params = ["fpr", "definition", "layer", "holdout", "seed", "scores", "s2_k", "s4", "tails",
                      "combined_split", "ties", "cache", "progress"]

    def __init__(self, zoo_model, *, fpr: float = 0.05, definition: str = "probability", layer=None,
                 holdout: float = 0.5, seed: int = config.SEED, scores=None, s2_k: int = S2_TOPK,
                 s4: tuple[int, int] = (3, 10), tails: str = "two-sided", combined_split: float = 0.5,
                 ties: str = "randomized", cache: bool = False, progress: bool | None = None) -> None:
        super().__init__()
        self.zoo_model = zoo.resolve(zoo_model)
        self.fpr, self.definition, self.layer, self.holdout, self.seed = fpr, definition, layer, holdout, seed
        self.scores, self.s2_k, self.s4, self.tails = scores, s2_k, s4, tails
        self.combined_split, self.ties, self.cache, self.progress = combined_split, ties, cache, progress
        self._check_params()
        self._fit = None

    # ------------------------------------------------------------------------------------ parameters
    def _check_params(self) -> None:
        zm = self.zoo_model
        self.fpr = checks.level(self.fpr, "fpr")
        if self.definition not in _ci.DEFINITIONS:
            raise ValueError(f"definition: expected one of {_ci.DEFINITIONS}, got {self.definition!r}")
        layer = zm.ci_layer if self.layer is None else getattr(self.layer, "name", self.layer)
        if not isinstance(layer, str):
            raise ValueError(f"layer: expected a layer name of {zm.name!r}, got {self.layer!r}")
        self.layer = layer
        self._num_filters = _ci.num_filters(zm.model, layer)   # a ValueError naming the layer if it has none
        self.holdout = checks.level(self.holdout, "holdout")
        self.seed = checks.seed(self.seed)
        self.s2_k = checks.integer(self.s2_k, "s2_k", minimum=1)
        try:
            n, m = self.s4
        except (TypeError, ValueError):
            raise ValueError(f"s4: expected (n, m), S4's top-n of the image and top-m of the prototype, got "
                             f"{self.s4!r}") from None
        n, m = checks.integer(n, "s4 n", minimum=1), checks.integer(m, "s4 m", minimum=1)
        if m < n:
            raise ValueError(f"s4: the paper requires m >= n, got (n, m) = ({n}, {m})")
        self.s4 = (n, m)
        if self.scores is None:
            self.scores = default_scores(zm.dataset if zm.dataset in DATASETS else None, zm.num_classes,
                                         self._num_filters, s2_k=self.s2_k, s4=self.s4)
        else:
            given = (self.scores,) if isinstance(self.scores, str) else tuple(self.scores)
            bad = [s for s in given if s not in SCORES]
            if bad or not given or len(set(given)) != len(given):
                raise ValueError(f"scores: expected distinct names among {tuple(SCORES)}, got {self.scores!r}")
            self.scores = given
        if "s2_rank" in self.scores and self.s2_k >= zm.num_classes:
            raise ValueError(f"s2_k: the top-{self.s2_k} rank needs more classes than k; {zm.name!r} has "
                             f"{zm.num_classes}: lower s2_k or leave 's2_rank' out of scores")
        if "s4" in self.scores and self.s4[1] > self._num_filters:
            raise ValueError(f"s4: m = {self.s4[1]} exceeds the {self._num_filters} filters of layer {layer!r}: "
                             "lower m or leave 's4' out of scores")
        if self.tails not in TAILS:
            raise ValueError(f"tails: expected one of {TAILS}, got {self.tails!r}")
        self.combined_split = checks.level(self.combined_split, "combined_split")
        if self.ties not in TIES:
            raise ValueError(f"ties: expected one of {TIES}, got {self.ties!r}")
        if not isinstance(self.cache, (bool, np.bool_)):
            raise ValueError(f"cache: expected True or False, got {self.cache!r}")

    def set_params(self, **kwargs) -> None:
        """Change parameters (names in `defence_params`; others are refused). A fitted detector whose
        parameters change is fitted no more: fit it again. A refused value leaves every parameter as it was."""
        if set_params_or_restore(self, kwargs, super().set_params):
            self._fit = None

    @property
    def fitted(self) -> bool:
        return self._fit is not None

    def _fitted(self, what: str) -> dict:
        if self._fit is None:
            raise NotFittedError(f"CausAdvDetector.{what}: the detector is not fitted; call fit(clean_images, "
                                 "labels) first (or CausAdvDetector.load(path, zoo_model))")
        return self._fit

    @property
    def thresholds(self) -> dict:
        """{score: (t, q)} of each strategy and ``"combined"``: flagged if score > t, or == t and u < q."""
        f = self._fitted("thresholds")
        return {k: (float(f["t"][i]), float(f["q"][i])) for i, k in enumerate((*self.scores, "combined"))}

    @property
    def prototypes(self) -> protolib.Prototypes:
        """The prototypes the fit chose, from the prototype part of the fit images (``index`` is the position
        in the fit's `x`, ``ids`` the same as text)."""
        return self._fitted("prototypes")["prototypes"]

    @property
    def counts(self) -> dict:
        """How many fit images went where: images, prototype part, calibration part, its correctly classified
        images, and the two halves of those (A: tails, B: the combined threshold)."""
        return dict(self._fitted("counts")["counts"])

    @property
    def reference(self) -> dict:
        """{score: the sorted clean reference scores (the combined score's half A)} against which each strategy's
        tail is taken (`metrics.clean_tail_score` or `metrics.clean_cdf`, by ``tails``)."""
        f = self._fitted("reference")
        return {k: f["reference"][j] for j, k in enumerate(self.scores)}

    def key_parts(self) -> list:
        """Everything a fitted detector's reports depend on, for cache keys of results computed against it: the
        settings, the model's fingerprint, the prototypes, thresholds and references."""
        f = self._fitted("key_parts")
        p = f["prototypes"]
        return [self._settings(), ccache.model_fingerprint(self.zoo_model.model), p.index, p.ci, p.layer,
                p.definition, f["t"], f["q"], list(f["reference"])]

    # ------------------------------------------------------------------------------------ inputs
    def _inputs(self, x, what: str) -> tuple[np.ndarray, np.ndarray]:
        """(float32 pixels, model inputs) of `x` under the pixel contract at the model's input size."""
        zm = self.zoo_model
        pix = check_images(x, zm.input_shape, what=f"{what}: x")
        if zm.normalize is not None:
            inputs = np.asarray(zm.normalize(pix), np.float32)
        elif np.array_equal(pix, np.round(pix)):
            inputs = np.asarray(zm.preprocess(pix.astype(np.uint8)), np.float32)
        else:
            raise ValueError(f"{what}: x holds non-integer float pixels, but zoo model {zm.name!r} has no "
                             "normalize (float pixels in [0, 255] -> model inputs); pass uint8 images, or give "
                             "normalize= to zoo.custom")
        return pix, inputs

    def _labels(self, y, n: int) -> np.ndarray:
        C = self.zoo_model.num_classes
        if y is None:
            raise ValueError(f"fit: y (the true class of each of the {n} images) is required")
        arr = np.asarray(y)
        if arr.ndim == 2 and arr.shape[1] == C and arr.shape[0] == n:            # ART's one-hot labels
            arr = arr.argmax(axis=1)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(f"fit: y has shape {arr.shape} for {n} images; expected {n} labels, (N,) class "
                             f"indices or (N, {C}) one-hot")
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"fit: y must hold integer class indices, got dtype {arr.dtype}")
        bad = (arr < 0) | (arr >= C)
        if bad.any():
            raise ValueError(f"fit: y holds labels outside 0..{C - 1}: {arr[bad][:5].tolist()} (at positions "
                             f"{np.flatnonzero(bad)[:5].tolist()})")
        return arr.astype(np.int64)

    # ------------------------------------------------------------------------------------ scores
    def _ci(self, inputs: np.ndarray, batch_size: int):
        return _ci.counterfactual_information(self.zoo_model.model, inputs, self.layer, definition=self.definition,
                                              batch_size=batch_size, cache=self.cache, progress=self.progress)

    def _scores(self, ci: np.ndarray, predicted: np.ndarray, proto: np.ndarray) -> np.ndarray:
        """(N, S) scores of `self.scores` (strategies' functions; NaN where a strategy cannot judge)."""
        n, m = self.s4
        fns = {"s1": lambda: strategies.s1_causal_existence(ci),
               "s2_rho": lambda: strategies.s2_pearson(ci, predicted, proto, mode="threshold"),
               "s2_rank": lambda: strategies.s2_pearson(ci, predicted, proto, mode="topk", k=self.s2_k),
               "s3": lambda: strategies.s3_zero_effect(ci),
               "s4": lambda: strategies.s4_common_features(ci, predicted, proto, n=n, m=m)}
        if not len(ci):
            return np.zeros((0, len(self.scores)))
        return np.stack([fns[k]().score for k in self.scores], axis=1)

    def _tails(self, scores: np.ndarray, reference: list) -> np.ndarray:
        tail = metrics.clean_tail_score if self.tails == "two-sided" else metrics.clean_cdf
        return np.stack([tail(ref, scores[:, j]) for j, ref in enumerate(reference)], axis=1) if len(scores) \
            else np.zeros((0, len(reference)))

    @staticmethod
    def _combined(tails: np.ndarray) -> np.ndarray:
        out = np.full(tails.shape[0], np.nan)
        some = ~np.isnan(tails).all(axis=1)
        out[some] = np.nanmax(tails[some], axis=1)
        return out

    # ------------------------------------------------------------------------------------ fit
    def _enough(self, correct: int, calibration: int, images: int) -> None:
        need = 2 * math.ceil(1.0 / self.fpr - 1e-9)
        if correct < need:
            raise ValueError(f"fit: too few clean images to calibrate at fpr={self.fpr:g}: {correct} of the "
                             f"{calibration} calibration images (holdout={self.holdout:g} of {images}) are "
                             f"correctly classified; at least {need} are needed (2 x 1/fpr: the combined score's "
                             "reference and threshold halves need 1/fpr each). Pass more clean images")

    def _given_prototypes(self, protos) -> protolib.Prototypes:
        """`protos` checked against the detector: the same layer, definition, classes and filters."""
        zm = self.zoo_model
        if not isinstance(protos, protolib.Prototypes):
            raise ValueError(f"fit: prototypes must be a prototypes.Prototypes (prototypes.for_pool, "
                             f"experiment.prototype_set), got {type(protos).__name__}")
        want = (self.layer, self.definition, zm.num_classes, self._num_filters)
        got = (protos.layer, protos.definition, protos.num_classes, protos.ci.shape[1])
        if not strategies.same_layer(protos.layer, self.layer) or got[1:] != want[1:]:
            raise ValueError(f"fit: the prototypes given are of layer {got[0]!r}, definition {got[1]!r}, {got[2]} "
                             f"classes and {got[3]} filters; the detector needs layer {want[0]!r}, definition "
                             f"{want[1]!r}, {want[2]} classes and {want[3]} filters")
        return protos

    def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int = 128, nb_epochs: int = 20, *,
            prototypes: protolib.Prototypes | None = None, **kwargs) -> None:
        """Calibrate on clean images `x` ((N, H, W, 3) uint8 or float pixels in [0, 255] at the model's input
        size) and their labels `y` ((N,) class indices or (N, C) one-hot). Nothing is trained: `nb_epochs`
        is ART's and ignored; `batch_size` is the CI loop's (it never changes a result).

        prototypes: prototypes chosen elsewhere (`prototypes.for_pool` over images disjoint from `x`, as the
        experiment's `experiment.prototype_set`), of the detector's layer and definition. Then every image of
        `x` calibrates (``holdout`` is not used) and the detector judges with the same prototypes as the
        paper's tables."""
        if kwargs:
            raise TypeError(f"fit: unexpected keyword argument(s) {sorted(kwargs)}")
        batch_size = checks.positive_int(batch_size, "batch_size")
        zm = self.zoo_model
        pix, inputs = self._inputs(x, "fit")
        labels = self._labels(y, len(pix))
        rng = np.random.default_rng(self.seed)
        if prototypes is not None:
            protos = self._given_prototypes(prototypes)
            proto_part, cal_part = np.zeros(0, np.int64), np.arange(len(pix))
        else:
            proto_part, cal_part = [], []
            for c in range(zm.num_classes):              # per class, so that every class keeps candidates
                idx = rng.permutation(np.flatnonzero(labels == c))
                k = int(round(self.holdout * idx.size))
                cal_part.append(idx[:k])
                proto_part.append(idx[k:])
            proto_part, cal_part = np.sort(np.concatenate(proto_part)), np.sort(np.concatenate(cal_part))
            if not proto_part.size:
                raise ValueError(f"fit: too few clean images: {len(pix)} image(s) leave none for the prototypes at "
                                 f"holdout={self.holdout:g}")
        pred = runner.probabilities(zm.model, inputs[cal_part]).argmax(axis=1) if cal_part.size else cal_part
        correct = cal_part[pred == labels[cal_part]]
        self._enough(correct.size, cal_part.size, len(pix))
        if prototypes is None:
            protos = protolib.select_prototypes(zm.model, inputs[proto_part], labels[proto_part],
                                                [str(i) for i in proto_part], layer=self.layer,
                                                definition=self.definition, num_classes=zm.num_classes,
                                                batch_size=batch_size, progress=self.progress)
            protos = dataclasses.replace(protos, index=np.where(protos.index >= 0,
                                                                proto_part[np.maximum(protos.index, 0)], -1))
        res = self._ci(inputs[correct], batch_size)
        ok = res.predicted == labels[correct]            # the CI engine's prediction is the one that counts
        correct, ci_cal, pred_cal = correct[ok], res.ci[ok], res.predicted[ok]
        self._enough(correct.size, cal_part.size, len(pix))
        scores = self._scores(ci_cal, pred_cal, protos.ci)
        judged = (~np.isnan(scores)).sum(axis=0)
        few = [f"{k} ({int(j)})" for k, j in zip(self.scores, judged) if j * self.fpr < 1 - 1e-9]
        if few:
            raise ValueError(f"fit: too few clean images to calibrate at fpr={self.fpr:g}: scores {few} judge fewer "
                             f"than {math.ceil(1 / self.fpr - 1e-9)} of the {correct.size} correctly classified "
                             "calibration images (their predicted classes have no prototype); pass more clean images")
        t, q = zip(*(threshold_at(scores[:, j], self.fpr, self.ties) for j in range(scores.shape[1])))
        order = rng.permutation(correct.size)
        n_a = int(round(self.combined_split * correct.size))
        a, b = order[:n_a], order[n_a:]
        reference = [np.sort(s[~np.isnan(s)]) for s in scores[a].T]
        short = [self.scores[j] for j, r in enumerate(reference) if r.size * self.fpr < 1 - 1e-9]
        if min(a.size, b.size) * self.fpr < 1 - 1e-9 or short:
            raise ValueError(f"fit: too few clean images to calibrate the combined score at fpr={self.fpr:g}: "
                             f"{a.size} reference and {b.size} threshold images (combined_split="
                             f"{self.combined_split:g} of {correct.size} correctly classified calibration images)"
                             + (f"; scores {short} judge too few of them (classes without a prototype)" if short
                                else "") + f"; each part needs at least {math.ceil(1 / self.fpr - 1e-9)}")
        combined_b = self._combined(self._tails(scores[b], reference))
        tc, qc = threshold_at(combined_b, self.fpr, self.ties)
        counts = {"images": int(len(pix)), "prototype_part": int(proto_part.size),
                  "calibration_part": int(cal_part.size), "calibration_correct": int(correct.size),
                  "reference": int(a.size), "combined_threshold": int(b.size)}
        self._fit = {"prototypes": protos, "t": np.array([*t, tc], np.float64), "q": np.array([*q, qc], np.float64),
                     "reference": reference, "calibration_scores": scores, "calibration_ids": correct,
                     "counts": counts}

    # ------------------------------------------------------------------------------------ detect
    def detect(self, x: np.ndarray, batch_size: int = 128, **kwargs) -> tuple[dict, np.ndarray]:
        """(report, is_adversarial) for images `x` ((N, H, W, 3) uint8 or float pixels in [0, 255] at the
        model's input size): `report` as the module docstring lists it, `is_adversarial` = its
        ``combined_flag``. `batch_size` is the CI loop's (it never changes a result)."""
        if kwargs:
            raise TypeError(f"detect: unexpected keyword argument(s) {sorted(kwargs)}")
        f = self._fitted("detect")
        batch_size = checks.positive_int(batch_size, "batch_size")
        pix, inputs = self._inputs(x, "detect")
        res = self._ci(inputs, batch_size)
        scores = self._scores(res.ci, res.predicted, f["prototypes"].ci)
        tails = self._tails(scores, f["reference"])
        combined = self._combined(tails)
        u = tie_numbers(pix, self.seed, len(self.scores) + 1)
        report = {"predicted": res.predicted, "probability": res.probability}
        for j, k in enumerate(self.scores):
            report[f"{k}_score"] = scores[:, j]
            report[f"{k}_flag"] = flag_at(scores[:, j], f["t"][j], f["q"][j], u[:, j])
            report[f"{k}_tail"] = tails[:, j]
        report["combined_score"] = combined
        report["combined_flag"] = flag_at(combined, f["t"][-1], f["q"][-1], u[:, -1])
        return report, report["combined_flag"]

    # ------------------------------------------------------------------------------------ save, load
    def _settings(self) -> dict:
        return {"fpr": self.fpr, "definition": self.definition, "layer": self.layer, "holdout": self.holdout,
                "seed": self.seed, "scores": list(self.scores), "s2_k": self.s2_k, "s4": list(self.s4),
                "tails": self.tails, "combined_split": self.combined_split, "ties": self.ties}

    def save(self, path) -> tuple[Path, Path]:
        """Write ``PATH.npz`` (prototypes, thresholds, reference and calibration scores; no pickle) and
        ``PATH.json`` (settings, the model's name, fingerprint and shapes, counts, the npz's sha256), both
        atomically; returns their paths."""
        f = self._fitted("save")
        base = Path(path).with_suffix("")
        npz, js = base.with_suffix(".npz"), base.with_suffix(".json")
        p = f["prototypes"]
        arrays = {"proto_index": p.index, "proto_probability": p.probability, "proto_ci": p.ci, "t": f["t"],
                  "q": f["q"], "calibration_scores": f["calibration_scores"],
                  "calibration_ids": f["calibration_ids"]}
        arrays |= {f"reference_{k}": r for k, r in zip(self.scores, f["reference"])}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        zm = self.zoo_model
        meta = {"format": FORMAT, "causadv_version": __version__, "settings": self._settings(),
                "model": {"name": zm.name, "fingerprint": ccache.model_fingerprint(zm.model),
                          "input_shape": list(zm.input_shape), "num_classes": zm.num_classes},
                "prototypes": {"ids": list(p.ids), "layer": p.layer, "definition": p.definition,
                               "missing": list(p.missing)},
                "counts": f["counts"], "npz_sha256": hashlib.sha256(data).hexdigest()}
        atomic_write_bytes(npz, data)
        atomic_write_bytes(js, (json.dumps(meta, indent=1) + "\n").encode())
        return npz, js

    @classmethod
    def load(cls, path, zoo_model) -> "CausAdvDetector":
        """The detector `save` wrote to `path`, for `zoo_model`; a different model (architecture or weights)
        is refused by name, as are files of another format or a pair whose npz does not match its JSON."""
        zm = zoo.resolve(zoo_model)
        base = Path(path).with_suffix("")
        npz, js = base.with_suffix(".npz"), base.with_suffix(".json")
        for f in (js, npz):
            if not f.is_file():
                raise FileNotFoundError(f"CausAdvDetector.load: {f} is missing (save writes PATH.npz and PATH.json)")
        meta = json.loads(js.read_text())
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"CausAdvDetector.load: {js} is not a saved CausAdvDetector (format "
                             f"{meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r})")
        data = npz.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta["npz_sha256"]:
            raise ValueError(f"CausAdvDetector.load: {npz} does not match {js} (sha256 differs): the pair was not "
                             "written by one save")
        saved = meta["model"]
        if ccache.model_fingerprint(zm.model) != saved["fingerprint"]:
            raise ValueError(f"CausAdvDetector.load: {js} was fitted on model {saved['name']!r}; the model given, "
                             f"{zm.name!r}, differs from it (architecture or weights: fingerprints differ)")
        det = cls(zm, **{k: tuple(v) if k in ("scores", "s4") else v for k, v in meta["settings"].items()})
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        pm = meta["prototypes"]
        protos = protolib.Prototypes(index=a["proto_index"], ids=tuple(pm["ids"]),
                                       probability=a["proto_probability"], ci=a["proto_ci"], layer=pm["layer"],
                                       definition=pm["definition"], missing=tuple(int(c) for c in pm["missing"]))
        det._fit = {"prototypes": protos, "t": a["t"], "q": a["q"],
                    "reference": [a[f"reference_{k}"] for k in det.scores],
                    "calibration_scores": a["calibration_scores"], "calibration_ids": a["calibration_ids"],
                    "counts": dict(meta["counts"])}
        return det
