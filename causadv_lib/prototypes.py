"""One prototype per class (paper section 3.2) with its CI vector.

The prototype of class c is the correctly classified instance of c in the prototype pool with the
highest predicted probability p_c. Where the model's logits can be read, p_c is ranked by its exact
log-probability, log p_c = -log1p(sum_{j != c} exp(z_j - z_c)) in float64: saturated models give many
instances whose float32 p_c is 1.0 (or 0.99999994, depending on the row's position in the batch: the
softmax kernel rounds differently), and the log-probability still orders them. Remaining ties go to
the lower pool index, so the choice is deterministic. A class without any correctly classified
instance is reported in ``missing`` (its row holds index -1, id "", NaN probability and CI), never
silently dropped: the three entry points warn (`MissingPrototypesWarning`) how many classes, and which,
got no prototype.

Three entry points, by what you have:

    >>> protos = from_images(zm, uint8_images, labels)          # a ZooModel (zoo.get / zoo.custom) and images
    >>> protos = for_pool(zm, data.pool("cifar10_prototypes"))  # a ZooModel and an ImagePool (cached)
    >>> protos = select_prototypes(keras_model, inputs, labels, ids, layer=...)  # preprocessed model inputs
    >>> protos.vector(3)                 # CI vector of class 3's prototype
    >>> protos.save(path); Prototypes.load(path)
"""
from __future__ import annotations

import dataclasses
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from . import __version__, logprob, runner
from . import cache as ccache
from . import ci as _ci
from .data import DataError, ImagePool
from .io import atomic_write_bytes
from .spread import spread
from .zoo import ZooModel


class MissingPrototypesWarning(UserWarning):
    """Some classes got no prototype: no image of theirs among those searched was correctly classified.
    Strategies 2 and 4 do not count samples predicted as these classes (`Prototypes.missing` lists them)."""


#: classes named in the warning before "and N more"
_NAMED_MISSING = 5


def _warn_missing(p: "Prototypes", searched: int, class_names=None) -> None:
    """`MissingPrototypesWarning` when `p` has classes without a prototype, attributed to the caller of the
    public function that calls this."""
    if not p.missing:
        return
    named = [f"{c} ({class_names[c]!r})" if class_names is not None else str(c) for c in p.missing[:_NAMED_MISSING]]
    more = len(p.missing) - len(named)
    which = ("class " if len(p.missing) == 1 else "classes ") + ", ".join(named) + (f" and {more} more" if more else "")
    warnings.warn(f"{len(p.missing)} of {p.num_classes} classes have no prototype: no correctly classified image of "
                  f"{which} among the {searched} images searched; strategies 2 and 4 do not count samples predicted "
                  "as these classes (Prototypes.missing lists them)", MissingPrototypesWarning, stacklevel=3)


@dataclass(frozen=True)
class Prototypes:
    """Per class c (row c): pool index, image id, predicted probability and CI vector of its prototype."""

    index: np.ndarray          # (C,) int64, -1 where missing
    ids: tuple[str, ...]       # (C,) image ids, "" where missing
    probability: np.ndarray    # (C,) float32, NaN where missing
    ci: np.ndarray             # (C, K) float32, NaN rows where missing
    layer: str
    definition: str
    missing: tuple[int, ...]   # classes without a correctly classified instance

    @property
    def num_classes(self) -> int:
        return len(self.index)

    @property
    def classes(self) -> tuple[int, ...]:
        """The classes that have a prototype, in class order."""
        return tuple(int(c) for c in np.flatnonzero(self.index >= 0))

    def vector(self, c: int) -> np.ndarray:
        """CI vector of class `c`'s prototype; KeyError if the class has none."""
        if not 0 <= c < self.num_classes:
            raise KeyError(f"class {c} outside 0..{self.num_classes - 1}")
        if c in self.missing:
            raise KeyError(f"class {c} has no prototype: no correctly classified instance in the pool")
        return self.ci[c]

    def save(self, path) -> tuple[Path, Path]:
        """Write ``PATH.npz`` (arrays) and ``PATH.json`` (ids, layer, definition, missing) atomically."""
        base = Path(path).with_suffix("")
        npz, js = base.with_suffix(".npz"), base.with_suffix(".json")
        buf = io.BytesIO()
        np.savez(buf, index=self.index, probability=self.probability, ci=self.ci)
        atomic_write_bytes(npz, buf.getvalue())
        meta = {"ids": list(self.ids), "layer": self.layer, "definition": self.definition,
                "missing": list(self.missing)}
        atomic_write_bytes(js, (json.dumps(meta, indent=1) + "\n").encode())
        return npz, js

    @classmethod
    def load(cls, path) -> "Prototypes":
        """Read what `save` wrote (no pickle)."""
        base = Path(path).with_suffix("")
        with np.load(base.with_suffix(".npz"), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(base.with_suffix(".json").read_text())
        return cls(index=arrays["index"], ids=tuple(meta["ids"]), probability=arrays["probability"],
                   ci=arrays["ci"], layer=meta["layer"], definition=meta["definition"],
                   missing=tuple(int(c) for c in meta["missing"]))


def _is_zoo_model(obj) -> bool:
    return isinstance(obj, ZooModel)


def _keras_model_name(obj) -> str | None:
    return obj.name if isinstance(obj, keras.Model) else None


def select_prototypes(model, images, labels, ids, *, layer=None, definition: str = "probability",
                      outputs: str = "probabilities", num_classes: int | None = None, batch_size: int = 64,
                      progress: bool | None = None) -> Prototypes:
    """The prototype of every class among `images` (preprocessed model inputs, read batch by batch).

    model: a Keras model (for a ZooModel and uint8 images use `from_images`). labels: (N,) true classes;
    ids: (N,) image ids stored with the prototypes. num_classes defaults to the model's number of
    outputs. The CI vectors use `ci.counterfactual_information` with `layer`, `definition` and `outputs`.
    Classes without a correctly classified image are warned about (`MissingPrototypesWarning`).
    """
    if _is_zoo_model(model):
        raise TypeError(f"select_prototypes takes a Keras model and preprocessed model inputs, got the ZooModel "
                        f"{model.name!r}: use prototypes.from_images({model.name!r} zoo model, uint8_images, labels) "
                        "(it preprocesses them), or select_prototypes(zoo_model.model, zoo_model.preprocess(images), "
                        "labels, ids, layer=zoo_model.ci_layer)")
    if len(images):
        first = np.asarray(images[:1])
        if not np.issubdtype(first.dtype, np.floating):
            raise ValueError(f"images have dtype {first.dtype}; select_prototypes expects float model inputs "
                             "(already preprocessed). For raw uint8 images use prototypes.from_images(zoo_model, "
                             "images, labels), which preprocesses them")
    labels = np.asarray(labels, np.int64)
    ids = [str(i) for i in ids]
    if not len(images) == len(labels) == len(ids):
        raise ValueError(f"images, labels and ids differ in length: {len(images)}, {len(labels)}, {len(ids)}")
    probs, logits = runner.with_logits(model, images, outputs=outputs, batch_size=batch_size)
    C = probs.shape[1] if num_classes is None else int(num_classes)
    bad = np.unique(labels[(labels < 0) | (labels >= C)])
    if bad.size:
        raise ValueError(f"labels must be in [0, {C}), got values {bad[:5]}")
    rows = np.arange(len(labels))
    if logits is not None:
        score = logprob.log_prob(logits, labels)
        p_true = np.exp(score).astype(np.float32)
        correct = logits.argmax(axis=1) == labels
    else:
        score = p_true = probs[rows, labels]
        correct = probs.argmax(axis=1) == labels
    index = np.full(C, -1, np.int64)
    for c in range(C):
        cand = np.flatnonzero(correct & (labels == c))
        if len(cand):
            index[c] = cand[np.lexsort((cand, -score[cand]))[0]]  # most confident, then lowest index
    have = np.flatnonzero(index >= 0)
    chosen = np.stack([np.asarray(images[int(i)], np.float32) for i in index[have]]) if len(have) else None
    layer = _ci.default_layer(model) if layer is None else getattr(layer, "name", layer)
    ci = np.full((C, _ci.num_filters(model, layer)), np.nan, np.float32)
    if chosen is not None:
        res = _ci.counterfactual_information(model, chosen, layer, target=have, definition=definition,
                                             outputs=outputs, batch_size=batch_size, progress=progress)
        ci[have] = res.ci
    probability = np.full(C, np.nan, np.float32)
    probability[have] = p_true[index[have]]
    found = Prototypes(index=index, ids=tuple(ids[i] if i >= 0 else "" for i in index), probability=probability,
                       ci=ci, layer=layer, definition=definition,
                       missing=tuple(int(c) for c in np.flatnonzero(index < 0)))
    _warn_missing(found, len(labels))
    return found


def for_pool(zoo_model, pool, *, limit: int | None = None, definition: str = "probability",
             cache: bool = True, batch_size: int = 64, progress: bool | None = None) -> Prototypes:
    """Prototypes of a zoo model (`zoo.ZooModel`) over an image pool (`data.ImagePool`).

    limit: search only `limit` images evenly spread over the pool (pools are class-ordered, so every
    class keeps candidates); None searches the whole pool. `index` and `ids` refer to the pool.
    With `cache`, the result is stored under `config.cache_dir()/prototypes`, keyed by everything it
    depends on: the model (architecture and weights), its CI layer, the inputs (the pool's file hashes and the
    preprocessing's name when both are known, `ZooModel.inputs_key`, else the preprocessed input bytes), their
    ids, pool indices and labels, the class count, the definition, the CI layout, the library version
    and the source code of `prototypes` and `ci` (`cache.cached`). A corrupted entry is reported with a
    warning, deleted and recomputed. Classes without a correctly classified image among those searched are
    warned about (`MissingPrototypesWarning`).
    """
    found, searched = _for_pool(zoo_model, pool, limit=limit, definition=definition, cache=cache,
                                batch_size=batch_size, progress=progress)
    _warn_missing(found, searched, pool.class_names)
    return found


def _for_pool(zoo_model, pool, *, limit, definition, cache, batch_size, progress) -> tuple[Prototypes, int]:
    """`for_pool` without the warning, and the number of images searched."""
    if not _is_zoo_model(zoo_model):
        name = _keras_model_name(zoo_model)
        raise TypeError(f"for_pool takes a ZooModel, got {type(zoo_model).__name__}"
                        + (f" {name!r}: wrap it with zoo.custom(model, preprocess) first" if name else
                           " (zoo.get(name) or zoo.custom(keras_model, preprocess))"))
    if not isinstance(pool, ImagePool):
        raise TypeError(f"for_pool takes an ImagePool (data.pool(name), ImagePool.from_arrays(images, labels)), got "
                        f"{type(pool).__name__}; for images in an array use prototypes.from_images(zoo_model, "
                        "images, labels)")
    idx = spread(len(pool), limit)
    ids = [pool.ids[i] for i in idx]
    labels = np.asarray(pool.labels, np.int64)[idx]
    num_classes = len(pool.class_names)

    def inputs():
        return np.concatenate([zoo_model.preprocess(pool.load(idx[i:i + batch_size]))
                               for i in range(0, len(idx), batch_size)])
    # the pool's file hashes stand for the inputs when it knows them (no image decoded on a cache hit)
    inputs_key = zoo_model.inputs_key(pool, idx) if cache else None
    images = inputs() if inputs_key is None else None

    def compute():
        x = inputs() if images is None else images
        with warnings.catch_warnings():   # for_pool and from_images warn themselves, on a cache hit too
            warnings.simplefilter("ignore", MissingPrototypesWarning)
            found = select_prototypes(zoo_model.model, x, labels, ids, layer=zoo_model.ci_layer,
                                      definition=definition, num_classes=num_classes,
                                      batch_size=batch_size, progress=progress)
        found = dataclasses.replace(found, index=np.where(found.index >= 0, idx[np.maximum(found.index, 0)], -1))
        return _to_arrays(found)

    if cache:
        got = ccache.cached("prototypes", [ccache.model_fingerprint(zoo_model.model), zoo_model.ci_layer,
                                           images if inputs_key is None else inputs_key, ids, labels, num_classes,
                                           idx, definition, _ci.layout_key(), __version__],
                            compute, required=_ARRAYS, validate=_wrong_arrays,
                            code=(__name__, _ci, "causadv_lib.data", "causadv_lib.preprocess"))
    else:
        got = compute()
    return _from_arrays(got), len(idx)


_ARRAYS = ("index", "ids", "probability", "ci", "layer", "definition", "missing")


def _to_arrays(p: Prototypes) -> dict[str, np.ndarray]:
    """`p` as plain arrays for the cache (strings as unicode arrays, no pickle)."""
    return {"index": p.index, "ids": np.array(p.ids, dtype=str), "probability": p.probability, "ci": p.ci,
            "layer": np.array(p.layer), "definition": np.array(p.definition),
            "missing": np.array(p.missing, dtype=np.int64)}


def _from_arrays(a: dict) -> Prototypes:
    return Prototypes(index=a["index"], ids=tuple(str(i) for i in a["ids"]), probability=a["probability"],
                      ci=a["ci"], layer=str(a["layer"]), definition=str(a["definition"]),
                      missing=tuple(int(c) for c in a["missing"]))


def _wrong_arrays(a: dict) -> str | None:
    """Why a cache entry's arrays cannot be prototypes (None when they can)."""
    C = a["index"].shape[0] if a["index"].ndim == 1 else -1
    if C < 0 or a["ids"].shape != (C,) or a["probability"].shape != (C,) or a["ci"].ndim != 2 \
            or a["ci"].shape[0] != C or a["layer"].ndim or a["definition"].ndim or a["missing"].ndim != 1:
        return "arrays of inconsistent shapes: " + ", ".join(f"{k} {a[k].shape}" for k in _ARRAYS)
    return None


def with_definition(found: Prototypes, zoo_model, pool, definition: str, *, cache: bool = True,
                    batch_size: int = 64, progress: bool | None = None) -> Prototypes:
    """`found` (prototypes of `zoo_model` over `pool`, `for_pool`) with its CI vectors under `definition`: the
    same images, since the choice ranks p_c, which no CI definition changes, and only their CI vectors computed
    (C images, not the pool's forward pass again); equal to ``for_pool(zoo_model, pool, definition=definition)``
    with the same limit."""
    if definition == found.definition:
        return found
    have = np.flatnonzero(found.index >= 0)
    ci = np.full_like(found.ci, np.nan)
    if len(have):
        x = np.asarray(zoo_model.preprocess(pool.load(found.index[have])), np.float32)
        ci[have] = _ci.counterfactual_information(zoo_model.model, x, found.layer, target=have, definition=definition,
                                                  batch_size=batch_size, cache=cache, progress=progress).ci
    return dataclasses.replace(found, ci=ci, definition=definition)


def from_images(zoo_model, images, labels, ids=None, *, definition: str = "probability", cache: bool = False,
                batch_size: int = 64, progress: bool | None = None) -> Prototypes:
    """The prototypes of `zoo_model` among your own images: uint8 RGB images and their labels in,
    prototypes out.

    zoo_model: a ZooModel (`zoo.get(name)`, or `zoo.custom(keras_model, preprocess)` for your model);
    images: uint8 RGB, an (N, H, W, 3) array or a list of (H, W, 3) arrays (preprocessed here with
    ``zoo_model.preprocess``); labels: (N,) true classes in [0, zoo_model.num_classes); ids: (N,) unique
    names stored with the prototypes (default "0", "1", ...: ``index`` and ``ids`` refer to positions in
    `images`). CI vectors use the zoo model's CI layer and `definition`. cache: store the result as
    `for_pool` does (keyed by the model, the images and everything else it depends on). Classes without a
    correctly classified image are warned about (`MissingPrototypesWarning`).
    """
    if not _is_zoo_model(zoo_model):
        name = _keras_model_name(zoo_model)
        raise TypeError(f"from_images takes a ZooModel, got {type(zoo_model).__name__}"
                        + (f" {name!r}: wrap it first, zm = zoo.custom(model, preprocess), or pass preprocessed "
                           "inputs to select_prototypes(model, inputs, labels, ids)" if name else
                           " (zoo.get(name), or zoo.custom(keras_model, preprocess) for your own model)"))
    arr = images if isinstance(images, np.ndarray) else None
    if arr is not None and arr.dtype != np.uint8:
        raise ValueError(f"images have dtype {arr.dtype}; from_images expects uint8 RGB images (it preprocesses them "
                         f"with {zoo_model.name}'s preprocess). For model inputs that are already preprocessed use "
                         "select_prototypes(zoo_model.model, inputs, labels, ids, layer=zoo_model.ci_layer)")
    labels = np.asarray(labels)
    try:
        pool = ImagePool.from_arrays(images, labels, zoo_model.class_names, ids, name=f"{zoo_model.name}_images")
    except DataError as e:
        raise ValueError(str(e)) from None
    found, searched = _for_pool(zoo_model, pool, limit=None, definition=definition, cache=cache,
                                batch_size=batch_size, progress=progress)
    _warn_missing(found, searched, zoo_model.class_names)
    return found


def causal_overlap(vectors) -> np.ndarray:
    """Jaccard overlap of the causal-filter sets ({k: CI_k > 0}) of CI vectors, pairwise: (n, n) in [0, 1]
    (two empty sets overlap by 0). Section 3.2's point: different classes rely on different filters."""
    sets = [set(np.flatnonzero(np.asarray(v) > 0)) for v in vectors]
    return np.array([[len(a & b) / max(len(a | b), 1) for b in sets] for a in sets])
