"""`ZooModel`: a classifier with everything needed to run it on uint8 images and to compute CI vectors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import PIL

from .. import runner
from ..cache import callable_key

#: the datasets a zoo model can belong to (`ZooModel.dataset`, or None)
DATASETS = ("imagenet", "cifar10")
#: what the wrapped Keras model output (`ZooModel.outputs`)
OUTPUTS = ("probabilities", "logits")


@dataclass(frozen=True, eq=False)
class ZooModel:
    """A classifier with everything needed to run it on uint8 RGB images and to compute CI vectors.

    `preprocess`: uint8 RGB images ((N, H, W, 3) array or list of (H, W, 3)) -> float32 model inputs.
    `normalize` (optional): float pixel values in [0, 255] already at `input_shape` -> model inputs
    (for attacks that work on float pixels). `ci_layer`: name of the layer whose output is the
    default CI layer (the last convolution's output after its activation). `geometry` (optional):
    uint8 RGB images -> uint8 (N, *input_shape) at the model's input size (resize/crop only), so that
    ``preprocess(images) == normalize(geometry(images))``. `outputs`: what the wrapped Keras model
    output, ``"probabilities"`` or ``"logits"``; either way `model` outputs probabilities (for a logit
    model, `custom` appends a Softmax layer, whose input are the logits).
    """

    name: str
    model: keras.Model
    preprocess: Callable[..., np.ndarray]
    class_names: tuple[str, ...]
    ci_layer: str
    input_shape: tuple[int, int, int]
    dataset: str | None = None
    normalize: Callable[[np.ndarray], np.ndarray] | None = None
    geometry: Callable[..., np.ndarray] | None = None
    outputs: str = "probabilities"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def predict_inputs(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, classes) float32 of already preprocessed inputs `x`."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"{self.name}: expected inputs of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {x.shape}")
        if not len(x):
            return np.zeros((0, self.num_classes), np.float32)
        return runner.probabilities(self.model, x, batch_size=batch_size)  # the one fixed-batch forward pass

    def inputs_key(self, pool, indices, fn: Callable | None = None) -> list | None:
        """A cache-key part standing for ``fn(pool.load(indices))`` (`fn` default: `preprocess`) without decoding
        an image: the content hashes of the pool's files (`ImagePool.fingerprint`) and the name of `fn`
        (`cache.callable_key`), with PIL's version (it resizes). None when either is unknown (a pool or a
        function of yours): then key the preprocessed inputs themselves. A result keyed by this part must
        name ``causadv_lib.data`` and ``causadv_lib.preprocess`` in its cache `code`."""
        files, pre = pool.fingerprint(indices), callable_key(self.preprocess if fn is None else fn)
        return None if files is None or pre is None else ["pool inputs", files, pre, PIL.__version__]

    def predict(self, images, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, classes) float32 of uint8 RGB images (preprocessed batch by batch)."""
        imgs = images if isinstance(images, np.ndarray) else list(images)
        if isinstance(imgs, np.ndarray) and imgs.ndim != 4:
            self.preprocess(imgs)  # raises the preprocessing's error for a malformed batch
        out = [self.predict_inputs(self.preprocess(imgs[i:i + batch_size]), batch_size)
               for i in range(0, len(imgs), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)


def name_of(zm) -> str:
    """The name to show for a zoo model (or a look-alike): its name, else its Keras model's."""
    return getattr(zm, "name", None) or getattr(getattr(zm, "model", None), "name", "?")

