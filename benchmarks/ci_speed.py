"""CI speed, side by side in one process: plain forward pass, closed form, generic split, naive ablation.

    .venv/bin/python benchmarks/ci_speed.py            # all four models, ~3-4 min on 2 cores
    .venv/bin/python benchmarks/ci_speed.py --models vgg16_bn_cifar10 --repeats 5

Prints one line per model:
``MODEL forward_ms=.. ci_ms=.. ratio=.. generic_ms=.. naive_ms=.. speedup_vs_naive=..``
(all per image). ``forward_ms``: the model's compiled forward pass (`runner.probabilities`), which
runs the same canonical micro-batches as the CI (`runner.MICRO_BATCH` images per call, whatever the
caller's batch size). ``ci_ms``: `ci.counterfactual_information` with ``method="auto"`` (the closed
form on all four models) in its canonical layout: the trunk on MICRO_BATCH images per call, the head on
`ci.images_per_call` images (a divisor of it within the head budget), so that every CI vector is
bit-identical however it is batched; the timed image counts are multiples of MICRO_BATCH (no padding). ``generic_ms``: ``method="generic"`` on a few
images. ``naive_ms``: one full forward pass per removed filter (`ci.reference_ablation`), timed on a
subset of filters and scaled to all K. Each number is the median of ``--repeats`` timed runs after
one untimed warm-up (tracing); forward and CI runs alternate so that machine noise hits both alike.
Inputs are random uint8 images through each model's preprocessing (timing does not depend on them).
Targets: ratio <= 1.5 for the three zoo models, <= 2.5 for VGG16 at 224; speedup_vs_naive >= 300 on
``vgg16_bn_cifar10``.
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

from causadv_lib import ci, config, runner  # noqa: E402

#: model -> (images timed for forward and CI, images for generic, (filters, images) for naive)
PLAN = {
    "vgg16_bn_cifar10": (64, 16, (16, 8)),
    "resnet56_cifar10": (64, 16, (8, 8)),
    "mobilenet_v2_imagenet": (32, 2, (8, 4)),
    "vgg16_224_random": (32, 1, (4, 2)),
}
BATCH = 32
TARGET_RATIO = {"vgg16_bn_cifar10": 1.5, "resnet56_cifar10": 1.5, "mobilenet_v2_imagenet": 1.5,
                "vgg16_224_random": 2.5}
TARGET_SPEEDUP = {"vgg16_bn_cifar10": 300}


def load(name: str, n: int):
    """(keras model, CI layer, preprocessed random inputs)."""
    rng = np.random.default_rng(config.SEED)
    if name == "vgg16_224_random":
        import keras
        from causadv_lib import zoo
        keras.utils.set_random_seed(config.SEED)
        model = zoo.split_softmax(keras.applications.VGG16(weights=None), name="vgg16_224_random")
        pixels = rng.integers(0, 256, (n, 224, 224, 3)).astype(np.float32)
        x = keras.applications.vgg16.preprocess_input(pixels)
        return model, "block5_conv3", np.ascontiguousarray(x, np.float32)
    from causadv_lib import zoo
    zm = zoo.get(name)
    pixels = rng.integers(0, 256, (n, *zm.input_shape), dtype=np.uint8)
    return zm.model, zm.ci_layer, zm.preprocess(pixels)


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls of `fn` after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def bench(name: str, repeats: int) -> dict:
    n, n_generic, (n_filters, n_naive) = PLAN[name]
    model, layer, x = load(name, n)
    K = ci.num_filters(model, layer)
    path = ci.closed_form_pattern(model, layer) or "generic"
    batch = ci.images_per_call(model, layer)           # images per head call (the trunk: ci.MICRO_BATCH)
    forward = lambda: runner.probabilities(model, x, batch_size=BATCH)  # noqa: E731
    fast = lambda: ci.counterfactual_information(model, x, layer, batch_size=BATCH, progress=False)  # noqa: E731
    forward(), fast()                                   # warm-up (tracing) for both
    f_s, c_s = [], []
    for _ in range(repeats):                            # alternate: noise hits both alike
        t = time.perf_counter()
        forward()
        f_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        fast()
        c_s.append(time.perf_counter() - t)
    forward_ms = statistics.median(f_s) / n * 1e3
    ci_ms = statistics.median(c_s) / n * 1e3
    g_rep = max(1, repeats // 2)
    generic_ms = timed(lambda: ci.counterfactual_information(model, x[:n_generic], layer, method="generic",
                                                             batch_size=BATCH, progress=False), g_rep) / n_generic * 1e3
    filters = np.linspace(0, K - 1, n_filters).astype(int)
    naive_s = timed(lambda: ci.reference_ablation(model, x[:n_naive], layer, filters=filters,
                                                  batch_size=n_naive, progress=False), g_rep)
    naive_ms = naive_s * (K + 1) / (n_filters + 1) / n_naive * 1e3     # K removals + the unablated pass
    return dict(model=name, layer=layer, K=K, path=path, images=n, batch=batch,
                forward_ms=forward_ms, ci_ms=ci_ms, ratio=ci_ms / forward_ms, generic_ms=generic_ms,
                naive_ms=naive_ms, speedup_vs_naive=naive_ms / ci_ms)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(PLAN), choices=list(PLAN))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    import tensorflow as tf
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}, "
          f"float32, repeats={args.repeats}; all times in ms per image", flush=True)
    rows, ok = [], True
    for name in args.models:
        r = bench(name, args.repeats)
        rows.append(r)
        print(f"{name} forward_ms={r['forward_ms']:.2f} ci_ms={r['ci_ms']:.2f} ratio={r['ratio']:.2f} "
              f"generic_ms={r['generic_ms']:.1f} naive_ms={r['naive_ms']:.0f} "
              f"speedup_vs_naive={r['speedup_vs_naive']:.0f}", flush=True)
        print(f"#   layer={r['layer']} K={r['K']} path={r['path']} images={r['images']} batch={r['batch']}")
        checks = [(r["ratio"] <= TARGET_RATIO[name], f"ratio {r['ratio']:.2f} <= {TARGET_RATIO[name]}")]
        if name in TARGET_SPEEDUP:
            checks.append((r["speedup_vs_naive"] >= TARGET_SPEEDUP[name],
                           f"speedup {r['speedup_vs_naive']:.0f} >= {TARGET_SPEEDUP[name]}"))
        for good, text in checks:
            ok &= good
            print(f"#   target {text}: {'met' if good else 'MISSED'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
