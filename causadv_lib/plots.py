"""Shared figure styles: image grids with labels and predictions (more plots join as sections need them)."""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

CORRECT, WRONG = "#1a7f37", "#cf222e"


def image_grid(images: Sequence[np.ndarray], labels: Sequence[int], probabilities: np.ndarray,
               class_names: Sequence[str], *, columns: int = 8, title: str | None = None,
               size: float = 1.6):
    """A grid of images titled "true / predicted (p)", green when correct and red when wrong."""
    n = len(images)
    rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * size, rows * (size + 0.45)), squeeze=False)
    predicted = np.asarray(probabilities).argmax(axis=1)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, y, c, p in zip(axes.flat, images, labels, predicted, probabilities):
        ax.imshow(image, interpolation="nearest" if image.shape[0] <= 64 else "antialiased")
        ok = int(y) == int(c)
        ax.set_title(f"{_short(class_names[y])}\n-> {_short(class_names[c])} ({p[c]:.2f})",
                     fontsize=7, color=CORRECT if ok else WRONG)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _short(name: str, width: int = 16) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


CAUSAL, ZERO, NEGATIVE = "#1a7f37", "#8c959f", "#cf222e"


def ci_bars(ax, ci: np.ndarray, *, title: str | None = None, sort: bool = False):
    """Bar chart of one CI vector over filters: causal (CI > 0) green, zero grey, negative red."""
    ci = np.asarray(ci, dtype=np.float32)
    order = np.argsort(-ci, kind="stable") if sort else np.arange(len(ci))
    values = ci[order]
    colors = np.where(values > 0, CAUSAL, np.where(values < 0, NEGATIVE, ZERO))
    ax.bar(np.arange(len(values)), values, width=1.0, color=colors, linewidth=0)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel("filters, sorted by CI" if sort else "filter index")
    ax.set_ylabel("CI")
    counts = f"{int((ci > 0).sum())} causal, {int((ci == 0).sum())} zero, {int((ci < 0).sum())} negative"
    ax.set_title(f"{title}\n{counts}" if title else counts, fontsize=9)
    return ax
