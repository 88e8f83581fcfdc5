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

Speed (`median_smooth`): ``SpatialSmoothing`` stays defined by ART (the `Purifier` keeps ART's class and
parameters, and `Purifier.art` builds ART's object), but `purify` runs it through `median_smooth`, an exact
re-implementation of what ART calls (``scipy.ndimage.median_filter(x, size=(1, w, w, 1), mode="reflect")``,
then ``np.clip`` to ``clip_values``): the same window footprint (for an even ``w`` the window reaches one
pixel further up and left, scipy's origin 0), the same boundary (scipy's "reflect", numpy's "symmetric"
padding), the same rank (``w*w // 2``, the upper median for even windows), the same dtype. Only the way
the rank is found differs: min/max networks for ``w`` = 2 and 3, a sort of the ``w*w`` window values
otherwise (a few rows at a time), on channel-first copies, a bounded number of images at a time. Rank selection is exact, so
the output is bit-identical to ART's; inputs where the order of equal values could show (a signed zero
-0.0, NaN, Inf) and layouts other than (N, H, W, C) go to ART itself. The identity is checked against
ART's own object with ``np.array_equal`` in ``tests/test_defences.py`` (windows 2, 3, 7 and others, random,
tied and structured images, odd and tiny sizes, float32 / float64 / uint8); `benchmarks/purifier_speed.py`
times both (32 ImageNet images on 2 cores: 2x2 0.18 s -> 0.03 s, 3x3 0.57 -> 0.05, 7x7 2.8 -> 0.7).

Bad input stops with an error naming the model, or the index and shape of the offending image.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import checks, config, runner, zoo
from .art_imports import preprocessor
from .pixels import check_images

__all__ = ["Purifier", "PURIFIERS", "PAPER_PURIFIERS", "XU_PURIFIERS", "get", "purify", "predict",
           "recovered", "median_smooth", "smooth"]

PIXEL_RANGE = (0.0, 255.0)
#: bytes of window values `median_smooth` aims to hold at once (at least one image; a 224x224x3 float32 image
#: with a 7x7 window holds 29 MB): small chunks keep the 2x2 and 3x3 networks in cache (4 MiB: 2x faster than 64)
SMOOTH_BUDGET = 4 * 2 ** 20
#: bytes of window values the sorting path sorts at once (a few rows of an image)
SORT_BUDGET = 2 ** 20
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
    if p.art_class == "SpatialSmoothing":
        return np.asarray(smooth(pre, x), np.float32)
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




# ------------------------------------------------------------------------------- spatial smoothing
def _sort2(a, b):
    return np.minimum(a, b), np.maximum(a, b)


def _median3(a, b, c):
    """The middle of three (elementwise)."""
    lo, hi = _sort2(a, b)
    return np.maximum(lo, np.minimum(hi, c))


def _rank_2x2(p: np.ndarray) -> np.ndarray:
    """Rank 2 of 4 (the upper median) of each 2x2 window of `p` (..., H+1, W+1), (..., H, W)."""
    lo, hi = _sort2(p[..., :-1, :], p[..., 1:, :])             # each column's pair, sorted
    # sorted s0 <= s1 <= s2 <= s3: s3 = max(hi, hi'), s2 = the largest of the other three
    return np.maximum(np.minimum(hi[..., :-1], hi[..., 1:]), np.maximum(lo[..., :-1], lo[..., 1:]))


def _median_3x3(p: np.ndarray) -> np.ndarray:
    """Median of each 3x3 window of `p` (..., H+2, W+2), (..., H, W): Paeth's network (sort the columns; the
    median is the middle of the largest minimum, the middle middle and the smallest maximum)."""
    l1, h1 = _sort2(p[..., :-2, :], p[..., 1:-1, :])
    c = p[..., 2:, :]
    lo, t = np.minimum(l1, c), np.maximum(l1, c)
    mid, hi = np.minimum(h1, t), np.maximum(h1, t)
    a = np.maximum(np.maximum(lo[..., :-2], lo[..., 1:-1]), lo[..., 2:])
    b = _median3(mid[..., :-2], mid[..., 1:-1], mid[..., 2:])
    z = np.minimum(np.minimum(hi[..., :-2], hi[..., 1:-1]), hi[..., 2:])
    return _median3(a, b, z)


def _rank_sorted(p: np.ndarray, w: int, budget: int = SORT_BUDGET) -> np.ndarray:
    """Rank ``w*w // 2`` of each w x w window of `p` (..., H+w-1, W+w-1): sort the window values, a block of
    output rows at a time (about `budget` bytes of window values, in cache: 1.5x faster than whole images)."""
    h, wd = p.shape[-2] - w + 1, p.shape[-1] - w + 1
    out = np.empty(p.shape[:-2] + (h, wd), p.dtype)
    rows = max(1, budget // max(1, p[..., 0, 0].size * wd * w * w * p.dtype.itemsize))
    for r in range(0, h, rows):
        v = np.lib.stride_tricks.sliding_window_view(p[..., r:r + rows + w - 1, :], (w, w), axis=(-2, -1))
        v = np.array(v, copy=True).reshape(*v.shape[:-2], w * w)     # contiguous, writable window values
        v.sort(axis=-1)
        out[..., r:r + rows, :] = v[..., (w * w) // 2]
    return out


def _exact_input(x: np.ndarray) -> bool:
    """Where any exact rank selection gives ART's bits: a dtype scipy's float64 buffer holds exactly, and no
    value whose tie-breaking could show (all finite, no -0.0: equal to 0.0 with other bits)."""
    # scipy ranks in float64: exact for these dtypes, not for 64-bit integers or long doubles
    if x.dtype.kind in "iu":
        return x.dtype.itemsize <= 4
    if x.dtype.kind != "f" or x.dtype.itemsize > 8:
        return False
    if not np.isfinite(x).all():
        return False
    return not (np.signbit(x).any() and (np.signbit(x) & (x == 0)).any())


def median_smooth(x: np.ndarray, window_size: int, clip_values=None, *, budget: int = SMOOTH_BUDGET) -> np.ndarray:
    """ART's `SpatialSmoothing` on (N, H, W, C) `x`, channels last, bit for bit, faster.

    The median over each ``window_size`` x ``window_size`` window of each image and channel, as
    ``scipy.ndimage.median_filter(x, size=(1, w, w, 1), mode="reflect")`` computes it (rank ``w*w // 2``;
    an even window covers offsets ``-w//2 .. w - 1 - w//2``), then clipped to `clip_values` as ART does;
    the dtype of `x`. At most `budget` bytes of window values at a time. Inputs `smooth` would not send
    here (a -0.0, NaN or Inf, a non-real dtype) raise ValueError.
    """
    x = np.asarray(x)
    w = window_size
    if x.ndim != 4 or not (isinstance(w, (int, np.integer)) and w > 0):
        raise ValueError(f"median_smooth: expected (N, H, W, C) images and a positive window size, got "
                         f"{x.shape} and {w!r}")
    if not _exact_input(x):
        raise ValueError("median_smooth: only finite real values without -0.0 are handled here (use ART's "
                         "SpatialSmoothing)")
    w = int(w)
    before, after = w // 2, w - 1 - w // 2
    out = np.empty_like(x)
    n, h, wd, c = x.shape
    per_image = max(1, h * wd * c * (w * w if w > 3 else 8) * x.dtype.itemsize)
    step = max(1, budget // per_image)
    for i in range(0, n, step):
        # channel-first copies (n, C, H, W): the window values of one pixel then lie close together
        chunk = np.ascontiguousarray(x[i:i + step].transpose(0, 3, 1, 2))
        p = np.pad(chunk, ((0, 0), (0, 0), (before, after), (before, after)), mode="symmetric")
        if w == 1:
            r = chunk
        elif w == 2:
            r = _rank_2x2(p)
        elif w == 3:
            r = _median_3x3(p)
        else:
            r = _rank_sorted(p, w, min(budget, SORT_BUDGET))
        out[i:i + step] = r.transpose(0, 2, 3, 1)
    if clip_values is not None:
        np.clip(out, clip_values[0], clip_values[1], out=out)
    return out


def smooth(pre, x: np.ndarray) -> np.ndarray:
    """ART `SpatialSmoothing` object `pre` applied to `x`: `median_smooth` where it is exact (channels-last
    images, finite values without -0.0), else ART's ``pre(x)`` itself. Bit-identical to ``pre(x)[0]``."""
    x = np.asarray(x)
    if pre.channels_first or x.ndim != 4 or not _exact_input(x):
        return pre(x)[0]
    return median_smooth(x, pre.window_size, pre.clip_values)
