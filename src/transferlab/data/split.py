"""Seeded, stratified splits and per-class subsets, computed on label arrays alone."""

from __future__ import annotations

import numpy as np


def split_stratified(
    labels: np.ndarray, val_fraction: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with ``val_fraction`` of every class in val.

    With ``groups``, whole groups move together (near-duplicates of one item never straddle the
    split); groups are assigned to val per class of their first member until the share is met.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"data.val_fraction={val_fraction}: must be between 0 and 1")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    units = np.arange(len(labels)) if groups is None else _group_ids(np.asarray(groups))
    unit_ids, first = np.unique(units, return_index=True)
    unit_label = labels[first]  # a group counts for the class of its first member
    val_units: list[np.ndarray] = []
    for cls in np.unique(unit_label):
        cls_units = rng.permutation(unit_ids[unit_label == cls])
        n_val = round(len(cls_units) * val_fraction)
        if len(cls_units) > 1:  # every class keeps at least one sample on each side
            n_val = min(max(n_val, 1), len(cls_units) - 1)
        val_units.append(cls_units[:n_val])
    is_val = np.isin(units, np.concatenate(val_units))
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def take_per_class(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Positions of at most ``per_class`` random samples of each class (a data-efficiency subset)."""
    if per_class < 1:
        raise ValueError(f"data.train_per_class={per_class}: must be at least 1")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = [
        rng.permutation(np.flatnonzero(labels == cls))[:per_class] for cls in np.unique(labels)
    ]
    return np.sort(np.concatenate(chosen))


def _group_ids(groups: np.ndarray) -> np.ndarray:
    _, ids = np.unique(groups, return_inverse=True)
    return ids
