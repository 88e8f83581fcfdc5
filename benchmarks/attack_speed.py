"""Attack speed, side by side in one process: `attacks.generate` against ART used plainly.

    .venv/bin/python benchmarks/attack_speed.py              # both models, ~2-3 min on 2 cores
    .venv/bin/python benchmarks/attack_speed.py --models vgg16_bn_cifar10 --repeats 5

Prints one line per (model, attack):
``MODEL ATTACK lib_ms=.. art_ms=.. ratio=.. lib_success=.. art_success=.. same_pixels=..`` (times per
image). ``lib_ms``: ``attacks.generate(..., cache=False)``, everything included (input checks, the
normalisation probe, ART's attack on `attacks.CompiledGradientClassifier` whose loss gradient is one
``tf.function``, and the prediction on the adversarial images). ``art_ms``: the same ART attack class,
images and parameters (`attacks.SETTINGS`, untargeted, eps 8/255, same batch size) on ART's plain
``TensorFlowV2Classifier`` (eager ``loss_gradient``, ART's default mean loss) over the same
pixel-space logits network; ART's own ``ProjectedGradientDescent`` for PGD (random start from the
global ``np.random``); the prediction is not timed. ``ratio`` = art_ms / lib_ms (> 1: the library is
faster). ``same_pixels``: fraction of adversarial pixels equal in both (PGD's random starts differ).
Each time is the median of ``--repeats`` runs after one untimed warm-up (tracing); library and plain
runs alternate so that machine noise hits both alike. Images: the first images of the committed
evaluation samples (CIFAR-10 test images for VGG16-BN, ImageNet validation images for MobileNetV2).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from causadv_lib import attacks, data, samples  # noqa: E402

#: model -> (pool, images timed, batch size)
PLAN = {
    "vgg16_bn_cifar10": ("cifar10_eval", 16, 16),
    "mobilenet_v2_imagenet": ("imagenet_eval", 4, 4),
}
EPS = 8 / 255


def load(name: str, pool_name: str, n: int):
    """(zoo model, uint8 images at the input size, labels): the first n images of the evaluation sample."""
    from causadv_lib import zoo

    zm = zoo.get(name)
    sample = samples.load_list(name, pool_name)
    pool = data.pool(pool_name)
    idx = pool.index_of(sample.ids[:: max(1, len(sample.ids) // n)][:n])
    return zm, zm.geometry(pool.load(idx)), pool.labels[idx]


def bench(name: str, attack: str, repeats: int, cached: dict) -> dict:
    pool_name, n, batch = PLAN[name]
    if name not in cached:
        cached[name] = load(name, pool_name, n)
    zm, images, labels = cached[name]
    x = images.astype(np.float32)
    plain_clf = attacks.art_classifier(zm, compiled=False)
    onehot = np.eye(zm.num_classes, dtype=np.float32)[labels]
    out = {}

    def lib():
        out["lib"] = attacks.generate(zm, images, labels=labels, attack=attack, eps=EPS, batch_size=batch,
                                      cache=False, progress=False)

    def plain():
        art = attacks.art_attack(plain_clf, attack, EPS, False, batch, seeded=False)
        out["art"] = np.asarray(art.generate(x, onehot), np.float32)

    lib(), plain()                                       # warm-up (tracing) for both
    lib_s, art_s = [], []
    for _ in range(repeats):                             # alternate: noise hits both alike
        t = time.perf_counter()
        lib()
        lib_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        plain()
        art_s.append(time.perf_counter() - t)
    lib_ms = statistics.median(lib_s) / n * 1e3
    art_ms = statistics.median(art_s) / n * 1e3
    art_pred = zm.predict_inputs(zm.normalize(out["art"]), batch_size=batch).argmax(axis=1)
    return dict(model=name, attack=attack, images=n, batch=batch, lib_ms=lib_ms, art_ms=art_ms,
                ratio=art_ms / lib_ms, lib_success=out["lib"].success_rate,
                art_success=float((art_pred != labels).mean()),
                same_pixels=float((out["lib"].adversarial == out["art"]).mean()),
                linf=float(np.abs(out["lib"].adversarial - x).max()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(PLAN), choices=list(PLAN))
    ap.add_argument("--attacks", nargs="+", default=list(attacks.ATTACKS), choices=list(attacks.ATTACKS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    import art
    import tensorflow as tf
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}, "
          f"ART {art.__version__}, float32, eps=8/255 untargeted, repeats={args.repeats}; times in ms per image",
          flush=True)
    rows, cached = [], {}
    for name in args.models:
        for attack in args.attacks:
            r = bench(name, attack, args.repeats, cached)
            rows.append(r)
            print(f"{name} {attack} lib_ms={r['lib_ms']:.1f} art_ms={r['art_ms']:.1f} ratio={r['ratio']:.2f} "
                  f"lib_success={r['lib_success']:.2f} art_success={r['art_success']:.2f} "
                  f"same_pixels={r['same_pixels']:.3f}", flush=True)
        print(f"#   {name}: images={r['images']} batch={r['batch']} max|adv - x|={r['linf']:.3f} grey levels")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
