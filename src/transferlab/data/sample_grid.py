"""Grids of images: sample images per class, as read from disk and as the training transform
makes them (the data survey); and captioned grids (eval's wrong answers, Grad-CAM, the audit)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from transferlab.data.transforms import denormalize

LABEL_WIDTH, GAP = 150, 12


def sample_grid(
    dataset: Any,
    classes: list[str],
    spec: dict[str, Any],
    per_class: int = 6,
    max_classes: int = 40,
    seed: int = 0,
) -> Image.Image:
    """One row per class: ``per_class`` originals, a gap, then the same images augmented."""
    tile = int(min(128, max(64, spec["size"])))
    rng = np.random.default_rng(seed)
    targets = np.asarray(dataset.targets)
    shown = classes[:max_classes]
    width = LABEL_WIDTH + 2 * per_class * tile + GAP
    grid = Image.new("RGB", (width, (len(shown) + 1) * tile), "white")
    draw = ImageDraw.Draw(grid)
    draw.text((LABEL_WIDTH, tile // 2), "as read", fill="black")
    draw.text(
        (LABEL_WIDTH + per_class * tile + GAP, tile // 2),
        "augmented (train transform)",
        fill="black",
    )
    for row, name in enumerate(shown, start=1):
        draw.text((4, row * tile + tile // 2), name[:24], fill="black")
        positions = np.flatnonzero(targets == row - 1)
        picked = rng.permutation(positions)[:per_class]
        for col, i in enumerate(picked):
            x = LABEL_WIDTH + col * tile
            grid.paste(fit(Image.fromarray(dataset.raw(i)), tile), (x, row * tile))
            augmented = denormalize(dataset[i][0], spec)
            grid.paste(
                fit(Image.fromarray(augmented), tile), (x + per_class * tile + GAP, row * tile)
            )
    return grid


def fit(image: Image.Image, tile: int) -> Image.Image:
    """``image`` scaled to fit a ``tile`` square, centred on white."""
    image = ImageOps.contain(image, (tile - 2, tile - 2))  # small images grow, big ones shrink
    canvas = Image.new("RGB", (tile, tile), "white")
    canvas.paste(image, ((tile - image.width) // 2, (tile - image.height) // 2))
    return canvas


def image_grid(
    images: Sequence[np.ndarray], captions: Sequence[str], path: Path, columns: int = 4
) -> Path:
    """HxWx3 uint8 images in a grid, each with its caption above it, as a PNG."""
    import matplotlib.pyplot as plt

    columns = max(1, min(columns, len(images)))
    rows = max(1, math.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions, strict=False):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(caption, fontsize=8)
    return save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> Path:
    """Write a matplotlib figure (folders made, layout tightened) and free it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
