"""Learning curves: test accuracy as a power law of training images per class,
acc(n) = a - b * n^(-c), fitted per arm of a data-efficiency sweep (pretrained, scratch, ...).

a is the accuracy the arm approaches with unlimited data, b and c how fast it gets there. The fit
reads every run (each seed a point), so sizes with more seeds weigh more; its band comes from
refits on seeds resampled within each size. Inverting the scratch curve answers "how many
images per class would scratch need to match pretrained?", only inside the measured sizes.
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit

from transferlab.sweep.stats import ALPHA, RANDOM_SEED

RESAMPLES = 500  # refits for the band; fixed draws (RANDOM_SEED) keep the report byte-identical
BOUNDS = ([0.0, 0.0, 0.0], [1.0, np.inf, 3.0])  # 0 <= a <= 1, b >= 0, 0 <= c <= 3
EXPONENT_STARTS = (0.3, 0.7, 1.5)  # c is the parameter least-squares gets stuck on: try several
GRID_POINTS = 100
RUNS_COLUMNS = ["train_per_class", "images_per_class", "pretrained", "seed", "acc"]


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(n, -c)


@dataclass(frozen=True)
class CurveFit:
    """One arm's fitted curve and the sizes it was measured at (its honest range)."""

    a: float
    b: float
    c: float
    smallest: float
    largest: float

    def __call__(self, n: np.ndarray | float) -> np.ndarray:
        return power_law(np.asarray(n, dtype=float), self.a, self.b, self.c)


def fit_curve(sizes: np.ndarray, accs: np.ndarray) -> CurveFit | None:
    """Least-squares fit to per-run points; None with fewer than 3 sizes or no convergence."""
    sizes, accs = np.asarray(sizes, dtype=float), np.asarray(accs, dtype=float)
    if len(np.unique(sizes)) < 3:
        return None
    best, best_error = None, math.inf
    for c in EXPONENT_STARTS:
        params = _least_squares(sizes, accs, _start(sizes, accs, c))
        error = float(np.sum((power_law(sizes, *params) - accs) ** 2)) if params else math.inf
        if error < best_error:
            best, best_error = params, error
    return CurveFit(*best, sizes.min(), sizes.max()) if best else None


def _start(sizes: np.ndarray, accs: np.ndarray, c: float) -> list[float]:
    """a just above the best accuracy; b so that the curve passes the smallest size's mean."""
    a = min(1.0, float(accs.max()) + 0.02)
    low = float(accs[sizes == sizes.min()].mean())
    return [a, max(a - low, 1e-3) * float(sizes.min()) ** c, c]


def _least_squares(sizes: np.ndarray, accs: np.ndarray, start: list[float]) -> list[float] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # no covariance from 3 points: fine
            params, _ = curve_fit(power_law, sizes, accs, p0=start, bounds=BOUNDS, maxfev=5000)
    except (RuntimeError, ValueError):
        return None
    return [float(p) for p in params]


@dataclass(frozen=True)
class Band:
    """2.5-97.5 percentiles of the refitted curves on ``grid`` and of the parameters a, b, c."""

    grid: np.ndarray
    low: np.ndarray
    high: np.ndarray
    params_low: tuple[float, float, float]
    params_high: tuple[float, float, float]


def bootstrap_band(
    sizes: np.ndarray, accs: np.ndarray, fit: CurveFit, label: str, resamples: int = RESAMPLES
) -> Band:
    """Refit on seeds drawn with replacement within each size (the sizes stay as measured).

    A draw of k seeds from k has a mean that varies (k-1)/k times as much as the seeds' own
    mean: with 3 seeds the band would be a fifth too narrow. So each seed's deviation from its
    size's mean is scaled by sqrt(k/(k-1)) before the draws. ``label`` seeds them, so an arm's
    band does not depend on the arms before it."""
    sizes, accs = np.asarray(sizes, dtype=float), np.asarray(accs, dtype=float)
    rng = np.random.default_rng([RANDOM_SEED, zlib.crc32(label.encode())])
    groups = [np.flatnonzero(sizes == s) for s in np.unique(sizes)]
    order = np.concatenate(groups)
    centre, deviation = np.empty_like(accs), np.zeros_like(accs)
    for g in groups:
        centre[g] = accs[g].mean()
        if len(g) > 1:
            deviation[g] = (accs[g] - centre[g]) * (len(g) / (len(g) - 1)) ** 0.5
    start = [fit.a, fit.b, fit.c]
    params = []
    for _ in range(resamples):
        picks = np.concatenate([rng.choice(g, size=len(g)) for g in groups])
        refit = _least_squares(sizes[order], centre[order] + deviation[picks], start)
        if refit:
            params.append(refit)
    params = np.array(params or [start])
    grid = np.geomspace(fit.smallest, fit.largest, GRID_POINTS)
    curves = power_law(grid[None, :], *(params[:, [k]] for k in range(3)))
    quantiles = [ALPHA / 2, 1 - ALPHA / 2]
    low, high = np.quantile(curves, quantiles, axis=0)
    p_low, p_high = np.quantile(params, quantiles, axis=0)
    return Band(grid, low, high, tuple(map(float, p_low)), tuple(map(float, p_high)))


def images_to_match(scratch_fit: CurveFit, target_acc: float) -> float | None:
    """Images per class at which ``scratch_fit`` reaches ``target_acc``: n = (b / (a - acc))^(1/c).
    None when the curve never gets there (target >= a) or only past the largest measured size:
    a power law extrapolated beyond its data is a guess, not a measurement."""
    fit = scratch_fit
    if target_acc >= fit.a or fit.b == 0 or fit.c == 0:
        return None
    needed = (fit.b / (fit.a - target_acc)) ** (1 / fit.c)
    return float(needed) if needed <= fit.largest else None


def describe_match(scratch_fit: CurveFit, target_acc: float) -> str:
    """images_to_match as a table cell: a count, or why there is none."""
    needed = images_to_match(scratch_fit, target_acc)
    if needed is None:
        return f"beyond the measured range (> {scratch_fit.largest:,.0f})"
    if needed < scratch_fit.smallest:
        return f"< {scratch_fit.smallest:,.0f} (below the measured range)"
    return f"{needed:,.0f}"


def mean_interval(values: pd.Series) -> tuple[float, float, float]:
    """Mean over seeds and its 95% t-interval; NaN bounds for a single seed."""
    values = values.dropna().astype(float)
    mean, count = float(values.mean()), len(values)
    if count < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(1 - ALPHA / 2, count - 1)) * float(values.std(ddof=1)) / count**0.5
    return mean, mean - half, mean + half


def size_means(runs: pd.DataFrame) -> pd.DataFrame:
    """Per training size: mean test accuracy, its 95% interval and the number of runs."""
    rows = {
        size: (*mean_interval(group["acc"]), group["acc"].notna().sum())
        for size, group in runs.groupby("images_per_class", sort=True)
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["mean", "low", "high", "runs"])


def size_label(size: float, runs: pd.DataFrame) -> str:
    """'300', or '5400 (all)' for the size of runs that trained on the whole training split."""
    whole = runs.loc[runs["images_per_class"] == size, "train_per_class"].isna().all()
    return f"{size:,.0f} (all)" if whole else f"{size:,.0f}"


# --- a sweep's arms -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """The runs of one swept choice besides the size (e.g. pretrained), with their curve."""

    label: str  # e.g. "model=resnet18, scratch"
    group: str  # the swept choices except pretrained: pairs a pretrained arm with its scratch one
    pretrained: bool
    runs: pd.DataFrame  # one row per ok run: images_per_class, train_per_class, acc, ...
    fit: CurveFit | None
    band: Band | None


def arm_keys(cells: list[str]) -> list[str]:
    """The swept keys that tell arms apart: all but the training size (and the seed)."""
    return [k for k in cells if "train_per_class" not in k]


def groups_by(runs: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """Runs grouped by ``keys`` in sweep order, each with its tuple of values."""
    if not keys:
        return [((), runs)] if len(runs) else []
    return [((k,) if not isinstance(k, tuple) else k, g) for k, g in runs.groupby(keys, sort=False)]


def arm_label(keys: list[str], cell: tuple, pretrained: bool) -> tuple[str, str]:
    """(label, group) of an arm: the swept choices other than pretrained, then which init."""
    group = ", ".join(f"{k}={v}" for k, v in zip(keys, cell, strict=True) if k != "pretrained")
    return f"{group + ', ' if group else ''}{'pretrained' if pretrained else 'scratch'}", group


def measured_arms(runs: pd.DataFrame, cells: list[str], resamples: int = RESAMPLES) -> list[Arm]:
    """Every arm of a sweep's ok ``runs`` with its fit and band; [] unless the size varies."""
    runs = runs.dropna(subset=["images_per_class", "acc"])
    if runs["images_per_class"].nunique() < 2:
        return []
    keys, arms = arm_keys(cells), []
    for cell, group in groups_by(runs, keys):
        pretrained = bool(group["is_pretrained"].iloc[0])
        label, pairing = arm_label(keys, cell, pretrained)
        sizes, accs = group["images_per_class"].to_numpy(), group["acc"].to_numpy()
        fit = fit_curve(sizes, accs)
        band = bootstrap_band(sizes, accs, fit, label, resamples) if fit else None
        arms.append(Arm(label, pairing, pretrained, group, fit, band))
    return arms


def arm_record(arm: Arm, scratch: CurveFit | None) -> dict:
    """An arm as plain data: its fit with 95% bounds, its per-size means and, for a pretrained
    arm, the images per class its scratch partner would need (None: beyond the measured range)."""
    sizes = []
    for size, (mean, low, high, count) in size_means(arm.runs).iterrows():
        entry = {"images_per_class": size, "label": size_label(size, arm.runs), "mean": mean}
        entry |= {"ci95": None if math.isnan(low) else [low, high], "runs": int(count)}
        if arm.pretrained and scratch:
            entry["scratch_would_need"] = images_to_match(scratch, mean)
        sizes.append(entry)
    fit, band = arm.fit, arm.band
    bounds = band and zip(band.params_low, band.params_high, strict=True)
    return {
        "label": arm.label,
        "pretrained": arm.pretrained,
        "fit": fit and {"a": fit.a, "b": fit.b, "c": fit.c},
        "fit_95": bounds and dict(zip("abc", map(list, bounds), strict=True)),
        "sizes": sizes,
    }
