"""The evaluation figures: confusion matrices, one-vs-rest ROC curves, reliability diagrams.
Captioned image grids are data/sample_grid.py's ``image_grid``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files only: eval and predict run on headless machines
import matplotlib.pyplot as plt
import numpy as np

from transferlab.data.sample_grid import save_figure


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    """Counts (left) and row-normalised recall per true class (right), side by side."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    size = max(6.0, 0.55 * len(classes) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, values, title, fmt in (
        (axes[0], matrix, "counts", "d"),
        (axes[1], normalised, "normalised by true class", ".2f"),
    ):
        ax.imshow(values, cmap="Blues", vmin=0)
        ax.set(title=title, xlabel="predicted", ylabel="true")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        top = values.max() if values.size else 0
        for (i, j), v in np.ndenumerate(values):
            colour = "white" if top and v > top / 2 else "black"
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7, color=colour)
    return save_figure(fig, path)


def plot_roc(
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
    auc: Sequence[float],
    classes: Sequence[str],
    path: Path,
) -> Path:
    """One-vs-rest ROC curve per class, its AUC in the legend."""
    fig, ax = plt.subplots(figsize=(7, 6))
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for k, ((fpr, tpr), name) in enumerate(zip(curves, classes, strict=True)):
        ax.plot(fpr, tpr, color=colours(k % colours.N), label=f"{name} (AUC {auc[k]:.3f})")
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, one vs rest")
    ax.set(xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def plot_reliability(curves: dict[str, dict[str, np.ndarray]], path: Path) -> Path:
    """Reliability diagram: accuracy against mean confidence per confidence bin, one line per
    calibration (the diagonal is perfect), and how many samples each bin holds below it."""
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(6, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfectly calibrated")
    for k, (name, bins) in enumerate(curves.items()):
        full = bins["count"] > 0
        ax.plot(bins["confidence"][full], bins["accuracy"][full], "o-", color=f"C{k}", label=name)
        centres = (bins["edges"][:-1] + bins["edges"][1:]) / 2
        width = np.diff(bins["edges"]) / (len(curves) + 1)
        hist.bar(centres + (k - 0.5) * width, bins["count"], width=width, color=f"C{k}")
    ax.set(ylabel="accuracy", title="reliability (top-label confidence)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="upper left")
    hist.set(xlabel="confidence", ylabel="samples")
    return save_figure(fig, path)
