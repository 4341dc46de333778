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

from transferlab.sweep.runs import Sweep


def plot_learning_curves(sweep: Sweep, path: Path) -> Path | None:
    """Validation accuracy per epoch, averaged over seeds; None when no run has a history."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours: dict[tuple, str] = {}
    for cell, runs in _groups(sweep.ok, sweep.cells):
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


def plot_data_efficiency(sweep: Sweep, path: Path) -> Path | None:
    """Test accuracy (mean ± std over seeds) per training images per class; None if one size only."""
    ok = sweep.ok.dropna(subset=["images_per_class"])
    if ok["images_per_class"].nunique() < 2:
        return None
    keys = [k for k in sweep.cells if "train_per_class" not in k]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours: dict[tuple, str] = {}
    for cell, runs in _groups(ok, keys):
        stats = runs.groupby("images_per_class")["acc"].agg(["mean", "std"]).sort_index()
        ax.errorbar(
            stats.index,
            stats["mean"],
            yerr=stats["std"].fillna(0.0),
            marker="o",
            capsize=3,
            **_style(runs, cell, keys, colours),
        )
    ax.set_xscale("log")
    sizes = sorted(ok["images_per_class"].unique())
    ax.set_xticks(sizes, [_size_label(s, ok) for s in sizes])
    ax.minorticks_off()
    return _save(fig, ax, path, "training images per class", "test accuracy", "Data efficiency")


def _groups(runs: pd.DataFrame, keys: list[str]):
    if not keys:
        return [((), runs)] if len(runs) else []
    return [((k,) if not isinstance(k, tuple) else k, g) for k, g in runs.groupby(keys, sort=False)]


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
    label = ", ".join(f"{k}={v}" for k, v in zip(keys, cell, strict=True) if k != "pretrained")
    label = f"{label + ', ' if label else ''}{'pretrained' if pretrained else 'scratch'}"
    return {"color": colour, "linestyle": "-" if pretrained else "--", "label": label}


def _size_label(size: float, runs: pd.DataFrame) -> str:
    whole = runs.loc[runs["images_per_class"] == size, "train_per_class"].isna().all()
    return f"{size:g}\n(all)" if whole else f"{size:g}"


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
