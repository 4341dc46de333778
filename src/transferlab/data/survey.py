"""A survey of a dataset before training on it: counts per split and class, image sizes and
modes, unreadable files, and a grid of sample images per class as read and as augmented.

``python inspect_data.py data=lamoda`` builds the data module and calls ``write_data_report``.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table as RichTable

from transferlab.data.base import ClassificationDataModule
from transferlab.data.datasets import FileDataset
from transferlab.data.sample_grid import sample_grid
from transferlab.tables import markdown_table

log = logging.getLogger(__name__)
REPORT_FILE, GRID_FILE = "data_report.md", "samples.png"
Rows = list[list[Any]]


def write_data_report(
    dm: ClassificationDataModule,
    spec: dict[str, Any],
    output_dir: Path,
    augment: str = "",
    samples_per_class: int = 6,
    grid_classes: int = 40,
    console: Console | None = None,
) -> Path:
    """Write the report and the sample grid of a data module (transforms set) into
    ``output_dir``; return the report. ``augment`` is the training augmentation as text."""
    dm.setup("fit")
    splits = named_splits(dm)
    sections = [
        (f"Images per split and class ({getattr(dm, 'name', '')})", count_table(dm, splits)),
        ("Image sizes (width x height, as stored)", size_table(splits)),
        ("Image modes", mode_table(splits)),
    ]
    unreadable = getattr(dm, "unreadable", {})
    sections.append(
        (
            f"Unreadable files ({len(unreadable)})",
            [["path", "reason"]] + [[str(p), r] for p, r in unreadable.items()],
        )
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    grid = sample_grid(dm.train_set, dm.classes, spec, samples_per_class, grid_classes)
    grid.save(output_dir / GRID_FILE)
    report = output_dir / REPORT_FILE
    report.write_text(markdown(sections, augment=augment))
    console = console or Console()
    for title, rows in sections:
        console.print(rich_table(title, rows))
    log.info("data report: %s, samples: %s", report, output_dir / GRID_FILE)
    return report


def named_splits(dm: ClassificationDataModule) -> dict[str, Any]:
    splits = {"train": dm.train_set, "val": dm.val_set}
    if dm.test_set is not dm.val_set:
        splits["test"] = dm.test_set
    if getattr(dm, "predict_set", None) is not None:
        splits["unlabeled"] = dm.predict_set
    return splits


def count_table(dm: ClassificationDataModule, splits: dict[str, Any]) -> Rows:
    labeled = {name: ds for name, ds in splits.items() if name != "unlabeled"}
    counts = {
        name: np.bincount(ds.targets, minlength=dm.num_classes) for name, ds in labeled.items()
    }
    rows = [["class", *labeled]]
    rows += [[cls, *(int(c[k]) for c in counts.values())] for k, cls in enumerate(dm.classes)]
    rows.append(["total", *(int(c.sum()) for c in counts.values())])
    if "unlabeled" in splits:
        rows.append(["(unlabeled test)", len(splits["unlabeled"]), *[""] * (len(labeled) - 1)])
    return rows


def image_headers(dataset: Any) -> list[tuple[tuple[int, int], str]]:
    """(width, height) and mode of every image of a split, from file headers or the array."""
    if isinstance(dataset, FileDataset):
        headers = []
        for path in dataset.paths[dataset.indices]:
            with Image.open(path) as image:
                headers.append((image.size, image.mode))
        return headers
    shape = dataset.images.shape
    mode = "L" if len(shape) == 3 or shape[-1] == 1 else "RGB"
    return [((shape[2], shape[1]), mode)] * len(dataset)


def size_table(splits: dict[str, Any]) -> Rows:
    rows = [["split", "images", "min", "median", "max", "most common sizes"]]
    for name, ds in splits.items():
        sizes = np.array([size for size, _ in image_headers(ds)])
        if not len(sizes):
            continue
        common = Counter(map(tuple, sizes.tolist())).most_common(3)
        rows.append(
            [
                name,
                len(sizes),
                _wh(sizes.min(0)),
                _wh(np.median(sizes, 0)),
                _wh(sizes.max(0)),
                ", ".join(f"{w}x{h} ({n})" for (w, h), n in common),
            ]
        )
    return rows


def mode_table(splits: dict[str, Any]) -> Rows:
    per_split = {
        name: Counter(mode for _, mode in image_headers(ds)) for name, ds in splits.items()
    }
    modes = sorted({m for c in per_split.values() for m in c})
    return [["split", *modes]] + [[n, *(c.get(m, 0) for m in modes)] for n, c in per_split.items()]


def markdown(sections: list[tuple[str, Rows]], augment: str) -> str:
    parts = ["# Data report\n", f"Sample grid: `{GRID_FILE}` (left: as read; right: augmented).\n"]
    for title, rows in sections:
        parts.append(f"\n## {title}\n")
        if len(rows) < 2:
            parts.append("none\n")
            continue
        parts.append(markdown_table(rows[0], rows[1:]))
    parts.append(f"\n## Training augmentation\n\n```\n{augment}\n```\n")
    return "\n".join(parts)


def rich_table(title: str, rows: Rows) -> RichTable:
    table = RichTable(title=title)
    for column in rows[0]:
        table.add_column(str(column))
    for row in rows[1:]:
        table.add_row(*map(str, row))
    return table


def _wh(size: np.ndarray) -> str:
    return f"{int(size[0])}x{int(size[1])}"
