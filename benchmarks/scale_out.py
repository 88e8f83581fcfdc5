"""Scale-out of the experiment's shard pipeline on Dask, side by side in one run, and a projection to a large run.

    .venv/bin/python benchmarks/scale_out.py                  # ~5 min on 2 cores
    .venv/bin/python benchmarks/scale_out.py --workers 1 2 --keys 1 --no-vgg16 --json build/scale_out.json

The fixed small setup: ``vgg16_bn_cifar10`` on its paper-profile evaluation sample (100 CIFAR-10 test images), the
attacks ``--keys`` of the setup (default: BIM and PGD, untargeted, eps 24/255: 10 gradient steps per image each)
with the CI pass of their outputs, on the correctly classified images, in shards of ``--shard-images`` images. The
clean set is computed first and not timed. Each configuration runs on an empty cache of its own (nothing served
from an earlier one), and the merged results are checked bit-identical to the in-process run's.

Lines (``images_per_s``: attacked images per second of wall time, the attack and the CI pass of its outputs):

* ``in-process``: ``experiment.adversarial`` in this process (TensorFlow set to ``--threads`` threads, default 1,
  as one worker has, so that the 1-worker line measures the overhead of sharding, not a thread count);
* ``cpu_s``: CPU seconds (user + system) of the run: this process's, plus every worker process's for ``local:N``.
  On a machine shared with other work the wall time is noisy; CPU seconds are not, and their ratio to the
  in-process run's is the sharding's overhead in work;
* ``local:N``: the same attacks as shards on a ``LocalCluster`` of N workers, one thread each (the cluster's start
  is not timed; its workers are warmed by one untimed shard of another image, so the timed run is steady state).

Then ``overhead``: the per-shard cost of Dask (``shards.compute`` of ``--noop`` tasks that do nothing, on the
1-worker cluster, ms per task), and ``sharding_overhead``: (1-worker wall - in-process wall) / shards.

Then the projection (``--no-vgg16`` skips it): a random-weight VGG16 at 224 x 224 in this process, one thread:
the wall time of one gradient step (`attacks.CompiledGradientClassifier`'s compiled loss gradient, 2 images per
call), of the forward pass and of the CI pass (16 images, one canonical call) per image, gives the per-image cost of the six attacks (FGSM 1
step, BIM 10, PGD 10, each targeted and untargeted: 42 gradient steps, 6 predictions and 6 CI passes), and from
it the wall time of 50,000 ImageNet images x 6 attacks on 8, 64 and 512 one-thread workers, as arithmetic.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYTHONHASHSEED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402

from causadv_lib import attacks, ci, config, experiment, runner, shards, zoo  # noqa: E402
from ci_speed import timed  # noqa: E402  (the benchmarks' one timing rule: median after a warm-up)
from causadv_lib.vocab import AttackKey  # noqa: E402

KEYS = {"bim": AttackKey("bim", False, 24 / 255), "pgd": AttackKey("pgd", False, 24 / 255),
        "fgsm": AttackKey("fgsm", False, 24 / 255)}
#: the projection's run: ImageNet validation images, attacks (6: FGSM, BIM, PGD, targeted and untargeted)
PROJECT_IMAGES, PROJECT_ATTACKS, PROJECT_WORKERS = 50_000, 6, (8, 64, 512)
STEPS_PER_IMAGE = 2 * sum(attacks.SETTINGS[a]["max_iter"] for a in attacks.ATTACKS)   # 42 gradient steps


def _noop(i: int) -> int:
    return i


def _cpu_seconds() -> float:
    """CPU seconds (user + system, every thread) this process has used."""
    t = psutil.Process().cpu_times()
    return t.user + t.system


def _cluster_cpu(c) -> float:
    """CPU seconds of this process and of every worker process of client `c`."""
    return _cpu_seconds() + sum(c.run(_cpu_seconds).values())


def _fresh_cache(root: Path, name: str, seed_from: Path | None) -> Path:
    """An empty cache `root/name` holding only the clean set's entries (copied from `seed_from`)."""
    d = root / name
    if seed_from is not None:
        shutil.copytree(seed_from, d)
    else:
        d.mkdir(parents=True)
    os.environ[config.CACHE_ENV] = str(d)
    return d


def run_config(setting, setup, keys, root, seed_cache, shard_images):
    """(seconds, experiment arrays, shards) of the attacks `keys` on `setting` (None: in-process)."""
    experiment.clear_memo()
    _fresh_cache(root, setting.replace(":", "_") if setting else "inprocess", seed_cache)
    if setting is None:
        os.environ.pop(config.SCHEDULER_ENV, None)
        cs = experiment.clean(setup)
        source = np.flatnonzero(cs.correct)       # warm-up as the workers get: one image, not timed, not cached
        attacks.generate(setup.zoo_model(), cs.pixels[source[:1]], labels=cs.labels[source[:1]], attack=keys[0].attack,
                         eps=keys[0].eps, cache=False, progress=False, part=(0, len(source)))
        t, cpu = time.perf_counter(), _cpu_seconds()
        out = [experiment.adversarial(setup, k, progress=False) for k in keys]
        return time.perf_counter() - t, _cpu_seconds() - cpu, out, 0
    os.environ[config.SCHEDULER_ENV] = setting
    shards.close()
    c = shards.client()
    experiment.clean(setup)
    # warm every worker (TensorFlow traces, the model loaded): one shard of the first image per worker, not timed
    source = np.flatnonzero(experiment.clean(setup).correct)
    n = len(source)
    c.run(experiment._attack_shard, setup, keys[0], 0, n, source[:1])     # on every worker
    t, cpu = time.perf_counter(), _cluster_cpu(c)
    experiment._sharded_attacks(setup, tuple(keys), False)
    seconds, cpu = time.perf_counter() - t, _cluster_cpu(c) - cpu
    out = [experiment._FROM_SHARDS[(setup, k)] for k in keys]
    return seconds, cpu, out, len(keys) * len(shards.spans(n, shard_images))


def same(a, b) -> bool:
    return all(x.attack_result.adversarial.tobytes() == y.attack_result.adversarial.tobytes()
               and x.ci_result.ci.tobytes() == y.ci_result.ci.tobytes() for x, y in zip(a, b))


def per_task_overhead(n: int) -> float:
    """ms per trivial task through `shards.compute` on the current client."""
    shards.compute([(_noop, i) for i in range(10)], "warm-up", False)
    t = time.perf_counter()
    shards.compute([(_noop, i) for i in range(n)], "noop", False)
    return (time.perf_counter() - t) / n * 1e3


def vgg16_costs(repeats: int) -> dict:
    """Seconds per image of one gradient step, one forward pass and one CI pass of a random-weight VGG16 at 224."""
    keras.utils.set_random_seed(config.SEED)
    model = zoo.split_softmax(keras.applications.VGG16(weights=None), name="vgg16_224_random")
    norm = lambda x: keras.applications.vgg16.preprocess_input(np.array(x, np.float32))  # noqa: E731
    zm = zoo.custom(model, norm, normalize=norm, name="vgg16_224_random", ci_layer="block5_conv3")
    clf = attacks.art_classifier(zm)
    x = np.random.default_rng(0).integers(0, 256, (runner.MICRO_BATCH, 224, 224, 3)).astype(np.float32)
    y = np.eye(1000, dtype=np.float32)[np.arange(2)]

    # the gradient on 2 images per call (a block's cost is linear in its images); forward and CI passes on one
    # canonical call of MICRO_BATCH images (they pad to it: fewer images would cost as much)
    grad = timed(lambda: clf._compiled_gradient(tf.constant(x[:2]), tf.constant(y)).numpy(), repeats) / 2
    fwd = timed(lambda: runner.probabilities(zm.model, zm.normalize(x)), repeats) / len(x)
    cip = timed(lambda: ci.counterfactual_information(zm.model, zm.normalize(x), "block5_conv3", progress=False),
                repeats) / len(x)
    return {"grad_s": grad, "forward_s": fwd, "ci_s": cip}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--keys", type=int, default=2, help="attacks timed: the first of bim, pgd, fgsm (untargeted)")
    ap.add_argument("--shard-images", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="TensorFlow threads of the in-process run")
    ap.add_argument("--noop", type=int, default=200, help="trivial tasks timed for the per-shard overhead")
    ap.add_argument("--no-vgg16", action="store_true", help="skip the VGG16-224 per-image cost and the projection")
    ap.add_argument("--repeats", type=int, default=1, help="VGG16 timings: median of this many after a warm-up")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    config.SHARD_IMAGES = args.shard_images
    keys = list(KEYS.values())[:args.keys]
    setup = experiment.setup_for("cifar10", "paper")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}; "
          f"{setup.label}, paper sample, attacks {[k.full_label for k in keys]}, shards of {args.shard_images} "
          f"images; in-process TensorFlow threads {args.threads}, workers 1 thread each", flush=True)
    root = Path(tempfile.mkdtemp(prefix="scale_out_"))
    rows = []
    try:
        # the clean set once, in-process; every configuration starts from a copy of that cache
        os.environ.pop(config.SCHEDULER_ENV, None)
        seed = _fresh_cache(root, "clean", None)
        experiment.clean(setup)
        experiment.clear_memo()
        reference = None
        overhead_ms = None
        for setting in [None] + [f"local:{w}" for w in args.workers]:
            seconds, cpu, out, n_shards = run_config(setting, setup, keys, root, seed, args.shard_images)
            images = sum(a.n_attacked for a in out)
            if reference is None:
                reference, base, base_cpu = out, seconds, cpu
            row = {"run": setting or "in-process", "images": images, "seconds": seconds,
                   "images_per_s": images / seconds, "cpu_s": cpu, "shards": n_shards, "vs_in_process": base / seconds,
                   "cpu_vs_in_process": cpu / base_cpu, "bit_identical": same(out, reference)}
            if setting == "local:1":
                overhead_ms = per_task_overhead(args.noop)
                row["sharding_overhead_ms"] = (seconds - base) / n_shards * 1e3
                row["sharding_cpu_overhead_ms"] = (cpu - base_cpu) / n_shards * 1e3
            rows.append(row)
            print(f"{row['run']:>10} images={images} seconds={seconds:.1f} images_per_s={row['images_per_s']:.2f} "
                  f"speed_vs_in_process={row['vs_in_process']:.2f} cpu_s={cpu:.1f} "
                  f"cpu_vs_in_process={row['cpu_vs_in_process']:.2f} shards={n_shards} "
                  f"bit_identical={row['bit_identical']}", flush=True)
        shards.close()
        one = next((r for r in rows if r["run"] == "local:1"), None)
        if one is not None:
            print(f"overhead per_task_ms={overhead_ms:.1f} (Dask round trip of a task that does nothing, 1 worker) "
                  f"sharding_overhead_ms={one['sharding_overhead_ms']:.0f} per shard "
                  f"((1-worker wall - in-process wall) / {one['shards']} shards; 1 worker at "
                  f"{100 * (one['seconds'] / rows[0]['seconds'] - 1):+.1f}% of in-process) "
                  f"sharding_cpu_overhead_ms={one['sharding_cpu_overhead_ms']:.0f} per shard (CPU seconds of the "
                  f"client and the worker; 1 worker at {100 * (one['cpu_s'] / rows[0]['cpu_s'] - 1):+.1f}% of "
                  "in-process CPU)", flush=True)
        if not args.no_vgg16:
            c = vgg16_costs(args.repeats)
            per_image = STEPS_PER_IMAGE * c["grad_s"] + PROJECT_ATTACKS * (c["forward_s"] + c["ci_s"])
            print(f"vgg16_224 grad_s={c['grad_s']:.3f} forward_s={c['forward_s']:.3f} ci_s={c['ci_s']:.3f} per image, "
                  f"1 thread; six attacks = {STEPS_PER_IMAGE} x {c['grad_s']:.3f} + {PROJECT_ATTACKS} x "
                  f"({c['forward_s']:.3f} + {c['ci_s']:.3f}) = {per_image:.1f} s per image", flush=True)
            total = PROJECT_IMAGES * per_image
            n_shards = math.ceil(PROJECT_IMAGES / 64) * PROJECT_ATTACKS
            o = (overhead_ms or 0.0) / 1e3
            print(f"projection: {PROJECT_IMAGES} images x {PROJECT_ATTACKS} attacks = {total:.3g} s of one core "
                  f"({total / 86400:.1f} core-days); {n_shards} shards of 64 images x 1 attack "
                  f"(mean {total / n_shards:.0f} s each), Dask {o * 1e3:.1f} ms per shard", flush=True)
            for w in PROJECT_WORKERS:
                rounds = math.ceil(n_shards / w)
                wall = rounds * (total / n_shards + o)
                print(f"  {w:>3} workers: ceil({n_shards} / {w}) = {rounds} shards each x ({total / n_shards:.0f} s + "
                      f"{o * 1e3:.1f} ms) = {wall:.3g} s = {wall / 3600:.1f} h", flush=True)
                rows.append({"run": f"projection {w} workers", "seconds": wall})
            rows.append({"run": "vgg16_224 costs", **c, "per_image_s": per_image})
    finally:
        shards.close()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
