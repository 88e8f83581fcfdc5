"""Input purifiers from ART on the shared adversarial examples (paper section 4.3, Table 4).

The paper compares CausAdv with three defences of the Adversarial Robustness Toolbox, used as input
purifiers: the adversarial image is transformed, classified again, and counted as *recovered* when the
model then predicts its true class. The authors' settings (their notebook, `reference-implementation.md`):

==================== ======================== =========================================================
purifier             ART class                setting (pixels in [0, 255], ``clip_values=(0, 255)``)
==================== ======================== =========================================================
``feature_squeezing`` `FeatureSqueezing`      ``bit_depth=3`` (8 grey levels per channel)
``spatial_smoothing`` `SpatialSmoothing`      ``window_size=7`` (7x7 median filter per channel)
``gaussian_noise``    `GaussianAugmentation`  ``sigma=9`` (9/255 of the pixel range), ``augmentation=False``:
                                              Gaussian noise added to the input, nothing appended
==================== ======================== =========================================================

Two more settings, not in the paper, are Xu et al.'s (2018) milder squeezers: ``feature_squeezing_5bit``
(``bit_depth=5``) and ``spatial_smoothing_2x2`` (``window_size=2``). ``none`` is the identity, the
baseline that checks the counting (no adversarial example is "recovered" without a purifier).

Units and pipeline: a purifier works on float pixel values in [0, 255] at the model's input size (the
units of `causadv_lib.attacks`); its output goes through ``zoo_model.normalize`` and the model
(`predict`). The noise of ``gaussian_noise`` is ART's own draw from the global ``np.random``, seeded per
image by ``(seed, image index)`` and the global state restored afterwards: an image's noise depends only
on the seed and its index (pass ``index=`` the clean-set index, so a clean image and its adversarial
examples get the same noise), not on the batch or on earlier calls.

Counting (`analysis.defences.evaluate`, `analysis.defences.table_rows`): per attack, the *successful* adversarial examples whose prediction
after the purifier is their true class, compared by class index (the authors compared label names from
two naming schemes, so their matches were nearly impossible). Next to it, the accuracy of the clean
evaluation set after the same purifier, which the paper omits: a purifier that "recovers" labels by
destroying clean accuracy is no defence.

Bad input stops with an error naming the model, or the index and shape of the offending image.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import checks, config, runner, zoo
from .art_imports import preprocessor
from .pixels import check_images

__all__ = ["Purifier", "PURIFIERS", "PAPER_PURIFIERS", "XU_PURIFIERS", "get", "purify", "predict",
           "recovered"]

PIXEL_RANGE = (0.0, 255.0)
#: random stream of the Gaussian noise: np.random.seed([seed, _NOISE_STREAM, image index])
_NOISE_STREAM = 9


@dataclass(frozen=True)
class Purifier:
    """One ART preprocessor with its settings, applied to float pixels in [0, 255]."""

    name: str
    label: str                    # column title
    art_class: str                # class name in art.defences.preprocessor ("" for the identity)
    params: dict = field(default_factory=dict)
    random: bool = False          # draws noise (seeded per image)
    in_paper: bool = False
    short: str = ""               # short name for plots (default: label)

    @property
    def short_label(self) -> str:
        return self.short or self.label

    @property
    def setting(self) -> str:
        """``FeatureSqueezing(bit_depth=3, clip_values=(0, 255))``: how it was built."""
        if not self.art_class:
            return "identity"
        kw = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.art_class}({kw}, clip_values=(0, 255))"

    def art(self):
        """The ART preprocessor (None for the identity)."""
        if not self.art_class:
            return None
        cls = getattr(preprocessor, self.art_class)
        kw = dict(self.params)
        if self.art_class == "GaussianAugmentation":
            kw |= {"apply_fit": False, "apply_predict": True}
        return cls(clip_values=PIXEL_RANGE, **kw)

    def __call__(self, pixels, *, seed: int = config.SEED, index=None) -> np.ndarray:
        return purify(self, pixels, seed=seed, index=index)


PURIFIERS: dict[str, Purifier] = {p.name: p for p in [
    Purifier("none", "no purifier", "", short="none"),
    Purifier("feature_squeezing", "Feature squeezing (3 bits)", "FeatureSqueezing", {"bit_depth": 3}, in_paper=True,
             short="FS 3 bits"),
    Purifier("spatial_smoothing", "Spatial smoothing (7x7)", "SpatialSmoothing", {"window_size": 7}, in_paper=True,
             short="SS 7x7"),
    Purifier("gaussian_noise", "Gaussian noise (sigma 9)", "GaussianAugmentation",
             {"sigma": 9.0, "augmentation": False}, random=True, in_paper=True, short="GDA sigma 9"),
    Purifier("feature_squeezing_5bit", "Feature squeezing (5 bits)", "FeatureSqueezing", {"bit_depth": 5},
             short="FS 5 bits (Xu)"),
    Purifier("spatial_smoothing_2x2", "Spatial smoothing (2x2)", "SpatialSmoothing", {"window_size": 2},
             short="SS 2x2 (Xu)"),
]}
#: the paper's three columns, in its order (Feature Squeezing, Spatial smoothing, GDA)
PAPER_PURIFIERS = ("feature_squeezing", "spatial_smoothing", "gaussian_noise")
#: Xu et al.'s milder squeezers (not in the paper)
XU_PURIFIERS = ("feature_squeezing_5bit", "spatial_smoothing_2x2")


def get(purifier) -> Purifier:
    """A `Purifier` from its name (`PURIFIERS`) or itself."""
    if isinstance(purifier, Purifier):
        return purifier
    if isinstance(purifier, str) and purifier in PURIFIERS:
        return PURIFIERS[purifier]
    raise ValueError(f"unknown purifier {purifier!r}; expected one of {', '.join(PURIFIERS)} or a Purifier")


# ------------------------------------------------------------------------------------------ input
def _model_name(zm) -> str:
    return zoo.name_of(zm)


def _check_model(zm):
    return zoo.for_pixels(zm)


def _index(index, n: int) -> np.ndarray:
    if index is None:
        return np.arange(n, dtype=np.int64)
    idx = np.asarray(index)
    if idx.shape != (n,) or (n and not np.issubdtype(idx.dtype, np.integer)) or (n and idx.min() < 0):
        raise ValueError(f"index: expected {n} non-negative integer image indices, got {idx.dtype} {idx.shape}")
    return idx.astype(np.int64)


# -------------------------------------------------------------------------------------- purifying
def purify(purifier, pixels, *, seed: int = config.SEED, index=None) -> np.ndarray:
    """`pixels` (float or uint8 in [0, 255], (N, H, W, 3)) after `purifier`; float32 in [0, 255].

    `index` (N,) names each image for the noise seed (default 0..N-1); deterministic per (seed, index).
    """
    p = get(purifier)
    seed = checks.seed(seed)
    x = check_images(pixels, what=f"purifier {p.name}")
    pre = p.art()
    if pre is None or len(x) == 0:
        return x.copy()
    if not p.random:
        out, _ = pre(x)
        return np.asarray(out, np.float32)
    idx = _index(index, len(x))
    out = np.empty_like(x)
    state = np.random.get_state()
    try:
        for i, k in enumerate(idx):
            np.random.seed([seed, _NOISE_STREAM, int(k)])
            out[i] = pre(x[i:i + 1])[0][0]
    finally:
        np.random.set_state(state)
    return out


def predict(zm, pixels, purifier="none", *, seed: int = config.SEED, index=None, batch_size: int = 64) -> np.ndarray:
    """(N, classes) float32 probabilities of the model on `pixels` after `purifier`."""
    zm = _check_model(zm)
    x = check_images(pixels, zm.input_shape, what=f"model {_model_name(zm)}")
    if len(x) == 0:
        return np.zeros((0, len(zm.class_names)), np.float32)
    x = purify(purifier, x, seed=seed, index=index)
    return runner.probabilities(zm.model, zm.normalize(x), batch_size=batch_size)


def recovered(zm, pixels, labels, purifier, *, seed: int = config.SEED, index=None) -> np.ndarray:
    """(N,) bool: the prediction after `purifier` is the true class `labels` (compared by class index)."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(pixels) or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(f"labels: expected {len(pixels)} integer class indices, got {y.dtype} {y.shape}")
    return predict(zm, pixels, purifier, seed=seed, index=index).argmax(axis=1) == y


