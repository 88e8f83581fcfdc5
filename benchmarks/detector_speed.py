"""Detector speed, side by side in one process: a forward pass, `CausAdvDetector.detect`, feature squeezing.

    .venv/bin/python benchmarks/detector_speed.py                       # vgg16_bn_cifar10, ~2 min on 2 cores
    .venv/bin/python benchmarks/detector_speed.py --model resnet20_cifar10 --images 256 --repeats 5

Prints one line: ``MODEL forward_ms=.. detect_ms=.. ratio=.. squeeze_ms=.. ratio_squeeze=..`` (per image).
``forward_ms``: the model's compiled forward pass (`runner.probabilities`, the same canonical micro-batches the
CI uses). ``detect_ms``: `CausAdvDetector.detect` (CI vector of every image, each strategy's score against the
prototypes, the combined score), fitted once beforehand on clean images of the evaluation pool (not timed).
``squeeze_ms``: `peers.FeatureSqueezingDetector.detect` (a prediction on the input and on each squeezed version).
Each number is the median of ``--repeats`` timed runs after one untimed warm-up (tracing); the three alternate
within each repeat, so that machine noise hits all alike. Target (the detector issue): ratio <= 2.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from causadv_lib import config, data, peers, runner, spread, zoo  # noqa: E402
from causadv_lib.detector import CausAdvDetector  # noqa: E402


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=config.EXPERIMENT_MODELS["cifar10"])
    ap.add_argument("--images", type=int, default=256, help="images timed per run (a multiple of 16 is best)")
    ap.add_argument("--fit-images", type=int, default=1000, help="clean images the detectors are fitted on")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    zm = zoo.resolve(args.model)
    pool = data.pool({"cifar10": "cifar10_eval", "imagenet": "imagenet_eval"}[zm.dataset])
    order = spread.spread(len(pool), min(len(pool), args.fit_images + args.images))
    fit, timed = order[::2][:args.fit_images], order[1::2][:args.images]
    geometry = zm.geometry or (lambda images: images)
    x_fit, y_fit = geometry(pool.load(fit)), np.asarray(pool.labels)[fit]
    x = geometry(pool.load(timed)).astype(np.float32)
    det = CausAdvDetector(zm)
    det.fit(x_fit, y_fit)
    squeeze = peers.FeatureSqueezingDetector(zm)
    squeeze.fit(x_fit, y_fit)
    runs = {"forward": lambda: runner.probabilities(zm.model, zm.normalize(x)),
            "detect": lambda: det.detect(x), "squeeze": lambda: squeeze.detect(x)}
    for fn in runs.values():                                  # warm-up: tracing
        fn()
    times = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            times[k].append(_timed(fn))
    ms = {k: 1000 * statistics.median(v) / len(x) for k, v in times.items()}
    print(f"{zm.name} images={len(x)} forward_ms={ms['forward']:.3f} detect_ms={ms['detect']:.3f} "
          f"ratio={ms['detect'] / ms['forward']:.2f} squeeze_ms={ms['squeeze']:.3f} "
          f"ratio_squeeze={ms['squeeze'] / ms['forward']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
