"""Uncertainty of test accuracy from per-image correctness: numpy and scipy only, no torch.

A cell of a sweep is a matrix of correctness, seeds x test images. Two kinds of chance move its
accuracy: which seeds were drawn (initialisation, data order) and which images the test set
happens to hold. The interval of a cell resamples both (a hierarchical bootstrap). A comparison
of two cells pairs them on the same images and adds the seed spread of each: a test on images
alone (McNemar's, or permuting images) would take seed-to-seed noise for a real difference.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
from scipy import stats

RESAMPLES = 2000  # the CI bounds vary by ~0.02 points (sd) between random seeds: ample
RANDOM_SEED = 14  # fixed: the same sweep folder gives the same report, byte for byte
CHUNK = 250  # image resamples drawn at once: 250 x 10,000 counts is 10 MB
ALPHA = 0.05


def image_resamples(correct: np.ndarray, resamples: int = RESAMPLES) -> np.ndarray:
    """Accuracy of every run (columns of ``correct``, images x runs) on ``resamples`` bootstrap
    resamples of the test images: (resamples, runs). Every run sees the same resamples, so
    runs of different cells stay paired on their images."""
    rng = np.random.default_rng(RANDOM_SEED)
    n = correct.shape[0]
    columns = correct.astype(np.float32)
    out = np.empty((resamples, correct.shape[1]))
    for start in range(0, resamples, CHUNK):
        rows = min(CHUNK, resamples - start)
        picks = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
        counts = np.bincount(picks.ravel(), minlength=rows * n).reshape(rows, n)
        out[start : start + rows] = counts.astype(np.float32) @ columns / n
    return out


def seed_resample_interval(per_seed: np.ndarray, label: str) -> tuple[float, float]:
    """95% percentile interval of a cell's mean accuracy: on each image resample (rows of
    ``per_seed``, one column per seed) the seeds are resampled too. ``label`` seeds the draw,
    so a cell's interval does not depend on the cells listed before it."""
    rng = np.random.default_rng([RANDOM_SEED, zlib.crc32(label.encode())])
    resamples, seeds = per_seed.shape
    picks = rng.integers(0, seeds, size=(resamples, seeds))
    means = np.take_along_axis(per_seed, picks, axis=1).mean(axis=1)
    low, high = np.quantile(means, [ALPHA / 2, 1 - ALPHA / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class Difference:
    """Accuracy of a minus b on the same images; NaN where a cell has a single seed."""

    diff: float
    low: float
    high: float
    p: float


def paired_difference(a: np.ndarray, b: np.ndarray) -> Difference:
    """a's accuracy minus b's (seeds x images each, the same images), 95% CI and two-sided p.

    Var(diff) = variance of a's per-seed accuracies / its seeds + the same for b + variance of
    the per-image differences (correctness averaged over seeds) / images, on a t distribution
    with Welch-Satterthwaite degrees of freedom (3 seeds know a cell's spread to 2). The seed
    term holds the seeds' disagreement on single images, which the image term counts again: a
    little conservative, where subtracting it (two-way ANOVA) flagged 6-7% of nulls at 0.05."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    diff = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        return Difference(diff, math.nan, math.nan, math.nan)
    per_image = a.mean(axis=0) - b.mean(axis=0)
    parts = [
        (float(per_image.var(ddof=1)) / len(per_image), len(per_image) - 1),
        *((float(m.mean(axis=1).var(ddof=1)) / len(m), len(m) - 1) for m in (a, b)),
    ]
    variance = sum(v for v, _ in parts)
    if variance == 0:  # identical predictions everywhere
        return Difference(diff, diff, diff, 1.0 if diff == 0 else 0.0)
    dof = variance**2 / sum(v**2 / k for v, k in parts if v > 0)
    se = math.sqrt(variance)
    half = float(stats.t.ppf(1 - ALPHA / 2, dof)) * se
    p = float(2 * stats.t.sf(abs(diff) / se, dof))
    return Difference(diff, diff - half, diff + half, p)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment for the comparisons shown together; NaN stays NaN and does
    not count as a comparison."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = list(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted
