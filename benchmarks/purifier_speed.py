"""Spatial-smoothing purifier speed, side by side in one process: ART's `SpatialSmoothing` against
`defences.median_smooth`, the exact fast path `defences.purify` takes.

    .venv/bin/python benchmarks/purifier_speed.py                   # windows 2, 3, 7 at 224 and 32; ~1 min on 2 cores
    .venv/bin/python benchmarks/purifier_speed.py --images 16 --repeats 5 --forward mobilenet_v2_imagenet

One line per (image size, window): ``size=224 window=7 images=32 art_s=.. fast_s=.. speedup=.. identical=True``:
seconds for the whole batch of ``--images`` random float32 images in [0, 255] (H x W x 3), ART's object as
`defences.Purifier.art` builds it (``clip_values=(0, 255)``) against `defences.smooth` on that object; medians
of ``--repeats`` runs, the two alternating, after one untimed warm-up. ``identical``: the outputs are equal
bit for bit (np.array_equal). ``--forward MODEL`` adds the model's forward pass on the 224 (or its input-size)
batch (`defences.predict` without a purifier) for scale.
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

from causadv_lib import defences  # noqa: E402


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 32])
    ap.add_argument("--windows", type=int, nargs="+", default=[2, 3, 7])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--forward", default="", help="a zoo model whose forward pass is timed for scale")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    for size in args.sizes:
        x = rng.uniform(0, 255, (args.images, size, size, 3)).astype(np.float32)
        for w in args.windows:
            art = defences.Purifier(f"ss{w}", f"{w}x{w}", "SpatialSmoothing", {"window_size": w}).art()
            runs = {"art": lambda: art(x)[0], "fast": lambda: defences.smooth(art, x)}
            same = np.array_equal(runs["art"](), runs["fast"]())           # warm-up and the identity check
            times = {k: [] for k in runs}
            for _ in range(args.repeats):
                for k, fn in runs.items():
                    times[k].append(_timed(fn))
            s = {k: statistics.median(v) for k, v in times.items()}
            print(f"size={size} window={w} images={len(x)} art_s={s['art']:.3f} fast_s={s['fast']:.3f} "
                  f"speedup={s['art'] / s['fast']:.1f} identical={same}", flush=True)
    if args.forward:
        from causadv_lib import zoo

        zm = zoo.get(args.forward)
        x = rng.uniform(0, 255, (args.images, *zm.input_shape)).astype(np.float32)
        defences.predict(zm, x)
        t = statistics.median(_timed(lambda: defences.predict(zm, x)) for _ in range(args.repeats))
        print(f"{args.forward} forward images={len(x)} forward_s={t:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
