"""The evidence behind a sweep's answer: each cell's runs as seeds x test images of
correctness (from test_predictions.npz), its 95% CI, and the paired comparisons between cells.

Runs that lack the file (older runs) leave their cell out; the report keeps mean ± std for it.
Deterministic: cells in table order, fixed random seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

import numpy as np

from transferlab.predictions import read_predictions
from transferlab.sweep.runs import Sweep
from transferlab.sweep.stats import (
    Difference,
    holm,
    image_resamples,
    paired_difference,
    seed_resample_interval,
)

PRETRAINED = "pretrained"


def label(values: dict[str, str]) -> str:
    """'model=resnet18, pretrained=true': a cell, or a group of cells, by its swept values."""
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "all jobs"


@dataclass
class Cell:
    """One table row's runs: correctness as seeds x images (the images every run was tested on)."""

    values: dict[str, str]
    correct: np.ndarray
    train_s: float
    low: float = math.nan
    high: float = math.nan

    @property
    def label(self) -> str:
        return label(self.values)

    @property
    def acc(self) -> float:
        return float(self.correct.mean())

    @property
    def seeds(self) -> int:
        return len(self.correct)


@dataclass
class Comparison:
    name: str
    a: Cell
    b: Cell
    result: Difference
    p_holm: float = math.nan


@dataclass
class Evidence:
    cells: list[Cell]
    images: int
    ids: np.ndarray | None = None  # the sample ids of those images, in the cells' column order
    without: list[str] = field(default_factory=list)  # cells with a run lacking predictions
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def best(self) -> Cell:
        return max(self.cells, key=lambda c: c.acc)  # the first of equals: table order

    def cell(self, label: str) -> Cell | None:
        return next((c for c in self.cells if c.label == label), None)


def gather(sweep: Sweep) -> Evidence | None:
    """Cells with per-image evidence for every successful run, their CIs and the comparisons;
    None when no run of the sweep stored its predictions."""
    ok = sweep.ok
    preds = [read_predictions(Path(r).parent) for r in ok["results"]]
    found = [p for p in preds if p is not None]
    if not found:
        return None
    common = common_ids([p.ids for p in found])
    if not len(common):
        return None
    evidence = Evidence(cells=[], images=len(common), ids=common)
    rows = [tuple(row) for row in ok[sweep.cells].itertuples(index=False, name=None)]
    for key in dict.fromkeys(rows):
        members = [p for row, p in zip(rows, preds, strict=True) if row == key]
        values = dict(zip(sweep.cells, map(str, key), strict=True))
        train_s = ok["train_s"][[row == key for row in rows]].astype(float).mean()
        if any(p is None for p in members):
            evidence.without.append(label(values))
            continue
        correct = np.stack([_aligned(p.ids, p.correct, common) for p in members])
        evidence.cells.append(Cell(values, correct, float(train_s)))
    if evidence.cells:
        _intervals(evidence.cells)
        evidence.comparisons = comparisons(evidence)
    return evidence


def common_ids(ids: list[np.ndarray]) -> np.ndarray:
    """The test images every run saw: usually all runs share one test split, in one order."""
    if all(np.array_equal(i, ids[0]) for i in ids[1:]):
        return ids[0]
    return reduce(np.intersect1d, [i.astype(str) for i in ids])


def _aligned(ids: np.ndarray, values: np.ndarray, common: np.ndarray) -> np.ndarray:
    """``values`` (one per id) in the order of ``common``."""
    if np.array_equal(ids, common):
        return values
    ids = ids.astype(str)
    order = np.argsort(ids)
    return values[order[np.searchsorted(ids, common, sorter=order)]]


def _intervals(cells: list[Cell]) -> None:
    """Hierarchical bootstrap: the same image resamples for every run, seeds resampled on each."""
    per_run = image_resamples(np.concatenate([c.correct for c in cells]).T)
    start = 0
    for cell in cells:
        cell.low, cell.high = seed_resample_interval(
            per_run[:, start : start + cell.seeds], cell.label
        )
        start += cell.seeds


def comparisons(evidence: Evidence) -> list[Comparison]:
    """Pretrained minus scratch in each group of the other swept values; every other cell with
    the best's ``pretrained`` minus the best. Holm-adjusted together."""
    cells, best = evidence.cells, evidence.best
    found = []
    for cell in (c for c in cells if _pretrained(c) is True):
        scratch = _scratch_partner(cell, cells)
        if scratch is not None:
            name = f"pre-training ({group(cell, tuned=False)})"
            found.append(Comparison(name, cell, scratch, _diff(cell, scratch)))
    for cell in cells:
        if cell is not best and cell.values.get(PRETRAINED) == best.values.get(PRETRAINED):
            found.append(Comparison(f"{cell.label} vs best", cell, best, _diff(cell, best)))
    for comparison, p in zip(found, holm([c.result.p for c in found]), strict=True):
        comparison.p_holm = p
    return found


def _pretrained(cell: Cell) -> bool | None:
    """``pretrained`` as a bool (Hydra reads true and True alike); None where it was not swept."""
    return {"true": True, "false": False}.get(cell.values.get(PRETRAINED, "").lower())


def _diff(a: Cell, b: Cell) -> Difference:
    return paired_difference(a.correct, b.correct)


TUNED_PREFIX = "optimizer."  # what scripts/tune_arms.py searches per arm (hparams_search)


def _scratch_partner(cell: Cell, cells: list[Cell]) -> Cell | None:
    """The scratch cell with the same other swept values; else, for arms tuned apart (each at
    its own optimizer values, scripts/tune_arms.py), the only one equal in everything else."""
    scratch = [c for c in cells if _pretrained(c) is False]
    same = [c for c in scratch if group(c) == group(cell)]
    if same:
        return same[0]
    tuned = [c for c in scratch if group(c, tuned=False) == group(cell, tuned=False)]
    return tuned[0] if len(tuned) == 1 else None


def group(cell: Cell, tuned: bool = True) -> str:
    """The cell's swept values but ``pretrained`` (and, with ``tuned=False``, its optimizer
    values): what pre-training is compared within."""
    return label(
        {
            k: v
            for k, v in cell.values.items()
            if k != PRETRAINED and (tuned or not k.startswith(TUNED_PREFIX))
        }
    )
