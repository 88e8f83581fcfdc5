"""L-infinity evasion attacks (FGSM, BIM, PGD; untargeted and targeted) through ART, on float pixels or the 8-bit grid.

    >>> from causadv_lib import attacks, zoo
    >>> zm = zoo.get("vgg16_bn_cifar10")
    >>> res = attacks.generate(zm, images_uint8, labels=y, attack="pgd", eps=8/255)
    >>> res.adversarial        # (N, 32, 32, 3) float32 pixel values in [0, 255], never rounded
    >>> res.success.mean()     # untargeted: prediction != label; targeted: prediction == target
    >>> attacks.stored(res.adversarial)            # (N, 32, 32, 3) uint8: the images as they would be saved
    >>> attacks.rounded_success(zm, res).mean()    # the success that survives that rounding
    >>> g = attacks.generate(zm, images_uint8, labels=y, attack="pgd", eps=8/255, grid=True)
    >>> np.array_equal(g.adversarial, attacks.stored(g.adversarial))  # True: on the grid, success as stored

Units. Attacks work on pixel values in [0, 255] at the model's input size (``zoo_model.geometry``
turns photographs into that); ``eps`` is a fraction of the pixel range, so ``eps=8/255`` allows 8
grey levels per pixel. ART sees the pixels themselves (``clip_values=(0, 255)``, ART's eps =
``255 * eps``); the model's normalisation (``zoo_model.normalize``, checked to be a per-pixel affine
map and rebuilt in TensorFlow) sits inside the classifier, so gradients are taken in pixel space.
Adversarial images come back as float32 pixels in the input's units, never rounded to uint8 or JPEG
(the authors' JPEG round trip partly undid their attacks).

Stored images (8-bit). Every saved image is uint8, and rounding float adversarial pixels can undo an
attack (notebook 07's ``table07_rounding`` measures it per attack: at the project's budgets it changed no
success rate).
`stored` is the one home of that rounding (``np.rint``, clipped to [0, 255], uint8); `rounded_success`
is an attack's success on the rounded images. ``generate(..., grid=True)`` runs attacks that stay on
the 8-bit grid: the clean images must hold integers (uint8 or integer-valued floats; otherwise a
ValueError), every iterate is rounded to integers after its step and projected into the integer
eps-ball ``|x_adv - x| <= grid_levels(eps) = floor(255 * eps + 1e-6)`` grey levels within [0, 255],
so the result is exactly a uint8 image (still returned as float32) and its ``success`` and
``predicted`` are those of the stored image. The loop of a grid attack is written here, not in ART:
ART has no per-step rounding (its iterates are floats, and rounding only ART's final answer is
`rounded_success`). Each step is ART's L-infinity step on the compiled classifier's gradient
(`CompiledGradientClassifier.canonical_loss_gradient`: ``loss_gradient`` in `runner`'s fixed
``MICRO_BATCH`` layout, so that an image's result is bit-identical whatever the batch size): ``x +
eps_step * sign(gradient)`` (minus for targeted attacks; NaN gradients as 0, as ART does), then
``np.rint``, then the projection. A step below half a grey level rounds back to where it started
(``eps_step * 255 <= 0.5``: `generate` warns); at the project's budgets (8/255 and 24/255) every step
is a whole number of grey levels, so grid FGSM and BIM move as the float ones do and grid PGD differs
by its rounded random start.

Loss. ART's classifier is built on the *logits* (the input of the model's final softmax) with
cross-entropy from logits: a softmax that saturates to p = 1.0 in float32 (common on the CIFAR
model) would give a zero gradient through the probabilities, and the attack would silently do
nothing. Its gradient is computed in a form that keeps its direction under saturation (see
`CompiledGradientClassifier`).

Settings (`SETTINGS`, one table; every value is recorded in the result and in the cache key):

| attack | ART class (``grid=False``) | ``grid=True`` | eps_step | iterations | random start |
|---|---|---|---|---|---|
| ``fgsm`` | `FastGradientMethod` | one step, then rounding | eps | 1 | no |
| ``bim`` | `BasicIterativeMethod` | rounding after every step | eps / 8 | 10 | no |
| ``pgd`` | ART's TensorFlow-v2 `ProjectedGradientDescent` | rounding after every step | eps / 4 | 10 | 1 (uniform in the eps-ball; on the grid: rounded) |

PGD with a random start is a different attack from BIM (the authors ran ART's PGD with its default
``num_random_init=0``, which is BIM). For a TensorFlow-v2 classifier, ART's `ProjectedGradientDescent`
and `BasicIterativeMethod` both delegate to ``ProjectedGradientDescentTensorFlowV2``; PGD here uses a
subclass of it whose only change is where the random start comes from: ART draws it from the global
``np.random`` per batch, this subclass from ``np.random.default_rng([seed, 1, image index])``, so the
start of an image depends on (seed, its index) only, not on the batch size or on earlier calls. A
grid PGD draws its start from the same stream (the same numbers for the same image) and rounds it.

Same answer however the images are batched or sharded. The float attacks' gradients run in a canonical
layout of the run (`CompiledGradientClassifier._block_gradient`): blocks of ``LAYOUT_BLOCK`` = 32 images
from its first image, the last block as long as what is left, each image in its row of its block (rows not
at hand filled with copies, computed and dropped). That is exactly the calls the default ``batch_size=32``
made before this layout existed (measured: ART's batches did change pixels, e.g. MobileNetV2 PGD targeted
at batch size 1 against 32), so no default result moved, and an image's result no longer depends on
``batch_size``. ``part=(first, total)`` places the images in a longer run (a shard of `experiment`'s
sharded run): targets, PGD starts and the gradient layout are then the run's, so shards put together give
the whole run bit for bit.

Labels. ``labels`` (true classes) are required: untargeted success means the adversarial prediction
differs from the label; targeted attacks aim at ``target_classes(labels, K, seed)``, a class other
than the label drawn per image by ``np.random.default_rng(seed)`` (deterministic). Attack
correctly classified images (the evaluation samples are) to count flips of the prediction.

Speed. ART's ``TensorFlowV2Classifier.loss_gradient`` runs eagerly; `CompiledGradientClassifier`
computes the same gradient in a ``tf.function`` (``benchmarks/attack_speed.py`` measures both).

Caching: results are stored with `causadv_lib.cache` (namespace ``attacks``) under a key of the
model's weights and architecture, the normalisation, the images, labels, targets, every attack
parameter (``grid`` included), the images' place in their run (``part``) and its layout, and the library and
ART versions (not the batch size, which changes no result); a hit is bit-identical
to recomputing.
"""
from __future__ import annotations

import contextlib
import math
import warnings
import weakref
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from . import __version__, checks, config, runner, zoo
from .art_imports import (BasicIterativeMethod, FastGradientMethod, ProjectedGradientDescent,
                          ProjectedGradientDescentTensorFlowV2, TensorFlowV2Classifier, art)
from . import cache as ccache
from . import keras_graph as kg
from .pixels import check_images

__all__ = ["SETTINGS", "ATTACKS", "AttackResult", "generate", "target_classes", "art_classifier",
           "CompiledGradientClassifier", "attack_parameters", "stored", "rounded_success", "grid_levels",
           "PixelInputs", "pixel_inputs", "check_eps", "check_labels", "PIXEL_MAX"]

#: attack -> (eps_step as a fraction of eps, iterations, random starts). The one place for these values.
SETTINGS: dict[str, dict] = {
    "fgsm": {"eps_step_fraction": 1.0, "max_iter": 1, "num_random_init": 0},
    "bim": {"eps_step_fraction": 1 / 8, "max_iter": 10, "num_random_init": 0},
    "pgd": {"eps_step_fraction": 1 / 4, "max_iter": 10, "num_random_init": 1},
}
ATTACKS = tuple(SETTINGS)
PIXEL_MAX = 255.0
#: bumped whenever the computation changes in a way the cache key cannot see
_IMPL_VERSION = 1
_PGD_STREAM = 1  # random-start stream: default_rng([seed, _PGD_STREAM, draw, image index])
#: slack of the integer budget floor(255 * eps + _GRID_SLACK): 8/255 * 255 may come out just below 8
_GRID_SLACK = 1e-6
#: images per gradient call of the float attacks' canonical layout (`CompiledGradientClassifier._block_gradient`):
#: a run's images in blocks of this many from its first image, the last block as long as what is left (the calls the
#: default ``batch_size=32`` made before this layout existed, so results did not move)
LAYOUT_BLOCK = 32


@dataclass(frozen=True, eq=False)
class AttackResult:
    """Adversarial pixels and outcome of one attack run; eps and eps_step are fractions of the pixel range."""

    adversarial: np.ndarray   # (N, H, W, 3) float32 pixel values in [0, 255]
    success: np.ndarray       # (N,) bool: untargeted predicted != labels; targeted predicted == targets
    predicted: np.ndarray     # (N,) int64, the model's prediction on `adversarial`
    targets: np.ndarray       # (N,) int64, the target class (targeted) or -1 (untargeted)
    labels: np.ndarray        # (N,) int64, the true classes given
    attack: str
    eps: float
    eps_step: float
    max_iter: int
    num_random_init: int
    targeted: bool
    seed: int
    model: str = ""
    grid: bool = False        # True: every iterate rounded to the 8-bit grid (`adversarial` holds integers)
    entry: str = ""           # the key of the cache entry holding exactly `adversarial` ("": none), a name for
                              # these pixels in other cache keys; a slice or a join of results has none

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def success_rate(self) -> float:
        """Fraction of successful attacks (nan for an empty result)."""
        return float(self.success.mean()) if len(self.success) else float("nan")

    @property
    def params(self) -> dict:
        """Every attack parameter, for reports (eps and eps_step as fractions of the pixel range)."""
        keep = ("attack", "eps", "eps_step", "max_iter", "num_random_init", "targeted", "seed", "model", "grid")
        return {k: getattr(self, k) for k in keep} | {"norm": "inf"}    # not asdict: it deep-copies the pixels


def attack_parameters(attack: str, eps: float) -> dict:
    """eps_step, max_iter and num_random_init of `attack` at `eps` (eps_step a fraction of the pixel range)."""
    s = SETTINGS[_check_attack(attack)]
    return {"eps_step": float(eps) * s["eps_step_fraction"], "max_iter": s["max_iter"],
            "num_random_init": s["num_random_init"]}


def grid_levels(eps: float) -> int:
    """The integer budget of a grid attack: ``floor(255 * eps + 1e-6)`` grey levels (8 for eps = 8/255)."""
    return int(math.floor(_check_eps(eps) * PIXEL_MAX + _GRID_SLACK))


def stored(adversarial) -> np.ndarray:
    """Pixels as they would be saved: ``np.rint``, clipped to [0, 255], as uint8 (the one home of that rounding)."""
    return np.clip(np.rint(np.asarray(adversarial, np.float64)), 0.0, PIXEL_MAX).astype(np.uint8)


def rounded_success(zoo_model, result: "AttackResult") -> np.ndarray:
    """(N,) bool: `result`'s success (as `AttackResult.success` defines it) of the model's prediction on
    ``stored(result.adversarial)``, the uint8 images; for a ``grid=True`` result it equals ``result.success``."""
    zm = zoo.resolve(zoo_model)
    if len(result) == 0:
        return np.zeros(0, bool)
    pred = _predict(zm, stored(result.adversarial).astype(np.float32))
    return _success(pred, result.labels, result.targets, result.targeted)


# ------------------------------------------------------------------------------------ validation
def _check_attack(attack) -> str:
    if not isinstance(attack, str) or attack.lower() not in SETTINGS:
        raise ValueError(f"unknown attack {attack!r}; expected one of {', '.join(ATTACKS)}")
    return attack.lower()


def _check_eps(eps) -> float:
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise ValueError(f"eps must be a number in (0, 1] (a fraction of the pixel range, e.g. 8/255), got {eps!r}")
    eps = float(eps)
    if not (math.isfinite(eps) and 0.0 < eps <= 1.0):
        hint = f" (did you mean eps={eps:g}/255?)" if math.isfinite(eps) and 1.0 < eps <= 255.0 else ""
        raise ValueError(f"eps={eps!r} is outside (0, 1]; eps is a fraction of the pixel range, "
                         f"e.g. 8/255 for 8 grey levels{hint}")
    return eps


def _check_labels(labels, n: int, num_classes: int, name: str) -> np.ndarray:
    if labels is None:
        raise ValueError(f"{name}: labels (the true class of each image, shape ({n},)) are required")
    y = np.asarray(labels)
    if (y.dtype == bool or not np.issubdtype(y.dtype, np.integer)) and y.size:  # [] is float64: allowed when empty
        raise ValueError(f"{name}: labels must be integer class indices, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{name}: expected {n} labels of shape ({n},), got shape {y.shape}")
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        raise ValueError(f"{name}: labels must lie in 0..{num_classes - 1}; got {y[bad][:5].tolist()} "
                         f"(at positions {np.flatnonzero(bad)[:5].tolist()})")
    return y


#: the checks of eps (a fraction of the pixel range, in (0, 1]) and of true labels, for other attack modules
check_eps, check_labels = _check_eps, _check_labels


def target_classes(labels, num_classes: int, seed: int = config.SEED, first: int = 0) -> np.ndarray:
    """Target class of each image: uniform over the classes other than its label, seeded by `seed`.

    ``(labels + r) % num_classes`` with ``r`` drawn from 1..num_classes-1 by ``np.random.default_rng(seed)``
    in image order, so a prefix of the images keeps its targets. `first`: the labels are those of images
    ``first, first + 1, ...`` of a longer run, and get that run's targets (its draws ``first`` onwards).
    """
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if num_classes < 2:
        raise ValueError(f"targeted attacks need at least 2 classes, got {num_classes}")
    first = checks.integer(first, "first", minimum=0)
    r = np.random.default_rng(checks.seed(seed)).integers(1, num_classes, size=first + len(y))[first:]
    return (y + r) % num_classes


# --------------------------------------------------------------------------- model in pixel space
def _logits_tensor(model):
    """The logits: the input of the model's final softmax layer (`keras_graph.logits_of`), in its own graph."""
    lg = kg.logits_of(model)
    if lg.kind != "softmax_input":
        last = kg.producer(kg.nodes(kg.functional(model)), model.outputs[0])
        raise ValueError(f"{model.name}: attacks need a model ending in a Softmax layer (its input are the "
                         f"logits), got {type(None if last is None else last.operation).__name__}; see "
                         "zoo.custom / zoo.split_softmax")
    return lg.tensor


def _affine_normalize(zm) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with ``normalize(x) == x @ A + b`` per pixel (A: 3 x C), checked on a random image."""
    if zm.normalize is None:
        raise ValueError(f"zoo model {zm.name!r} has no `normalize` (float pixels in [0, 255] -> model inputs), "
                         "which attacks need; pass normalize= to zoo.custom")
    shape = tuple(zm.input_shape)
    probe = np.zeros((5, *shape), np.float32)
    for c in range(3):
        probe[1 + c, ..., c] = 100.0
    probe[4] = np.random.default_rng(0).uniform(0, PIXEL_MAX, shape).astype(np.float32)
    out = np.asarray(zm.normalize(probe), dtype=np.float64)
    if out.shape[:3] != (5, *shape[:2]):
        raise ValueError(f"{zm.name}: normalize changed the image size: {probe.shape} -> {out.shape}")
    b = out[0].reshape(-1, out.shape[-1])
    A = np.stack([(out[1 + c] - out[0]).reshape(-1, out.shape[-1]) / 100.0 for c in range(3)], axis=1)  # (P, 3, C)
    b0, A0 = b[0], A[0]
    predicted = probe[4].reshape(-1, 3).astype(np.float64) @ A0 + b0
    scale = 1.0 + np.abs(out[4]).max()
    if (np.abs(b - b0).max() > 1e-5 * scale or np.abs(A - A0).max() > 1e-6 * scale
            or np.abs(predicted - out[4].reshape(-1, out.shape[-1])).max() > 1e-4 * scale):
        raise ValueError(f"{zm.name}: normalize is not the same affine map at every pixel; attacks rebuild it "
                         "in TensorFlow and support only x -> x @ A + b per pixel (scaling, offsets, channel order)")
    return A0.astype(np.float32), b0.astype(np.float32)


class PixelInputs:
    """Float pixels in [0, 255] -> the model's inputs in TensorFlow: ``x @ A + b`` per pixel, the zoo model's
    normalisation as `_affine_normalize` reads it (differentiable in the pixels)."""

    def __init__(self, A: np.ndarray, b: np.ndarray):
        self.A = tf.constant(A)
        self.b = tf.constant(b)

    def __call__(self, x):
        return tf.einsum("nhwc,cd->nhwd", tf.cast(x, tf.float32), self.A) + self.b


def pixel_inputs(zoo_model) -> PixelInputs:
    """The TensorFlow map from float pixels in [0, 255] to `zoo_model`'s inputs that the attacks differentiate
    through (a ValueError where its normalisation is missing or not a per-pixel affine map)."""
    return PixelInputs(*_affine_normalize(zoo.resolve(zoo_model)))


class _PixelLogits:
    """Callable for ART: float pixels in [0, 255] -> logits (the affine normalisation in TensorFlow)."""

    def __init__(self, logits_model, A: np.ndarray, b: np.ndarray):
        self.logits_model = logits_model
        self.to_inputs = PixelInputs(A, b)

    def __call__(self, x, training: bool = False):
        return self.logits_model(self.to_inputs(x), training=training)


class CompiledGradientClassifier(TensorFlowV2Classifier):
    """ART's ``TensorFlowV2Classifier`` whose ``loss_gradient`` runs as one compiled ``tf.function``.

    ``loss_gradient(x, y)`` is the gradient of each image's cross-entropy from logits, divided by
    ``1 - p_y`` (a positive factor per image, which sign-based and per-image-normalised attacks do not
    see; ART's default mean over the batch is another such factor). Computed as the back-propagation
    of ``softmax over the classes other than y - onehot(y)`` from the logits, it keeps its direction
    when the softmax saturates: the plain ``softmax - onehot`` loses the label's term once p_y rounds
    to 1.0 in float32 (logit lead above ~17), and underflows to zero once the other probabilities do
    (lead above ~100), while this form does neither. Each image's gradient is independent of the
    rest of its batch. ``training_mode=True`` falls back to ART's eager code (the plain gradient).
    """

    def __init__(self, model, nb_classes: int, input_shape: tuple, clip_values=(0.0, PIXEL_MAX)):
        super().__init__(model=model, nb_classes=nb_classes, input_shape=tuple(input_shape),
                         loss_object=keras.losses.CategoricalCrossentropy(from_logits=True, reduction="sum"),
                         clip_values=clip_values, preprocessing=None)

        @tf.function(reduce_retracing=True)
        def gradient(x, y):
            with tf.GradientTape() as tape:
                tape.watch(x)
                logits = model(x, training=False)
            others = tf.nn.softmax(tf.where(y > 0, tf.constant(-np.inf, logits.dtype), logits), axis=-1)
            return tape.gradient(logits, x, output_gradients=tf.stop_gradient(others - y))

        self._compiled_gradient = gradient

    def canonical_loss_gradient(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``loss_gradient(x, y)`` in `runner`'s canonical layout (compiled calls of exactly ``MICRO_BATCH``
        images, a short one padded): each image's gradient is bit-identical whatever shares its call."""
        return runner.fixed_batches(self._compiled_gradient, [np.asarray(x, np.float32), np.asarray(y, np.float32)],
                                    runner.MICRO_BATCH)[0]

    def loss_gradient(self, x, y, training_mode: bool = False, **kwargs):
        if training_mode:
            return super().loss_gradient(x, y, training_mode=True, **kwargs)
        if self._layout is not None:
            g = self._block_gradient(np.asarray(x, np.float32), np.asarray(y, np.float32), *self._layout)
            return g if isinstance(x, np.ndarray) else tf.convert_to_tensor(g)
        g = self._compiled_gradient(tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(y, tf.float32))
        return g.numpy() if isinstance(x, np.ndarray) else g

    _layout = None   # (run index of the first image given, images in the run) while `in_run_layout` holds

    @contextlib.contextmanager
    def in_run_layout(self, first: int, total: int):
        """Within: ``loss_gradient(x, y)`` takes `x` as the images ``first, first + 1, ...`` of a run of `total`
        images and computes their gradient in the run's layout (`_block_gradient`)."""
        self._layout = (int(first), int(total))
        try:
            yield self
        finally:
            self._layout = None

    def trace_first(self, size: int) -> None:
        """Trace the compiled gradient for calls of `size` images first, unless it has been traced already.

        The gradient is a ``tf.function(reduce_retracing=True)``: the first batch shape it sees gets a graph of
        its own, every later one a shared shape-relaxed graph, and the two need not agree in the last bit. A run
        traces its first block's shape first (`_run`), as an in-process run always did, so a worker process that
        receives a run's tail shard before a whole block computes each image with the same graph as the run."""
        if self._compiled_gradient.experimental_get_tracing_count() == 0:
            self._compiled_gradient.get_concrete_function(
                tf.TensorSpec((size, *self.input_shape), tf.float32), tf.TensorSpec((size, self.nb_classes), tf.float32))

    def _block_gradient(self, x: np.ndarray, y: np.ndarray, first: int, total: int) -> np.ndarray:
        """The gradient of images ``first .. first + len(x) - 1`` of a run of `total` images in the run's layout:
        one compiled call per block of `LAYOUT_BLOCK` run images (block k: images ``k * LAYOUT_BLOCK`` onwards,
        the last block as long as what is left), each image in its row of its block. Rows of the block not
        given here are filled with copies of a given image (computed and dropped), so each image's gradient is
        bit-identical however the run is cut into pieces; a whole block given at once is one plain call."""
        out, i = np.empty_like(x), 0
        while i < len(x):
            g = first + i
            b0 = g - g % LAYOUT_BLOCK
            size = min(LAYOUT_BLOCK, total - b0)
            j = min(len(x), b0 + size - first)
            pos = g - b0
            if pos == 0 and j - i == size:
                xb, yb = x[i:j], y[i:j]
            else:
                xb, yb = np.repeat(x[i:i + 1], size, axis=0), np.repeat(y[i:i + 1], size, axis=0)
                xb[pos:pos + j - i], yb[pos:pos + j - i] = x[i:j], y[i:j]
            out[i:j] = self._compiled_gradient(tf.constant(xb), tf.constant(yb)).numpy()[pos:pos + j - i]
            i = j
        return out


_CLASSIFIERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def art_classifier(zoo_model, compiled: bool = True):
    """ART classifier of a zoo model on float pixels in [0, 255] -> logits (built once per model).

    ``compiled=False`` gives ART's plain ``TensorFlowV2Classifier`` (eager gradient, mean loss) on the
    same pixel-space logits network, as the benchmark's baseline.
    """
    zm = zoo.resolve(zoo_model)
    A, b = _affine_normalize(zm)
    entry = _CLASSIFIERS.get(zm.model)
    if entry is None or not (np.array_equal(entry["A"], A) and np.array_equal(entry["b"], b)):
        logits_model = keras.Model(zm.model.inputs, _logits_tensor(zm.model), name=f"{zm.model.name}_logits")
        entry = {"A": A, "b": b, "net": _PixelLogits(logits_model, A, b)}
        _CLASSIFIERS[zm.model] = entry
    kind = "compiled" if compiled else "plain"
    if kind not in entry:
        if compiled:
            entry[kind] = CompiledGradientClassifier(entry["net"], zm.num_classes, zm.input_shape)
        else:
            entry[kind] = TensorFlowV2Classifier(
                entry["net"], nb_classes=zm.num_classes, input_shape=tuple(zm.input_shape),
                loss_object=keras.losses.CategoricalCrossentropy(from_logits=True), clip_values=(0.0, PIXEL_MAX))
    return entry[kind]


# ------------------------------------------------------------------------------------- ART attacks
def _start_noise(shape: tuple, n: int, eps_levels: float, seed: int, draw: int, first: int) -> np.ndarray:
    """(n, *shape) float32 random-start noise, uniform in +-eps_levels, of images ``first .. first + n - 1``: image
    i's from ``np.random.default_rng([seed, _PGD_STREAM, draw, i])`` (the one PGD random-start stream)."""
    return np.stack([np.random.default_rng([seed, _PGD_STREAM, draw, first + i]).uniform(-eps_levels, eps_levels,
                                                                                        tuple(shape))
                     for i in range(n)]).astype(np.float32)


def _seeded_pgd_class():
    class SeededPGD(ProjectedGradientDescentTensorFlowV2):
        """ART's TF-v2 PGD; the random start of image i is drawn from default_rng([seed, 1, draw, offset + i])."""

        def __init__(self, *args, seed: int, offset: int = 0, **kwargs):
            super().__init__(*args, **kwargs)
            self.seed, self.offset, self._draw = seed, offset, 0

        def _compute_tf(self, x, x_init, y, mask, eps, eps_step, momentum, random_init):
            if random_init:
                first = self.offset + self._batch_id * self.batch_size
                noise = _start_noise(tuple(x.shape[1:]), int(x.shape[0]), eps, self.seed, self._draw, first)
                self._draw += 1
                noise = tf.convert_to_tensor(noise)
                if mask is not None:
                    noise = noise * mask
                x = tf.clip_by_value(x + noise, *self.estimator.clip_values)
            return super()._compute_tf(x, x_init, y, mask, eps, eps_step, momentum, False)

        def generate(self, x, y=None, **kwargs):
            self._draw = 0
            return super().generate(x, y, **kwargs)

    return SeededPGD


def art_attack(classifier, attack: str, eps: float, targeted: bool, batch_size: int, seed: int = 0,
               offset: int = 0, seeded: bool = True):
    """The ART attack object for `attack` at `eps` (a fraction of the pixel range) with `SETTINGS`.

    ``seeded=False`` gives ART's own ``ProjectedGradientDescent`` for PGD (random start from the global
    ``np.random``), as the benchmark's baseline.
    """
    attack = _check_attack(attack)
    p = attack_parameters(attack, eps)
    e, step = eps * PIXEL_MAX, p["eps_step"] * PIXEL_MAX
    if attack == "fgsm":
        return FastGradientMethod(classifier, norm=np.inf, eps=e, eps_step=e, targeted=targeted, num_random_init=0,
                                  batch_size=batch_size, minimal=False)
    if attack == "bim":
        return BasicIterativeMethod(classifier, eps=e, eps_step=step, max_iter=p["max_iter"], targeted=targeted,
                                    batch_size=batch_size, verbose=False)
    kw = dict(norm=np.inf, eps=e, eps_step=step, max_iter=p["max_iter"], targeted=targeted,
              num_random_init=p["num_random_init"], batch_size=batch_size, verbose=False)
    if not seeded:
        return ProjectedGradientDescent(classifier, **kw)
    return _seeded_pgd_class()(classifier, seed=seed, offset=offset, **kw)


# ------------------------------------------------------------------------------------------ generate
def _model_key(zm, A, b) -> list:
    return [ccache.model_fingerprint(zm.model), A, b]


def _predict(zm, pixels: np.ndarray) -> np.ndarray:
    """The model's class for float pixels: `runner`'s fixed-batch forward pass, the package's one."""
    return runner.probabilities(zm.model, zm.normalize(pixels)).argmax(axis=1).astype(np.int64)


def _batches(n: int, size: int, progress, desc: str, first: int = 0):
    """(start, end) of each batch of images ``0 .. n - 1``, which are images ``first ..`` of their run: batches end
    where the run's multiples of `size` fall (every batch within one run-aligned step), with a progress bar
    (progress=None: shown only once a run has taken 2 s)."""
    ends = [e - first for e in range(first - first % size + size, first + n, size)] + [n]
    spans = list(zip([0] + ends[:-1], ends))
    if progress is False or len(spans) < 2:
        return spans
    return tqdm(spans, desc=desc, unit="batch", delay=0 if progress else 2.0)


def _run(zm, x: np.ndarray, labels: np.ndarray, targets: np.ndarray, attack: str, eps: float, targeted: bool,
         seed: int, batch_size: int, progress, first: int = 0, total: int | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """(adversarial float32 pixels, predicted int64) of `x`, images ``first ..`` of a run of `total`, batch by
    batch (`batch_size` rounded up to whole `LAYOUT_BLOCK`s, run-aligned); gradients in the run's layout."""
    clf = art_classifier(zm)
    goal = targets if targeted else labels
    onehot = np.eye(zm.num_classes, dtype=np.float32)[goal]
    adv = np.empty_like(x)
    pred = np.empty(len(x), np.int64)
    total = len(x) if total is None else total
    step = runner.round_up(batch_size, LAYOUT_BLOCK)
    clf.trace_first(min(LAYOUT_BLOCK, total))
    for s, e in _batches(len(x), step, progress, f"{attack.upper()} {zm.name}", first):
        attacker = art_attack(clf, attack, eps, targeted, e - s, seed=seed, offset=first + s)
        with clf.in_run_layout(first + s, total):
            a = np.asarray(attacker.generate(x[s:e], onehot[s:e]), dtype=np.float32)
        # ART's projection and clipping work in float32; keep the promise exactly
        a = np.clip(a, np.maximum(x[s:e] - np.float32(eps * PIXEL_MAX), 0.0),
                    np.minimum(x[s:e] + np.float32(eps * PIXEL_MAX), PIXEL_MAX))
        adv[s:e] = a
        pred[s:e] = _predict(zm, a)
    return adv, pred


def _random_start(x: np.ndarray, eps_levels: float, seed: int, first: int) -> np.ndarray:
    """PGD's start of images ``first, first + 1, ...``: the noise `SeededPGD` draws (`_start_noise`, draw 0),
    added and clipped to [0, 255] in float32 as ART does, then rounded to integers."""
    noise = _start_noise(x.shape[1:], len(x), eps_levels, seed, 0, first)
    return np.rint(np.clip(x + noise, np.float32(0.0), np.float32(PIXEL_MAX)))


def _run_grid(zm, x: np.ndarray, labels: np.ndarray, targets: np.ndarray, attack: str, eps: float, targeted: bool,
              seed: int, batch_size: int, progress, first: int = 0, total: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(adversarial float32 integer-valued pixels, predicted int64) of integer-valued `x`: the grid attack (module
    docstring), batch by batch; each image's result is independent of its batch (canonical-layout gradients)."""
    clf = art_classifier(zm)
    goal = targets if targeted else labels
    onehot = np.eye(zm.num_classes, dtype=np.float32)[goal]
    p = attack_parameters(attack, eps)
    k = np.float32(grid_levels(eps))
    step = np.float32(p["eps_step"] * PIXEL_MAX)
    direction = np.float32(-1.0 if targeted else 1.0)
    adv = np.empty_like(x)
    pred = np.empty(len(x), np.int64)
    for s, e in _batches(len(x), batch_size, progress, f"{attack.upper()} (grid) {zm.name}"):
        x0 = x[s:e]
        lo, hi = np.maximum(x0 - k, np.float32(0.0)), np.minimum(x0 + k, np.float32(PIXEL_MAX))
        a = np.clip(_random_start(x0, eps * PIXEL_MAX, seed, first + s), lo, hi) if p["num_random_init"] else x0.copy()
        for _ in range(p["max_iter"]):
            g = clf.canonical_loss_gradient(a, onehot[s:e])
            g = np.where(np.isnan(g), np.float32(0.0), g)
            a = np.clip(np.rint(a + step * (direction * np.sign(g))), lo, hi).astype(np.float32)
        adv[s:e] = a
        pred[s:e] = _predict(zm, a)
    return adv, pred


def _check_part(part, n: int) -> tuple[int, int]:
    """(first, total) of `generate`'s ``part`` (None: the images are the whole run)."""
    if part is None:
        return 0, n
    if not isinstance(part, (tuple, list)) or len(part) != 2:
        raise ValueError(f"part: expected (first, total), the images' place in a longer run, got {part!r}")
    first = checks.integer(part[0], "part's first", minimum=0)
    total = checks.integer(part[1], "part's total", minimum=first + n)
    return first, total


def _check_grid_images(x: np.ndarray, name: str) -> None:
    """grid=True needs clean images on the 8-bit grid: a ValueError naming the first image that is not."""
    off = np.array([(im != np.rint(im)).any() for im in x], bool)
    if off.any():
        i = int(np.flatnonzero(off)[0])
        where = tuple(int(j) for j in np.argwhere(x[i] != np.rint(x[i]))[0])
        raise ValueError(f"attack on model {name} with grid=True: images must hold integer pixel values (uint8 or "
                         f"integer-valued floats), but image {i} has {x[i][where]:g} at {where} "
                         f"({int(off.sum())} of {len(x)} images are off the grid); round them with attacks.stored "
                         "first, or use grid=False")


def generate(zoo_model, images: np.ndarray, *, labels, attack: str = "pgd", eps: float = 8 / 255,
             targeted: bool = False, seed: int = config.SEED, batch_size: int = 32, cache: bool = True,
             progress: bool | None = None, grid: bool = False, part: tuple[int, int] | None = None,
             images_key=None) -> AttackResult:
    """Adversarial examples of `images` against `zoo_model` (a zoo name or `zoo.ZooModel`).

    images: (N, H, W, 3) uint8 or float pixel values in [0, 255] at the model's input size
    (``zoo_model.input_shape``; use ``zoo_model.geometry`` on photographs). labels: (N,) true classes
    (required). attack: ``fgsm``, ``bim`` or ``pgd`` (settings in `SETTINGS`). eps: L-infinity budget as
    a fraction of the pixel range, in (0, 1]. targeted: aim at `target_classes` (seeded by `seed`);
    seed also draws PGD's random start. cache: reuse/store the result on disk (`causadv_lib.cache`).
    progress: a progress bar over batches (None: only for runs longer than 2 s). grid: stay on the 8-bit
    grid (module docstring): `images` must hold integers, every iterate is rounded, and the result is exactly
    representable as uint8, its success that of the stored image. batch_size: images per step (memory and
    progress); it never changes a result (float attacks: gradients in the run's layout of `LAYOUT_BLOCK`-image
    blocks; grid attacks: `runner`'s). part: ``(first, total)``: the images are images ``first .. first + N - 1``
    of a run of `total` images (a shard of it, `experiment`'s sharded runs), and get what they get in that run:
    its targets, PGD starts and gradient layout, so shards put together are the whole run bit for bit.
    images_key: a cache-key part standing for `images` in place of their bytes (the caller's promise: equal
    parts, equal images; `experiment` names its clean images by their cache entry and rows).
    """
    zm = zoo.resolve(zoo_model)
    attack = _check_attack(attack)
    eps = _check_eps(eps)
    if not isinstance(targeted, (bool, np.bool_)):
        raise ValueError(f"targeted must be True or False, got {targeted!r}")
    targeted = bool(targeted)
    if not isinstance(grid, (bool, np.bool_)):
        raise ValueError(f"grid must be True or False, got {grid!r}")
    grid = bool(grid)
    seed = checks.seed(seed)
    batch_size = checks.positive_int(batch_size, "batch_size")
    x = check_images(images, zm.input_shape, what=f"attack on model {zm.name}")
    y = _check_labels(labels, len(x), zm.num_classes, zm.name)
    if grid:
        _check_grid_images(x, zm.name)
    first, total = _check_part(part, len(x))
    A, b = _affine_normalize(zm)
    targets = target_classes(y, zm.num_classes, seed, first) if targeted else np.full(len(y), -1, np.int64)
    p = attack_parameters(attack, eps)
    meta = dict(attack=attack, eps=eps, targeted=targeted, seed=seed, model=zm.name, grid=grid, **p)
    if grid and p["eps_step"] * PIXEL_MAX <= 0.5:
        warnings.warn(f"{attack} with grid=True at eps={eps:g}: its step of {p['eps_step'] * PIXEL_MAX:g} grey "
                      "levels rounds back to where it started, so the attack moves no pixel", stacklevel=2)
    if len(x) == 0:
        return AttackResult(x.copy(), np.zeros(0, bool), np.zeros(0, np.int64), targets, y, **meta)

    def compute():
        adv, pred = (_run_grid if grid else _run)(zm, x, y, targets, attack, eps, targeted, seed, batch_size,
                                                  progress, first, total)
        return {"adversarial": adv, "predicted": pred}

    def wrong(a):
        """Why a cached entry cannot be this attack's result (None: it can): shapes and dtypes, the pixel
        range, the budget, on-grid-ness (grid: integers within the integer budget), and the stored predictions
        against the model's on the stored pixels."""
        for name, shape, dtype in (("adversarial", x.shape, np.float32), ("predicted", y.shape, np.int64)):
            if a[name].shape != shape or a[name].dtype != dtype:
                return f"{name} is {a[name].dtype} {a[name].shape}, expected {np.dtype(dtype)} {shape}"
        adv = a["adversarial"]
        if not np.isfinite(adv).all() or adv.min() < 0.0 or adv.max() > PIXEL_MAX:
            return "adversarial pixels outside [0, 255] or not finite"
        if np.abs(adv - x).max() > np.float32(eps * PIXEL_MAX) * (1 + 1e-6):
            return f"a perturbation exceeds the budget eps = {eps:g}"
        if grid and not np.array_equal(adv, np.rint(adv)):
            return "a grid result holds pixels off the 8-bit grid (not integers)"
        if grid and np.abs(adv - x).max() > grid_levels(eps):
            return f"a perturbation exceeds the integer budget of {grid_levels(eps)} grey levels"
        if not np.array_equal(_predict(zm, adv), a["predicted"]):
            return "its predictions differ from the model's on its adversarial pixels"
        return None

    entry = ""
    if cache:
        pixels = ccache.key(x) if images_key is None else ["images", images_key]
        parts = [_model_key(zm, A, b), pixels, y, targets, attack, eps, p["eps_step"], p["max_iter"],
                 p["num_random_init"], targeted, seed, "inf", "grid", grid, "part", first, total, "layout",
                 LAYOUT_BLOCK, runner.MICRO_BATCH, zm.input_shape, __version__, art.__version__, _IMPL_VERSION]
        entry = ccache.entry_key("attacks", parts, (__name__,))
        got = ccache.cached("attacks", parts, compute, required=("adversarial", "predicted"), validate=wrong,
                            code=(__name__,), mapped=("adversarial",))
    else:
        got = compute()
    adv, pred = got["adversarial"], got["predicted"]
    return AttackResult(adv, _success(pred, y, targets, targeted), pred, targets, y, **meta, entry=entry)


def _success(pred: np.ndarray, labels: np.ndarray, targets: np.ndarray, targeted: bool) -> np.ndarray:
    return (pred == targets) if targeted else (pred != labels)
