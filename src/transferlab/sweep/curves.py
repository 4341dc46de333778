"""The sweep's figures: learning curves, and test accuracy against training images per class.

Pretrained runs are solid lines, scratch runs dashed; a colour per remaining swept choice.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: reports are built on headless machines
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from transferlab.sweep.learning_curve import (
    Arm,
    arm_keys,
    arm_label,
    groups_by,
    measured_arms,
    size_label,
    size_means,
)
from transferlab.sweep.runs import Sweep


def plot_learning_curves(sweep: Sweep, path: Path) -> Path | None:
    """Validation accuracy per epoch, averaged over seeds; None when no run has a history."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours: dict[tuple, str] = {}
    for cell, runs in groups_by(sweep.ok, sweep.cells):
        curves = [_val_acc(history) for history in runs["history"]]
        curves = [c for c in curves if not c.empty]
        if not curves:
            continue
        mean = pd.concat(curves, axis=1).mean(axis=1).sort_index()
        ax.plot(
            mean.index + 1,
            mean.to_numpy(),
            marker="o" if len(mean) < 15 else None,
            markersize=3,
            **_style(runs, cell, sweep.cells, colours),
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, ax, path, "epoch", "validation accuracy", "Learning curves (mean over seeds)")


def plot_data_efficiency(sweep: Sweep, path: Path, arms: list[Arm] | None = None) -> Path | None:
    """Test accuracy per training images per class: each arm's mean over seeds with its 95%
    t-interval, and its fitted learning curve with the bootstrap band; None if one size only."""
    arms = measured_arms(sweep.ok, sweep.cells) if arms is None else arms
    if not arms:
        return None
    keys = arm_keys(sweep.cells)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours: dict[tuple, str] = {}
    for arm in arms:
        _draw_arm(ax, arm, _style(arm.runs, tuple(arm.runs[keys].iloc[0]), keys, colours))
    ax.set_xscale("log")
    runs = pd.concat([arm.runs for arm in arms])
    sizes = sorted(runs["images_per_class"].unique())
    ax.set_xticks(sizes, [size_label(s, runs).replace(" (", "\n(") for s in sizes])
    ax.minorticks_off()
    title = "Data efficiency: mean and 95% CI over seeds, fit a - b·n^-c with 95% band"
    return _save(fig, ax, path, "training images per class", "test accuracy", title)


def _draw_arm(ax, arm: Arm, style: dict) -> None:
    """Measured means with 95% CIs as points; through them the fit and its band, which carry
    the arm's line style and legend entry. Without a fit the points are joined."""
    means = size_means(arm.runs)
    spread = [(means["mean"] - means["low"]).fillna(0), (means["high"] - means["mean"]).fillna(0)]
    points = style if not arm.fit else style | {"linestyle": "none", "label": None}
    ax.errorbar(means.index, means["mean"], yerr=spread, marker="o", capsize=3, **points)
    if arm.fit and arm.band:
        band = arm.band
        ax.plot(band.grid, arm.fit(band.grid), linewidth=1.2, **style)
        ax.fill_between(band.grid, band.low, band.high, color=style["color"], alpha=0.15, lw=0)


def _val_acc(history: list[dict]) -> pd.Series:
    """val/acc per epoch, skipping epochs that only repeat the last validation.

    With validation every N steps (data_efficiency), an epoch can end without a new validation;
    its row then carries every val metric unchanged, which no real validation reproduces.
    """
    points, last = {}, None
    for row in history:
        seen = tuple(sorted((k, v) for k, v in row.items() if k.startswith("val/")))
        if "val/acc" in row and seen != last:
            points[row["epoch"]] = row["val/acc"]
        last = seen
    return pd.Series(points, dtype=float)


def _style(runs: pd.DataFrame, cell: tuple, keys: list[str], colours: dict[tuple, str]) -> dict:
    """Solid for pretrained, dashed for scratch; one colour per value of the other keys."""
    pretrained = bool(runs["is_pretrained"].iloc[0])
    rest = tuple(v for k, v in zip(keys, cell, strict=True) if k != "pretrained")
    colour = colours.setdefault(rest, f"C{len(colours) % 10}")
    label, _ = arm_label(keys, cell, pretrained)
    return {"color": colour, "linestyle": "-" if pretrained else "--", "label": label}


def _save(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> Path | None:
    if not ax.lines:
        plt.close(fig)
        return None
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
