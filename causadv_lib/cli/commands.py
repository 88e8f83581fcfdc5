"""The work of the ``causadv`` command line (`causadv_lib.cli` parses the arguments): `inspect` and `detect`.

**Images.** Read with `data.load_image` (any PIL format: grey, palette and alpha images become RGB) and brought
to the model's input size by the model's own `geometry` (ImageNet: shorter side to size / 0.875, central crop);
a CIFAR-10 model at 32 x 32, whose geometry does not resize, gets an image of another size resized plainly
(bilinear, aspect ratio not kept). Every image is read (decoded) before anything is computed or written, so a
missing file or a non-image stops the command at once, with nothing written.

**The detector's fit set** (`fit_set`; deterministic, no adversarial image): an even spread (`spread.spread`,
every class alike) of N = ``--fit-images`` clean images of images the model was not trained on. CIFAR-10: the
test images, ``cifar10_eval`` (default N = 1000: every 10th test image, positions ``spread.spread(10000, N)``);
not the training images, on which a trained model is more confident than on new images, so thresholds
calibrated there would flag new clean images too often. The verdicts on these N images are in-sample: measure
false-positive rates on the other test images. ImageNet: the 1000 sample images and the 1300 val1300 images taken
together (``imagenet_prototypes`` then ``imagenet_eval``; default all 2300: no other ImageNet images are at
hand). `CausAdvDetector.fit` splits them (seeded, per class) into a prototype half and a calibration half. The
fitted detector is saved (npz + JSON, `CausAdvDetector.save`) in the cache under ``detector/KEY``, KEY a hash
(`cache.key`) of the model's fingerprint (architecture and weights), its name and normalisation, the fit images'
ids, the settings (fpr, seed) and the source of the code that computes it (`cache.code_hash` of `FIT_CODE`), so
a later call with the same model and settings loads it and any change refits. An unusable entry is reported and refitted.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .. import attacks, cache, config, data, heatmaps, plots, spread, zoo
from .. import ci as _ci
from ..detector import SCORES, CausAdvDetector, NotFittedError
from ..io import atomic_write_bytes
from ..zoo.registry import looks_like_path

class CliError(Exception):
    """Bad input to the command line: the message names it."""


#: the errors that are the user's input (one line, exit status 2); anything else is a bug (a traceback)
USER_ERRORS = (CliError, ValueError, OSError, data.DataError, zoo.UnknownModelError, zoo.ModelUnavailableError,
               NotFittedError)
#: the pools the detector is fitted on, per dataset, taken together in this order (module docstring)
FIT_POOLS = {"cifar10": ("cifar10_eval",), "imagenet": ("imagenet_prototypes", "imagenet_eval")}
#: the code whose source keys a cached detector
FIT_CODE = ("causadv_lib.detector", "causadv_lib.ci", "causadv_lib.prototypes", "causadv_lib.strategies",
            "causadv_lib.metrics", "causadv_lib.runner", "causadv_lib.preprocess", "causadv_lib.keras_graph",
            __name__)
#: inspect's heatmap next to IMAGE: IMAGE_STEM + this
HEATMAP_SUFFIX = ".causadv.png"
#: detect's CSV, when --out is not given: DIR/this
CSV_NAME = "causadv_verdicts.csv"
#: images per detect call in `detect` (results do not depend on it)
CHUNK = 256


def one_line(err: BaseException) -> str:
    """The message of `err` on one line (a KeyError's without its quotes)."""
    msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(msg).split()) or type(err).__name__


def csv_columns(scores) -> list[str]:
    """detect's CSV columns: file (relative to DIR), prediction (class index), class (its name), probability,
    each strategy's score and flag, the combined score and flag (flags 1 = adversarial, 0 = clean; a score the
    strategy cannot give, the class having no prototype, is ``nan``)."""
    return ["file", "prediction", "class", "probability", *[f"{k}_{f}" for k in scores for f in ("score", "flag")],
            "combined_score", "combined_flag"]


# ------------------------------------------------------------------------------------------ model
def resolve_model(args: argparse.Namespace):
    """The ZooModel of ``--model`` (default: the zoo's model of ``--dataset``, CIFAR-10's without one)."""
    name = args.model or config.EXPERIMENT_MODELS[args.dataset or "cifar10"]
    is_file = not _is_zoo_name(name) and (looks_like_path(name) or Path(name).exists())
    if is_file:
        if not Path(name).is_file():
            raise CliError(f"no such model file: {name}")
        if args.dataset is None or args.normalize is None:
            raise CliError(f"model file {name} needs --dataset ({'|'.join(zoo.DATASETS)}) and --normalize "
                           f"({'|'.join(zoo.NORMALIZATIONS)})")
    elif args.normalize is not None:
        raise CliError(f"--normalize is for model files; zoo model {name!r} brings its own normalisation")
    zm = zoo.resolve(name, dataset=args.dataset, normalize=args.normalize)
    if zm.dataset not in FIT_POOLS:
        raise CliError(f"model {name!r} has no dataset to fit the detector on; give --dataset")
    if zm.normalize is None:
        raise CliError(f"model {name!r} has no normalize (float pixels -> model inputs); the command line needs one")
    return zm


def _is_zoo_name(name: str) -> bool:
    return name in zoo.names() or name in zoo.registered()


# ------------------------------------------------------------------------------------------ images
def to_model_size(zm, img: np.ndarray) -> np.ndarray:
    """One uint8 (H, W, 3) image at the model's input size (module docstring)."""
    if zm.geometry is not None:
        try:
            return np.asarray(zm.geometry([img]), np.uint8)[0]
        except ValueError:              # a CIFAR-10 model at 32 x 32 does not resize: resized plainly below
            pass
    h, w = zm.input_shape[:2]
    if img.shape[:2] == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR), np.uint8)


def decode(file: Path) -> np.ndarray:
    """The image `file` as uint8 RGB; a missing file or a non-image is a CliError naming it."""
    if not file.exists():
        raise CliError(f"no such image: {file}")
    if not file.is_file():
        raise CliError(f"not an image file: {file} (a folder)")
    try:
        img = data.load_image(Path(file))
    except data.DataError as err:
        raise CliError(f"not an image: {file} ({one_line(err).split(': ', 1)[-1]})") from None
    return img


def read_image(zm, file: Path) -> np.ndarray:
    """The image `file` at the model's input size (`decode`, `to_model_size`)."""
    return to_model_size(zm, decode(file))


def image_files(folder: Path) -> list[Path]:
    """The images under `folder` (recursive; .png, .jpg, .jpeg in any case; inspect's heatmaps skipped), sorted
    by their path relative to `folder`."""
    if not folder.exists():
        raise CliError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise CliError(f"not a folder: {folder}")
    files = [f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in data.pools.IMAGE_SUFFIXES
             and not f.name.lower().endswith(HEATMAP_SUFFIX)]
    if not files:
        raise CliError(f"no images ({', '.join(data.pools.IMAGE_SUFFIXES)}) under {folder}")
    return sorted(files, key=lambda f: f.relative_to(folder).as_posix())


# ------------------------------------------------------------------------------------------ detector
def fit_set(zm, n: int | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, uint8 images at the model's size, labels) the detector is fitted on (module docstring)."""
    pools = [data.pool(p) for p in FIT_POOLS[zm.dataset]]
    where = [(p, i) for p in pools for i in range(len(p))]
    n = n or config.CLI_FIT_IMAGES[zm.dataset]
    pick = spread.spread(len(where), n)
    ids, images, labels = [], [], []
    for p in pools:
        idx = np.array([i for k in pick for q, i in [where[k]] if q is p], np.int64)
        if not idx.size:
            continue
        loaded = p.load(idx)
        images += [to_model_size(zm, img) for img in loaded]
        ids += [f"{p.name}/{p.ids[i]}" for i in idx]
        labels.append(np.asarray(p.labels)[idx])
    return ids, np.stack(images), np.concatenate(labels)


def detector_key(zm, args, ids: list[str]) -> str:
    return cache.key("causadv-cli-detector", cache.model_fingerprint(zm.model), zm.name, zm.dataset,
                     args.normalize, list(zm.input_shape), ids, float(args.fpr), config.SEED,
                     ["code", cache.code_hash(*FIT_CODE)])


def get_detector(zm, args, note) -> CausAdvDetector:
    """The detector of `zm` at ``args.fpr``, fitted on `fit_set`: loaded from the cache, or fitted and saved."""
    ids, x, y = fit_set(zm, args.fit_images)
    where = cache.path("detector", detector_key(zm, args, ids)).with_suffix("")
    if where.with_suffix(".json").exists():
        try:
            det = CausAdvDetector.load(where, zm)
            note(f"detector loaded from {where}.json")
            return det
        except (OSError, ValueError, KeyError) as err:
            warnings.warn(f"cached detector {where}.json is unusable ({one_line(err)}); refitting", RuntimeWarning)
    pools = " + ".join(FIT_POOLS[zm.dataset])
    note(f"fitting the detector on {len(ids)} clean {pools} images (--fit-images; first call only) ...")
    det = CausAdvDetector(zm, fpr=args.fpr, seed=config.SEED, progress=False)
    det.fit(x, y)
    det.save(where)
    c = det.counts
    note(f"detector fitted ({c['prototype_part']} prototype candidates, {c['calibration_correct']} correctly "
         f"classified calibration images) and saved to {where}.json")
    return det


# ------------------------------------------------------------------------------------------ inspect
def _pct(p: float) -> str:
    return f"{100 * p:g}%"


def _num(v: float) -> str:
    return "nan" if np.isnan(v) else f"{v:.4g}"


def describe(zm, det, report: dict, i: int, causal: int, zero: int, filters: int) -> list[str]:
    """The lines `inspect` prints for image `i` of `report`."""
    c = int(report["predicted"][i])
    lines = [f"  prediction: {zm.class_names[c]} (class {c}), probability {float(report['probability'][i]):.4f}",
             f"  CI layer {det.layer}: {causal} causal filters (CI > 0), {zero} zero filters (CI == 0) of {filters}",
             f"  {'strategy':<10} {'score':>10} {'threshold':>10}  verdict   ({_pct(det.fpr)} false positives on "
             "clean images)"]
    th = det.thresholds
    for k in (*det.scores, "combined"):
        score = float(report[f"{k}_score"][i])
        flag = bool(report[f"{k}_flag"][i])
        verdict = "ADVERSARIAL" if flag else ("no judgement" if np.isnan(score) else "clean")
        what = SCORES.get(k, "the most extreme calibrated tail over the strategies")
        lines.append(f"  {k:<10} {_num(score):>10} {_num(th[k][0]):>10}  {verdict:<11} {what}")
    lines.append(f"  verdict: {'ADVERSARIAL' if report['combined_flag'][i] else 'clean'} (combined; a score above "
                 "its threshold is flagged, one equal to it by the seeded tie rule)")
    return lines


def _ci_counts(zm, det, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    res = _ci.counterfactual_information(zm.model, np.asarray(zm.normalize(pixels), np.float32), det.layer,
                                         definition=det.definition, progress=False)
    return (res.ci > 0).sum(axis=1), (res.ci == 0).sum(axis=1), res.ci.shape[1]


def _panel(zm, pixels, hmap, title: str, flagged: bool) -> list[dict]:
    color = "red" if flagged else "black"
    return [{"image": pixels, "title": title, "color": color},
            {"image": pixels, "heatmap": hmap, "title": "causal heatmap", "color": color}]


def heatmap_png(rows: list[list[dict]], suptitle: str) -> bytes:
    fig = plots.heatmap_grid(rows, suptitle=suptitle, size=2.2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, metadata={"Software": None})
    plots.plt.close(fig)
    return buf.getvalue()


def inspect(args, note) -> int:
    files = [Path(f) for f in args.images]
    decoded = [decode(f) for f in files]       # bad images first: before the model runs anything
    zm = resolve_model(args)
    pixels = np.stack([to_model_size(zm, img) for img in decoded])
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"--out {out_dir}: not a folder")
    targets = [(out_dir if out_dir is not None else f.parent) / (f.stem + HEATMAP_SUFFIX) for f in files]
    dup = sorted({str(t) for t in targets if targets.count(t) > 1})
    if dup:
        raise CliError(f"two images would write the same heatmap {dup[0]}: give them different names")
    det = get_detector(zm, args, note)
    groups = [("clean", pixels, None)]
    results = []
    while groups:
        name, x, adv = groups.pop(0)
        report, _ = det.detect(x)
        if args.attack and adv is None:         # the attack's label: the model's prediction on the clean image
            adv = attacks.generate(zm, pixels, labels=report["predicted"], attack=args.attack, eps=args.eps,
                                   targeted=False, seed=config.SEED, progress=False)
            groups.append((f"{args.attack.upper()} eps={args.eps * 255:.4g}/255", adv.adversarial, adv))
            adv = None
        causal, zero, filters = _ci_counts(zm, det, x)
        maps = heatmaps.maps(zm, np.asarray(x, np.float32), det.prototypes, report["predicted"], method="causal",
                             layer=det.layer)
        results.append((name, x, adv, report, causal, zero, filters, maps))
    pngs = []
    for i, f in enumerate(files):
        print(f"{f}:")
        rows = []
        for name, x, adv, report, causal, zero, filters, maps in results:
            if adv is not None:
                ok = "succeeded" if adv.success[i] else "failed: the prediction did not change"
                print(f" {name} (untargeted, against the prediction; attack {ok}):")
            elif len(results) > 1:
                print(f" {name}:")
            print("\n".join(describe(zm, det, report, i, int(causal[i]), int(zero[i]), filters)))
            c = int(report["predicted"][i])
            verdict = "adversarial" if report["combined_flag"][i] else "clean"
            rows.append(_panel(zm, x[i], maps[i], f"{name}: {zm.class_names[c]} {report['probability'][i]:.2f}, "
                                                   f"{verdict}", bool(report["combined_flag"][i])))
        pngs.append(heatmap_png(rows, f"{f.name}: {zm.name}, layer {det.layer}"))
    for t, png in zip(targets, pngs):
        atomic_write_bytes(t, png)
        print(f"heatmap: {t}")
    return 0


# ------------------------------------------------------------------------------------------ detect
def _cell(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "nan" if np.isnan(v) else repr(float(v))
    return str(v)


def detect(args, note) -> int:
    folder = Path(args.folder)
    files = image_files(folder)
    out = Path(args.out) if args.out else folder / CSV_NAME
    if out.is_dir():
        raise CliError(f"--out {out}: a folder; expected a CSV file name")
    for f in files:                 # every image decodes, before any work (read again below, a chunk at a time)
        decode(f)
    zm = resolve_model(args)
    det = get_detector(zm, args, note)
    columns = csv_columns(det.scores)
    rows = []
    with tqdm(total=len(files), unit="image", desc="causadv detect", disable=args.quiet, file=sys.stderr) as bar:
        for s in range(0, len(files), CHUNK):
            chunk = files[s:s + CHUNK]
            report, _ = det.detect(np.stack([read_image(zm, f) for f in chunk]))
            for j, f in enumerate(chunk):
                c = int(report["predicted"][j])
                row = {"file": f.relative_to(folder).as_posix(), "prediction": c, "class": zm.class_names[c],
                       "probability": float(report["probability"][j])}
                row |= {col: report[col][j] for col in columns[4:]}
                rows.append([_cell(row[col]) for col in columns])
            bar.update(len(chunk))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    atomic_write_bytes(out, buf.getvalue().encode())
    flagged = sum(r[-1] == "1" for r in rows)
    print(f"{len(rows)} images, {flagged} flagged adversarial (combined, calibrated to {_pct(det.fpr)} false "
          f"positives on clean images): {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the parsed command (`causadv_lib.cli.build_parser`); returns the exit status."""
    def note(msg: str) -> None:
        if not args.quiet:
            print(f"causadv: {msg}", file=sys.stderr)

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"causadv: warning: {one_line(message if isinstance(message, Warning) else Warning(message))}",
              file=sys.stderr)

    with warnings.catch_warnings():            # a library warning as one line, not as a source excerpt
        warnings.showwarning = show
        return {"inspect": inspect, "detect": detect}[args.command](args, note)
