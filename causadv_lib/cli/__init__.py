"""``causadv``: CausAdv's detector on the command line (``python -m causadv_lib.cli`` runs the same).

    causadv inspect IMAGE... [--model NAME] [--dataset D] [--normalize N] [--attack NAME --eps E] [--out DIR]
    causadv detect DIR [--model NAME] [--dataset D] [--normalize N] [--out FILE.csv]

`inspect` prints, per image, the prediction and its probability, the numbers of causal (CI > 0) and zero
(CI == 0) filters of the CI layer, each strategy's score, threshold and verdict and the combined verdict, and
writes the causal heatmap as ``IMAGE_STEM.causadv.png`` beside the image (or in ``--out``). With ``--attack``
it first attacks the image (untargeted, against the model's own prediction) and inspects the adversarial
version too. `detect` writes one CSV row of verdicts per image of a folder (`commands.CSV_COLUMNS`).

The detector (`detector.CausAdvDetector`) is fitted on clean images of the model's dataset that it was not trained
on (`commands.fit_set`: CIFAR-10, an even spread of ``--fit-images`` test images, by default 1000; ImageNet, an
even spread of the sample and val1300 images, by default all 2300) and kept in the cache, keyed by the model, the settings, the
images and the code, so that the next call loads it. Bad input (a missing file, a non-image, an unknown model,
attack or option) is one line on stderr, ``causadv: error: ...``, and exit status 2; nothing is written then.
``CAUSADV_DEBUG=1`` shows the traceback instead.

This module parses the arguments only (quickly: ``--help`` loads no TensorFlow); `commands` does the work.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

from .. import config, vocab
from ..preprocess import NORMALIZATIONS

PROG = "causadv"
#: ``--fit-images`` when not given, per dataset (`commands.fit_set`)
FIT_IMAGES = config.CLI_FIT_IMAGES


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``causadv: error: MESSAGE`` and exit status 2 (no usage block)."""

    def error(self, message: str):
        print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
        raise SystemExit(2)


def eps_value(text: str) -> float:
    """argparse type of ``--eps``: grey levels out of 255 (``8``, ``8/255``) or a fraction of the pixel range
    below 1 (``0.031``); returns the fraction, in (0, 1]."""
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            value = float(a) / float(b)
        else:
            value = float(text)
            value = value / 255.0 if value >= 1 else value
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"invalid eps {text!r}: expected grey levels out of 255 (e.g. 8 or 8/255) "
                                         "or a fraction below 1 (e.g. 0.03)") from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"invalid eps {text!r}: expected a budget in (0, 255] grey levels")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive integer (1, 2, ...)")
    return value


def _fpr(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"invalid fpr {text!r}: expected a rate in (0, 1), e.g. 0.05")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and detector")
    g.add_argument("--model", metavar="NAME", default=None,
                   help="a zoo model name, or a .keras / .tflite file (with --dataset and --normalize); default: "
                        f"the zoo's model for --dataset ({', '.join(f'{d}: {m}' for d, m in config.EXPERIMENT_MODELS.items())}"
                        "), CIFAR-10's when no dataset is given")
    g.add_argument("--dataset", choices=vocab.DATASETS, default=None,
                   help="the model's dataset: its class names, and the clean images the detector is fitted on "
                        "(required with a model file)")
    g.add_argument("--normalize", choices=tuple(NORMALIZATIONS), default=None, metavar="N",
                   help="a model file's input convention (float pixels in [0, 255] -> model inputs): "
                        f"{', '.join(NORMALIZATIONS)} (required with a model file)")
    g.add_argument("--fit-images", type=_positive_int, default=None, metavar="N",
                   help="clean images the detector is fitted on, an even spread of the dataset's held-out images "
                        f"(CIFAR-10: the test set, default {FIT_IMAGES['cifar10']}; ImageNet: the sample and val1300 "
                        f"images, default all {FIT_IMAGES['imagenet']}); "
                        "half give the prototypes, the correctly classified rest calibrate the thresholds, so a "
                        "larger N gives steadier thresholds (and a slower first call; later calls load the fitted "
                        "detector from the cache)")
    g.add_argument("--fpr", type=_fpr, default=0.05,
                   help="the false-positive rate on clean images each verdict is calibrated to (default 0.05)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="CausAdv: is an image adversarial? The counterfactual information (CI) of every filter of\n"
                    "a CNN layer, class prototypes and the four CausAdv strategies, as one detector calibrated\n"
                    "on clean images only.",
        epilog="commands:\n"
               "  causadv inspect IMAGE... [--attack pgd --eps 8] [--out DIR]\n"
               "      per image: prediction, causal and zero filters, each strategy's score, threshold and\n"
               "      verdict, the combined verdict; writes IMAGE_STEM.causadv.png (the causal heatmap)\n"
               "  causadv detect DIR [--out FILE.csv]\n"
               "      one CSV row of verdicts per image under DIR (default DIR/causadv_verdicts.csv)\n\n"
               "The detector is fitted on the dataset's clean images on first use and cached; see\n"
               "'causadv inspect --help'. Errors: one line on stderr, exit status 2.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{inspect,detect}", parser_class=_Parser)
    ins = sub.add_parser(
        "inspect", help="explain the verdicts on a few images (and on an attacked version)",
        description="Print, per image, the model's prediction and its probability, the numbers of causal "
                    "(CI > 0) and zero (CI == 0) filters, each strategy's score, threshold and verdict and the "
                    "combined verdict; write the causal heatmap (CI-weighted activations of the predicted class's "
                    "prototype's causal filters) as IMAGE_STEM.causadv.png beside the image, or in --out. Images "
                    "are resized to the model's input as the model's dataset does (zoo geometry).")
    ins.add_argument("images", nargs="+", metavar="IMAGE", help="image files (.png, .jpg, ...)")
    ins.add_argument("--attack", choices=vocab.ATTACKS, default=None,
                     help="also attack each image (untargeted, its label the model's prediction) and inspect the "
                          "adversarial version")
    ins.add_argument("--eps", type=eps_value, default=8 / 255, metavar="E",
                     help="the attack's L-infinity budget: grey levels out of 255 (8, 8/255; values >= 1) or a "
                          "fraction of the pixel range (0.03; values < 1); default 8")
    ins.add_argument("--out", metavar="DIR", default=None, help="write the heatmaps here instead of beside the images")
    _common(ins)
    det = sub.add_parser(
        "detect", help="write a CSV of verdicts for a folder of images",
        description="Write one CSV row per image under DIR (recursive, sorted paths; .png, .jpg, .jpeg; inspect's "
                    "*.causadv.png heatmaps skipped): file, prediction, class, probability, each strategy's score "
                    "and flag, the combined score and flag (1 = adversarial at --fpr). Written atomically once "
                    "every image was read.")
    det.add_argument("folder", metavar="DIR", help="a folder of images (searched recursively)")
    det.add_argument("--out", metavar="FILE.csv", default=None, help="the CSV (default DIR/causadv_verdicts.csv)")
    _common(det)
    return parser


def _load_commands():
    """`commands`, imported with file descriptor 2 pointed at /dev/null: TensorFlow's C++ core writes start-up
    lines there at import whatever TF_CPP_MIN_LOG_LEVEL says (etc/ipython_kernel_config.py), and an error of the
    command line is one line. A failing import still raises, and its traceback is printed after fd 2 is back."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        # TensorFlow, Keras and ART take seconds to import: loaded once the arguments are good, so that --help
        # and usage errors answer at once
        from . import commands
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return commands


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for bad input, with one line on stderr)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:                        # --help (0) or a usage error (2), already printed
        return int(exit_.code or 0)
    commands = _load_commands()
    try:
        return commands.run(args)
    except commands.USER_ERRORS as err:
        if os.environ.get("CAUSADV_DEBUG") == "1":
            raise
        print(f"{PROG}: error: {commands.one_line(err)}", file=sys.stderr)
        return 2

