"""Shared figure styles: image grids with labels and predictions (more plots join as sections need them)."""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib import cm, colors
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
    if len(values) <= 256:
        ax.bar(np.arange(len(values)), values, width=1.0, color=colors, linewidth=0)
    else:  # one line collection instead of thousands of bar patches (10x faster to draw and to save)
        ax.vlines(np.arange(len(values)), 0, values, colors=colors, linewidth=0.6)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel("filters, sorted by CI" if sort else "filter index")
    ax.set_ylabel("CI")
    counts = f"{int((ci > 0).sum())} causal, {int((ci == 0).sum())} zero, {int((ci < 0).sum())} negative"
    ax.set_title(f"{title}\n{counts}" if title else counts, fontsize=9)
    return ax


def adversarial_examples(clean: np.ndarray, adversarial: Sequence[np.ndarray], titles: Sequence[str], *,
                         eps: float, ok: Sequence[bool] | None = None, clean_title: str = "clean",
                         suptitle: str | None = None, size: float = 1.9):
    """Top row: the clean image, then each adversarial image; bottom row: each perturbation magnified.

    Images are float or uint8 pixel values in [0, 255]. The perturbation ``adv - clean`` is shown as
    ``0.5 + (adv - clean) / (2 * 255 * eps)``: mid-grey is no change, black/white the full budget.
    `ok` (optional): per adversarial image, whether the attack succeeded (title green, else red).
    """
    n = len(adversarial)
    fig, axes = plt.subplots(2, n + 1, figsize=((n + 1) * size, 2 * size + 1.0), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    as_img = lambda x: np.clip(np.asarray(x, np.float32) / 255.0, 0.0, 1.0)  # noqa: E731
    interp = "nearest" if clean.shape[0] <= 64 else "antialiased"
    axes[0, 0].imshow(as_img(clean), interpolation=interp)
    axes[0, 0].set_title(clean_title, fontsize=7)
    axes[1, 0].text(0.5, 0.5, f"perturbation, magnified:\ngrey = 0,\nblack / white = -/+ eps\n(eps = {eps * 255:g}/255)", ha="center", va="center",
                    fontsize=7, transform=axes[1, 0].transAxes)
    scale = 2.0 * 255.0 * eps
    for j, (adv, title) in enumerate(zip(adversarial, titles), start=1):
        delta = np.asarray(adv, np.float32) - np.asarray(clean, np.float32)
        axes[0, j].imshow(as_img(adv), interpolation=interp)
        color = None if ok is None else (CORRECT if ok[j - 1] else WRONG)
        axes[0, j].set_title(title, fontsize=7, color=color)
        axes[1, j].imshow(np.clip(0.5 + delta / scale, 0.0, 1.0), interpolation=interp)
        axes[1, j].set_title(f"max |delta| = {np.abs(delta).max():.1f}", fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97) if suptitle else None)
    return fig


def ci_grid(panels: Sequence[Sequence[tuple[str, np.ndarray | None]]], *, sort: bool = False,
            suptitle: str | None = None, width: float = 2.6, height: float = 2.0):
    """A grid of `ci_bars` panels: ``panels[row][col] = (title, CI vector or None for an empty panel)``."""
    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * width, rows * height + 0.6), squeeze=False)
    for i, row in enumerate(panels):
        for j in range(cols):
            ax = axes[i, j]
            if j >= len(row) or row[j][1] is None:
                ax.axis("off")
                if j < len(row):
                    ax.text(0.5, 0.5, f"{row[j][0]}\n(none)", ha="center", va="center", fontsize=7,
                            transform=ax.transAxes)
                continue
            ci_bars(ax, row[j][1], title=row[j][0], sort=sort)
            ax.title.set_fontsize(7)
            ax.tick_params(labelsize=6)
            ax.xaxis.label.set_fontsize(7)
            ax.yaxis.label.set_fontsize(7)
            if j:
                ax.set_ylabel("")
            if i < rows - 1:
                ax.set_xlabel("")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97) if suptitle else None)
    return fig


def group_histograms(ax, groups: dict[str, np.ndarray], *, bins, xlabel: str, title: str | None = None):
    """Step histograms (fraction of each group's samples) of one statistic, one line per group.

    The first group is drawn thick and black, group k >= 1 in colour ``C{k-1}``, so the same dict order gives
    the same colours in every panel; an empty group is left out (its colour stays reserved).
    """
    for k, (name, values) in enumerate(groups.items()):
        values = np.asarray(values, np.float64)
        if values.size == 0:
            continue
        weights = np.full(values.size, 1.0 / values.size)
        ax.hist(values, bins=bins, weights=weights, histtype="step", linewidth=2.0 if k == 0 else 1.2,
                color="black" if k == 0 else f"C{(k - 1) % 10}", label=f"{name} (n={values.size})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of samples")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    return ax


def grouped_bars(ax, categories: Sequence[str], series: dict[str, Sequence[float]], *, ylabel: str,
                 title: str | None = None, hatched: Sequence[str] = ()):
    """Bars of several series side by side for each category (series in `hatched` drawn hatched)."""
    width = 0.8 / max(1, len(series))
    x = np.arange(len(categories))
    for k, (name, values) in enumerate(series.items()):
        vals = [np.nan if v is None else v for v in values]
        bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, vals, width, label=name,
                      hatch="//" if name in hatched else None, edgecolor="black", linewidth=0.4,
                      color="white" if name in hatched else None)
        ax.bar_label(bars, labels=["" if np.isnan(v) else f"{v:g}" for v in vals], fontsize=6, padding=1)
    ax.set_xticks(x, categories)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    return ax


def roc_grid(curves: dict, row_names: Sequence[str], col_names: Sequence[str], *, suptitle: str | None = None,
             size: float = 1.9):
    """ROC curves in a grid: ``curves[(row, col)] = [(label, fpr, tpr), ...]`` (one line per label).

    Each panel shows the diagonal (chance) and a dotted line at FPR = 5%; empty panels say "no data". Every
    panel has the same fixed limits, and only the outer panels label their ticks: what shared axes draw, without
    sharing them (with ~100 panels, matplotlib's shared-axis bookkeeping took longer than the drawing; the files
    are byte-identical).
    """
    rows, cols = len(row_names), len(col_names)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size + 1.2, rows * size + 0.8), squeeze=False)
    for i, r in enumerate(row_names):
        for j, c in enumerate(col_names):
            ax = axes[i, j]
            ax.plot([0, 1], [0, 1], color="#bbbbbb", linewidth=0.6)
            ax.axvline(0.05, color="#bbbbbb", linewidth=0.6, linestyle=":")
            lines = curves.get((r, c), [])
            for label, fpr, tpr in lines:
                ax.plot(fpr, tpr, linewidth=1.1, label=label)
            if lines:
                ax.legend(fontsize=5, loc="lower right", handlelength=1.0, borderpad=0.3)
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=7, transform=ax.transAxes)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.tick_params(labelsize=6)
            if i < rows - 1:
                ax.xaxis.set_tick_params(which="both", labelbottom=False)
            if j > 0:
                ax.yaxis.set_tick_params(which="both", labelleft=False)
            if i == 0:
                ax.set_title(c, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{r}\nTPR", fontsize=7)
            if i == rows - 1:
                ax.set_xlabel("FPR", fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97) if suptitle else None)
    return fig


def heatmap_grid(panels: Sequence[Sequence[dict | None]], *, row_labels: Sequence[str] | None = None,
                 suptitle: str | None = None, size: float = 1.75, alpha: float = 0.5, cmap: str = "jet",
                 colorbar_label: str = "heatmap (normalised to [0, 1])"):
    """Images with a heatmap overlaid, in a grid, with one colorbar for all heatmaps.

    ``panels[r][c]``: None (empty panel) or a dict with ``image`` ((H, W, 3) pixel values in [0, 255]),
    optional ``heatmap`` ((H, W) in [0, 1]; NaN or missing: the image alone), ``title``, ``color`` (of the
    title), ``note`` (small text in the panel's lower left corner) and ``text`` (shown instead of an image).
    `row_labels`: one label per row, left of the first column.
    """
    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size + 1.4, rows * (size + 0.35) + 0.6), squeeze=False,
                             layout="constrained")
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            p = panels[i][j] if j < len(panels[i]) else None
            if row_labels is not None and j == 0:
                ax.set_ylabel(row_labels[i], fontsize=7)
            if p is None:
                continue
            if p.get("title"):
                ax.set_title(p["title"], fontsize=6.5, color=p.get("color"))
            if p.get("image") is None:
                ax.text(0.5, 0.5, p.get("text", ""), ha="center", va="center", fontsize=7, transform=ax.transAxes)
                continue
            image = np.clip(np.asarray(p["image"], np.float32) / 255.0, 0.0, 1.0)
            interp = "nearest" if image.shape[0] <= 64 else "antialiased"
            ax.imshow(image, interpolation=interp)
            h = p.get("heatmap")
            if h is not None and np.isfinite(h).all():
                ax.imshow(h, cmap=cmap, vmin=0.0, vmax=1.0, alpha=alpha, interpolation="bilinear")
            elif h is not None:
                ax.text(0.5, 0.5, "no map", ha="center", va="center", fontsize=7, transform=ax.transAxes,
                        color="white", bbox={"facecolor": "black", "alpha": 0.6, "linewidth": 0})
            if p.get("note"):
                ax.text(0.02, 0.03, p["note"], ha="left", va="bottom", fontsize=6, transform=ax.transAxes,
                        color="white", bbox={"facecolor": "black", "alpha": 0.55, "linewidth": 0, "pad": 1.0})
    sm = cm.ScalarMappable(norm=colors.Normalize(0.0, 1.0), cmap=cmap)
    fig.colorbar(sm, ax=axes, shrink=0.5, fraction=0.02, pad=0.01, label=colorbar_label)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def interval_dots(ax, categories: Sequence[str], series: dict[str, tuple], *, ylabel: str,
                  title: str | None = None, reference: float | None = None, ylim: tuple | None = None,
                  markers: str = "os^Dv<>"):
    """Points with error bars, several series side by side per category.

    ``series[name] = (values, lo, hi)``, one entry per category each (None or NaN: not drawn; "n/a" is
    written where no series has a value). `reference`: a dotted horizontal line (e.g. AUC 0.5).
    """
    x = np.arange(len(categories))
    width = 0.7 / max(1, len(series))
    if reference is not None:
        ax.axhline(reference, color="#888888", linewidth=0.7, linestyle=":")
    for k, (name, (values, lo, hi)) in enumerate(series.items()):
        v, l, h = (np.array([np.nan if u is None else u for u in arr], np.float64) for arr in (values, lo, hi))
        pos = x + (k - (len(series) - 1) / 2) * width
        ok = np.isfinite(v)
        err = np.vstack([np.where(np.isfinite(l), v - l, 0.0), np.where(np.isfinite(h), h - v, 0.0)])[:, ok]
        ax.errorbar(pos[ok], v[ok], yerr=np.clip(err, 0.0, None), fmt=markers[k % len(markers)], markersize=4,
                    capsize=2, linewidth=0.9, label=name)
    missing = np.ones(len(categories), bool)
    for values, _, _ in series.values():
        missing &= ~np.isfinite(np.array([np.nan if u is None else u for u in values], np.float64))
    for p in x[missing]:
        ax.text(p, 0.06, "n/a", fontsize=7, color="#666666", ha="center", va="bottom",
                transform=ax.get_xaxis_transform())
    ax.set_xticks(x, categories, fontsize=7)
    ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.set_ylabel(ylabel, fontsize=8)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=min(4, len(series)), loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    return ax


def attack_example(run, protos, class_names, title: str, attack: str = "pgd"):
    """CI vectors of one clean image, its adversarial version and the prototype of the class the attack
    reached (the first image `attack` fooled in an `experiment.ModelRun`); None when it fooled none."""
    adv, res, ok = run.adversarial[attack]
    if not ok.any():
        return None
    j = int(np.flatnonzero(ok)[0])
    i = int(np.flatnonzero(run.correct)[j])
    c, a = int(run.clean.predicted[i]), int(res.predicted[j])
    panels = [[(f"clean: {class_names[c]}", run.clean.ci[i]),
               (f"{attack.upper()}: -> {class_names[a]}", res.ci[j]),
               (f"prototype of {class_names[a]}", protos.ci[a] if a in protos.classes else None)]]
    return ci_grid(panels, suptitle=title, width=3.6, height=2.4)


def value_matrix(ax, row_names: Sequence[str], col_names: Sequence[str], values, *, title: str | None = None,
                 vmin: float = 0.0, vmax: float = 1.0, center: float | None = 0.5, cmap: str = "RdBu_r",
                 fmt: str = "{:.2f}", highlight: Sequence[tuple[int, int]] = ()):
    """A table of numbers as coloured cells, each written in its cell (NaN: grey, "n/a"), e.g. ROC-AUC of
    detectors (rows) against attacks (columns), centred at `center` (0.5: chance). `highlight`: (row, col) cells
    drawn with a black frame (e.g. the attack a supervised detector was trained on)."""
    v = np.array([[np.nan if x is None else x for x in row] for row in values], np.float64)
    norm = colors.TwoSlopeNorm(center, vmin, vmax) if center is not None else colors.Normalize(vmin, vmax)
    cmap_ = plt.get_cmap(cmap).copy()
    cmap_.set_bad("#dddddd")
    ax.imshow(np.ma.masked_invalid(v), cmap=cmap_, norm=norm, aspect="auto")
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            x = v[i, j]
            dark = np.isfinite(x) and abs(norm(x) - 0.5) > 0.3
            ax.text(j, i, "n/a" if not np.isfinite(x) else fmt.format(x), ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    for i, j in highlight:
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.6))
    ax.set_xticks(range(len(col_names)), [c.replace(" ", "\n", 1) for c in col_names], fontsize=7)
    ax.set_yticks(range(len(row_names)), row_names, fontsize=7)
    ax.tick_params(length=0)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def curves(ax, x: Sequence[float], series: dict[str, Sequence[float]], *, xlabel: str, ylabel: str,
           title: str | None = None, xticklabels: Sequence[str] | None = None, log_x: bool = False,
           ylim: tuple | None = (-0.02, 1.02), reference: float | None = None, styles: dict | None = None):
    """One line with markers per series over the same x (None or NaN: a gap); `styles[name]`: keyword
    arguments of that line (colour, line style); `reference`: a dotted horizontal line."""
    if reference is not None:
        ax.axhline(reference, color="#888888", linewidth=0.7, linestyle=":")
    for k, (name, ys) in enumerate(series.items()):
        y = np.array([np.nan if u is None else u for u in ys], np.float64)
        ax.plot(x, y, marker="os^Dv<>"[k % 7], markersize=4, linewidth=1.2, label=name,
                **(styles or {}).get(name, {}))
    if log_x:
        ax.set_xscale("log", base=2)
    if xticklabels is not None:
        ax.set_xticks(list(x), list(xticklabels), fontsize=7)
        ax.minorticks_off()
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, linewidth=0.5)
    ax.legend(fontsize=6, frameon=False)
    return ax
