"""An adaptive white-box attacker that knows CausAdv (Carlini & Wagner 2017; Tramer et al. 2020).

    >>> det = CausAdvDetector(zm); det.fit(clean, labels)             # a FITTED detector
    >>> res = adaptive_attack(det, images, labels, eps=8/255)         # iterates at 10, 50, 200 steps
    >>> evaluate_adaptive(det, res, labels)[200]["attack_success"]    # misclassified AND not flagged
    >>> plain = adaptive_attack(det, images, labels, eps=8/255, weight=0)   # the non-adaptive reference

The attacker knows the model, the CI layer and definition, the prototypes and the clean calibration
reference of every strategy score (`CausAdvDetector.reference`), and runs untargeted L-inf PGD on float
pixels in [0, 255] (the model's normalisation as the affine map of `attacks.pixel_inputs`), minimising

    loss(x) = max(m, -kappa)  +  weight * [m < 0] * mean_j penalty_j(x),   m = z_y - max_{j != y} z_j

The first term is Carlini & Wagner's margin on the logits: saturation-safe (logit differences never
vanish the way a float32 softmax does, the reason `attacks.CompiledGradientClassifier` exists) and
hinged at a margin of `kappa` logits. The second is *selective* (as Tramer et al. 2020 advise): it
acts only on images already misclassified ([m < 0], held constant), so the detector term never fights
the misclassification of an image that is not yet fooled; weight = 0 gives plain PGD with the margin
loss (the non-adaptive reference of `evaluate_adaptive`). It pushes each strategy's smooth score
toward the clean side: the detector's combined score is the most extreme calibrated tail over the
strategies, against the clean reference (two-sided by default), so penalty_j = d_j ** 2 with d_j the
surrogate score's distance outside the clean band (`CLEAN_BAND`: the 25th-75th percentiles of the
clean reference, where an image's tail is at most 1/2: no penalty inside it, none needed to reach the
exact median) divided by spread_j (half the 16-84 percentile range of the reference, at least 0.5 for
integer-valued scores (counts, ranks), at least 1e-3 otherwise). With ``tails="paper"`` only the
suspicious side counts. A strategy that cannot judge the image (its predicted class has no prototype)
adds nothing.

Surrogates (the counts have zero gradient almost everywhere; each surrogate is on the scale of the real
score, so that the reference's band means the same for both). With tau_i = TAU * max_k |CI_ik| (a
per-image scale, held constant in the gradient: the counts are scale-free, so is the surrogate) and
u = CI / tau_i:

- S1 (``-#(CI > 0)``): ``-sum_k sigmoid(u_k)`` over the non-zero CIs (an exact zero is not causal and
  adds 0, as in the count; a sigmoid is the standard smooth step);
- S3 (``-#(CI == 0)``): ``-sum_k exp(-(CI_k / tau0_i) ** 2)`` with the narrower tau0_i = TAU_ZERO *
  max_k |CI_ik|: exactly 1 at CI == 0 and falling off within tau0_i (a Gaussian bump: smooth, 1 at zero
  as the indicator, and its gradient pulls small CIs to zero; measured on clean images of the small CIFAR
  CNN, the wider TAU counted about two small non-zero CIs per image as zeros, TAU_ZERO matches the count);
- S2 rho (``-rho``): the Pearson correlation with the predicted class's prototype CI vector, exactly
  (differentiable as it is; a constant vector gets 0, as in `strategies`); S2 rank: 1 + the sum over the
  other prototypes of ``sigmoid((rho_j - rho_own) / RANK_TAU)`` (a soft count of the prototypes that beat
  the own class);
- S4 (``-#common``): a soft overlap: ``-sum_k member_k * sigmoid((CI_k - t_i) / tau_i) * sigmoid(u_k)``,
  member = the prototype's top-m causal set (`strategies.top_causal`, fixed for the predicted class),
  t_i = the midpoint of the image's n-th and (n+1)-th largest CI (a soft top-n, held constant).

The predicted class (whose prototype S2 and S4 use) is the argmax of the logits, held constant.

Steps. A random start uniform in the eps-ball, drawn per image from
``np.random.default_rng([seed, STREAM, image index])`` (like `attacks`' PGD), clipped to [0, 255]; then
signed-gradient steps of eps/4, eps/8 from step 10 on and eps/16 from step 50 on (`STEP_SCHEDULE`: the
step depends on the step index only, so the iterate at t is the same in a run of any length), each
projected onto the eps-ball and [0, 255]. One run of max(iterations) steps records the iterate at each
requested count: each is the iterate of that step (no best-iterate selection).

Same answer every time: every compiled step runs on `runner.MICRO_BATCH` images (a short batch padded),
and image i always sits at position i % MICRO_BATCH of its call, so the result is bit-identical
whatever `batch_size` is; each image's loss depends on its own row only. Results are cached
(`cache.cached`, namespace ``adaptive``) under the model, the images, labels, every parameter and the
detector's fitted state (`CausAdvDetector.key_parts`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from . import __version__, attacks, checks, config, runner, strategies
from . import cache as ccache
from . import ci as _ci
from .detector import CausAdvDetector, NotFittedError
from .pixels import check_images

__all__ = ["AdaptiveResult", "adaptive_attack", "evaluate_adaptive", "STEP_SCHEDULE", "STREAM", "TAU",
           "RANK_TAU", "KAPPA"]

#: (first step index, step as a fraction of eps): eps/4, then eps/8 from step 10, eps/16 from step 50
STEP_SCHEDULE = ((0, 1 / 4), (10, 1 / 8), (50, 1 / 16))
#: random-start stream: default_rng([seed, STREAM, image index]) (attacks' PGD uses stream 1)
STREAM = 2
#: the surrogates' temperature, a fraction of each image's largest |CI|
TAU = 0.01
#: S3's narrower temperature (a fraction of each image's largest |CI|): exact zeros are rare among small CIs
TAU_ZERO = 1e-3
#: the clean band of each score (percentiles of the clean reference): no penalty inside it
CLEAN_BAND = (25, 75)
#: the soft rank's temperature (in units of rho)
RANK_TAU = 0.05
#: the default hinge of the margin loss, in logits
KAPPA = 2.0
PIXEL_MAX = attacks.PIXEL_MAX
_IMPL_VERSION = 1


@dataclass(frozen=True, eq=False)
class AdaptiveResult:
    """The iterates of one adaptive run: per iteration count, float32 pixels in the eps-ball and [0, 255], and the
    model's predictions on them; eps is a fraction of the pixel range."""

    iterations: tuple[int, ...]
    adversarial: Mapping[int, np.ndarray]   # t -> (N, H, W, 3) float32
    predicted: Mapping[int, np.ndarray]     # t -> (N,) int64
    labels: np.ndarray                      # (N,) int64
    eps: float
    weight: float
    kappa: float
    seed: int
    model: str = ""

    def __len__(self) -> int:
        return len(self.labels)


# ----------------------------------------------------------------------------------- arguments
def _iterations(iterations) -> tuple[int, ...]:
    its = (iterations,) if isinstance(iterations, (int, np.integer)) else tuple(iterations)
    if not its:
        raise ValueError("iterations: expected one or more positive step counts, e.g. (10, 50, 200)")
    return tuple(sorted({checks.integer(t, "iterations", minimum=1) for t in its}))


def _detector(detector) -> CausAdvDetector:
    if not isinstance(detector, CausAdvDetector):
        raise ValueError(f"detector: expected a fitted causadv_lib.detector.CausAdvDetector, got "
                         f"{type(detector).__name__}")
    if not detector.fitted:
        raise NotFittedError("adaptive_attack: the detector is not fitted; call detector.fit(clean_images, labels) "
                             "first (the attacker needs its prototypes and clean reference)")
    return detector


def _spread(ref: np.ndarray) -> float:
    lo, hi = np.percentile(ref, [16, 84])
    floor = 0.5 if np.array_equal(ref, np.round(ref)) else 1e-3
    return max(float(hi - lo) / 2.0, floor)


# ----------------------------------------------------------------------------------- the loss
def _standardised(x):
    """Rows scaled, centred and of unit norm (a constant row: zeros), as `strategies`' Pearson; NaN-free gradient."""
    scale = tf.reduce_max(tf.abs(x), axis=-1, keepdims=True)
    x = x / tf.where(scale > 0, scale, tf.ones_like(scale))
    c = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    sq = tf.reduce_sum(c * c, axis=-1, keepdims=True)
    ok = sq > 0
    return tf.where(ok, c / tf.sqrt(tf.where(ok, sq, tf.ones_like(sq))), tf.zeros_like(c))


class _Loss:
    """Per-image loss (margin + weight x detector penalty) of the detector's scores (module docstring)."""

    def __init__(self, det: CausAdvDetector, weight: float, kappa: float):
        protos = det.prototypes.ci.astype(np.float64)
        valid = ~np.isnan(protos).all(axis=1)
        filled = np.where(valid[:, None], protos, 0.0)
        n, m = det.s4
        idx, present = strategies.top_causal(filled, m)
        member = np.zeros(filled.shape, np.float32)
        rows = np.repeat(np.arange(filled.shape[0]), m).reshape(idx.shape)
        member[rows[present], idx[present]] = 1.0
        self.valid = tf.constant(valid)
        self.zp = _standardised(tf.constant(filled, tf.float32))
        self.member = tf.constant(member * valid[:, None])
        self.n = n
        ref = det.reference
        self.scores = det.scores
        self.band = {k: tuple(float(v) for v in np.percentile(ref[k], CLEAN_BAND)) for k in self.scores}
        self.spread = {k: _spread(ref[k]) for k in self.scores}
        self.two_sided = det.tails == "two-sided"
        self.weight, self.kappa = float(weight), float(kappa)

    def surrogates(self, ci, logits) -> dict:
        """{score: (B,) smooth surrogate of the detector's score, (B,) whether the score judges the image}."""
        pred = tf.stop_gradient(tf.argmax(logits, axis=-1, output_type=tf.int32))
        scale = tf.stop_gradient(tf.reduce_max(tf.abs(ci), axis=-1, keepdims=True))
        tau = TAU * tf.where(scale > 0, scale, tf.ones_like(scale))
        u = ci / tau
        nonzero = tf.cast(tf.not_equal(ci, 0.0), ci.dtype)
        causal = tf.sigmoid(u) * nonzero
        every = tf.ones_like(pred, tf.bool)
        judged = tf.gather(self.valid, pred)
        out = {"s1": (-tf.reduce_sum(causal, axis=-1), every),
               "s3": (-tf.reduce_sum(tf.exp(-tf.square(ci / (TAU_ZERO / TAU * tau))), axis=-1), every)}
        rho = tf.matmul(_standardised(ci), self.zp, transpose_b=True)                 # (B, C)
        own = tf.gather(rho, pred, batch_dims=1)
        out["s2_rho"] = (-own, judged)
        others = tf.logical_and(self.valid[None], tf.logical_not(tf.one_hot(pred, tf.shape(rho)[1]) > 0))
        beat = tf.sigmoid((rho - own[:, None]) / RANK_TAU) * tf.cast(others, ci.dtype)
        out["s2_rank"] = (1.0 + tf.reduce_sum(beat, axis=-1), judged)
        top = tf.math.top_k(tf.stop_gradient(ci), k=min(self.n + 1, int(ci.shape[-1]))).values
        t = (top[:, self.n - 1] + top[:, -1]) / 2.0 if top.shape[-1] > self.n else top[:, -1] - tf.squeeze(tau, -1)
        soft_top = tf.sigmoid((ci - t[:, None]) / tau) * causal
        out["s4"] = (-tf.reduce_sum(tf.gather(self.member, pred) * soft_top, axis=-1), judged)
        return out

    def penalty(self, ci, logits):
        sur = self.surrogates(ci, logits)
        terms = []
        for k in self.scores:
            s, judged = sur[k]
            lo, hi = self.band[k]
            d = tf.nn.relu(s - hi) + (tf.nn.relu(lo - s) if self.two_sided else 0.0)
            d = d / self.spread[k]
            terms.append(tf.where(judged, d * d, tf.zeros_like(d)))
        return tf.add_n(terms) / len(terms)

    def __call__(self, ci, logits, y):
        others = tf.where(tf.one_hot(y, tf.shape(logits)[1]) > 0, tf.constant(-np.inf, logits.dtype), logits)
        margin = tf.gather(logits, y, batch_dims=1) - tf.reduce_max(others, axis=-1)
        loss = tf.maximum(margin, -self.kappa)
        if not self.weight:
            return loss
        fooled = tf.stop_gradient(tf.cast(margin < 0, loss.dtype))     # the selective loss (Tramer et al.)
        return loss + self.weight * fooled * self.penalty(ci, logits)


def _step_fn(to_inputs, f, loss):
    @tf.function(reduce_retracing=True)
    def step(x, lo, hi, y, alpha):
        with tf.GradientTape() as tape:
            tape.watch(x)
            ci, logits = f(to_inputs(x))
            total = tf.reduce_sum(loss(ci, logits, y))
        g = tape.gradient(total, x)
        g = tf.where(tf.math.is_finite(g), g, tf.zeros_like(g))
        return tf.clip_by_value(x - alpha * tf.sign(g), lo, hi)
    return step


def step_size(t: int, eps: float) -> float:
    """The step (a fraction of the pixel range) of step index `t` (0-based) under `STEP_SCHEDULE`."""
    return eps * [frac for first, frac in STEP_SCHEDULE if t >= first][-1]


# ----------------------------------------------------------------------------------- the attack
def _run(det, x, y, eps, its, weight, kappa, seed, batch_size, progress):
    zm = det.zoo_model
    to_inputs = attacks.pixel_inputs(zm)
    f = _ci.ci_function(zm.model, det.layer, det.definition)
    step = _step_fn(to_inputs, f, _Loss(det, weight, kappa))
    L, e, T = runner.MICRO_BATCH, np.float32(eps * PIXEL_MAX), its[-1]
    lo, hi = np.maximum(x - e, 0.0).astype(np.float32), np.minimum(x + e, PIXEL_MAX).astype(np.float32)
    adv = {t: np.empty_like(x) for t in its}
    chunks = -(-len(x) // L)
    bar = None if progress is False else tqdm(total=chunks * T, desc=f"adaptive PGD {zm.name}", unit="step",
                                               delay=0 if progress else 2.0)
    for s in range(0, len(x), batch_size):
        group = []
        for c in range(s, min(s + batch_size, len(x)), L):
            idx = np.arange(c, min(c + L, len(x)))
            noise = np.stack([np.random.default_rng([seed, STREAM, int(i)]).uniform(-e, e, x.shape[1:])
                              for i in idx]).astype(np.float32)
            start = np.clip(x[idx] + noise, lo[idx], hi[idx])
            group.append([idx] + [tf.constant(runner.pad(a, L)) for a in (start, lo[idx], hi[idx])]
                         + [tf.constant(runner.pad(y[idx].astype(np.int32), L))])
        for t in range(T):
            alpha = tf.constant(np.float32(step_size(t, eps) * PIXEL_MAX))
            for g in group:
                g[1] = step(g[1], g[2], g[3], g[4], alpha)
                if bar is not None:
                    bar.update(1)
            if t + 1 in adv:
                for g in group:
                    adv[t + 1][g[0]] = g[1].numpy()[:len(g[0])]
    if bar is not None:
        bar.close()
    return adv


def _predict(zm, pixels: np.ndarray) -> np.ndarray:
    return runner.probabilities(zm.model, zm.normalize(pixels)).argmax(axis=1).astype(np.int64)


def adaptive_attack(detector, images, labels, *, eps: float, iterations=(10, 50, 200), weight: float = 1.0,
                    kappa: float = KAPPA, seed: int = config.SEED, batch_size: int = 64, cache: bool = True,
                    progress: bool | None = None) -> AdaptiveResult:
    """Adaptive PGD against a fitted `detector` (`CausAdvDetector`) on `images` (module docstring).

    images: (N, H, W, 3) uint8 or float pixels in [0, 255] at the model's input size; labels: (N,) true
    classes. eps: L-inf budget, a fraction of the pixel range in (0, 1]. iterations: the step counts whose
    iterates are returned (one run of the largest). weight: the detector penalty's weight (0: plain PGD with
    the margin loss, the non-adaptive reference); kappa: the margin's hinge in logits. seed: the random
    starts. batch_size: images per step of the loop (rounded up to whole `runner.MICRO_BATCH` calls; it never
    changes a result). cache: reuse/store the result (`cache.cached`). progress: a bar over steps (None: only
    for runs longer than 2 s).
    """
    det = _detector(detector)
    zm = det.zoo_model
    eps = attacks.check_eps(eps)
    its = _iterations(iterations)
    weight = checks.number(weight, "weight", low=0.0)
    kappa = checks.number(kappa, "kappa", low=0.0)
    seed = checks.seed(seed)
    batch_size = runner.round_up(checks.positive_int(batch_size, "batch_size"), runner.MICRO_BATCH)
    x = check_images(images, zm.input_shape, what=f"adaptive attack on model {zm.name}")
    y = attacks.check_labels(labels, len(x), zm.num_classes, f"adaptive attack on model {zm.name}")
    to_inputs = attacks.pixel_inputs(zm)          # a ValueError now if the normalisation is not affine
    meta = dict(eps=eps, weight=weight, kappa=kappa, seed=seed, model=zm.name)
    if not len(x):
        empty = MappingProxyType({t: x.copy() for t in its})
        return AdaptiveResult(its, empty, MappingProxyType({t: np.zeros(0, np.int64) for t in its}), y, **meta)

    def compute():
        adv = _run(det, x, y, eps, its, weight, kappa, seed, batch_size, progress)
        return {"adversarial": np.stack([adv[t] for t in its]),
                "predicted": np.stack([_predict(zm, adv[t]) for t in its])}

    def wrong(a):
        want = {"adversarial": ((len(its), *x.shape), np.float32), "predicted": ((len(its), len(x)), np.int64)}
        for k, (shape, dtype) in want.items():
            if a[k].shape != shape or a[k].dtype != dtype:
                return f"{k} is {a[k].dtype} {a[k].shape}, expected {np.dtype(dtype)} {shape}"
        adv = a["adversarial"]
        if not np.isfinite(adv).all() or adv.min() < 0.0 or adv.max() > PIXEL_MAX:
            return "adversarial pixels outside [0, 255] or not finite"
        if np.abs(adv - x[None]).max() > np.float32(eps * PIXEL_MAX) * (1 + 1e-6):
            return f"a perturbation exceeds the budget eps = {eps:g}"
        return None

    if cache:
        got = ccache.cached("adaptive", [ccache.model_fingerprint(zm.model), to_inputs.A.numpy(), to_inputs.b.numpy(),
                                         x, y, eps, list(its), weight, kappa, seed, det.key_parts(),
                                         runner.MICRO_BATCH, [list(s) for s in STEP_SCHEDULE], zm.input_shape,
                                         __version__, _IMPL_VERSION],
                            compute, required=("adversarial", "predicted"), validate=wrong,
                            code=(__name__, "causadv_lib.ci", "causadv_lib.attacks", "causadv_lib.keras_graph",
                                  "causadv_lib.runner", "causadv_lib.strategies"))
    else:
        got = compute()
    adv = MappingProxyType({t: got["adversarial"][i] for i, t in enumerate(its)})
    pred = MappingProxyType({t: got["predicted"][i] for i, t in enumerate(its)})
    return AdaptiveResult(its, adv, pred, y, **meta)


# ----------------------------------------------------------------------------------- evaluation
def evaluate_adaptive(detector, result: AdaptiveResult, clean_labels, *, batch_size: int = 128) -> dict:
    """{t: numbers} of the REAL detector (`detector.detect`) on each iterate of `result`:

    ``attack_success``      misclassified AND not flagged by the combined detector (the attacker's win)
    ``misclassified``       the model's error rate under attack (no detector)
    ``tpr``                 flagged fraction of the misclassified adversarial images (NaN if none)
    ``defended_accuracy``   correctly classified, or flagged, over all attacked images
    ``combined_score``      the mean combined score (NaN-free mean; lower = closer to clean)
    ``n``, ``n_misclassified``
    """
    det = _detector(detector)
    y = attacks.check_labels(clean_labels, len(result), det.zoo_model.num_classes, "evaluate_adaptive")
    out = {}
    for t in result.iterations:
        report, flag = det.detect(result.adversarial[t], batch_size=batch_size)
        mis = report["predicted"] != y
        n = len(y)
        out[t] = {"attack_success": float((mis & ~flag).mean()) if n else math.nan,
                  "misclassified": float(mis.mean()) if n else math.nan,
                  "tpr": float(flag[mis].mean()) if mis.any() else math.nan,
                  "defended_accuracy": float((~mis | flag).mean()) if n else math.nan,
                  "combined_score": float(np.nanmean(report["combined_score"])) if n else math.nan,
                  "n": int(n), "n_misclassified": int(mis.sum())}
    return out
