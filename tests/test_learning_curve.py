"""Learning curves acc(n) = a - b n^-c: the fit and its band on points with a known truth, the
inversion behind "images scratch would need", the measured Fashion-MNIST study, and the report."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_sweep_report import ok_results, write_job
from transferlab.sweep.learning_curve import (
    RUNS_COLUMNS,
    CurveFit,
    bootstrap_band,
    describe_match,
    fit_curve,
    images_to_match,
    power_law,
)
from transferlab.sweep.report import write_report

TRUTH = (0.9, 0.6, 0.5)  # a, b, c
SIZES = (10, 30, 100, 300, 1000)


def noisy_points(sizes=SIZES, seeds: int = 3, draw: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every size once per seed: the true curve plus seed noise (sd 0.5 points)."""
    rng = np.random.default_rng(draw)
    n = np.repeat(np.asarray(sizes, dtype=float), seeds)
    return n, power_law(n, *TRUTH) + rng.normal(0, 0.005, len(n))


def test_fit_recovers_known_parameters():
    fit = fit_curve(*noisy_points())
    assert fit.a == pytest.approx(0.9, abs=0.02)
    assert fit.b == pytest.approx(0.6, abs=0.1)
    assert fit.c == pytest.approx(0.5, abs=0.1)
    assert (fit.smallest, fit.largest) == (10, 1000)


def test_band_holds_the_truth_on_most_simulated_studies():
    """Pointwise 95% bands from 3 seeds a size; measured over 40 studies they hold the true curve
    at 88% of the grid (a draw of 3 seeds cannot know their spread well), 81% without the
    sqrt(k/(k-1)) scaling. Checked here on 10 studies, with fewer refits to stay fast."""
    inside = []
    for draw in range(10):
        sizes, accs = noisy_points(draw=100 + draw)
        band = bootstrap_band(sizes, accs, fit_curve(sizes, accs), "arm", resamples=100)
        truth = power_law(band.grid, *TRUTH)
        inside.append((band.low <= truth) & (truth <= band.high))
        assert np.all(band.high - band.low < 0.05)  # a band, not the whole axis
    assert np.mean(inside) >= 0.8
    again = bootstrap_band(sizes, accs, fit_curve(sizes, accs), "arm", resamples=100)
    assert np.array_equal(again.low, band.low)  # fixed draws: the same report every time


def test_fit_needs_three_sizes():
    sizes, accs = noisy_points(sizes=(10, 100))
    assert fit_curve(sizes, accs) is None


def test_images_to_match_inverts_the_curve_inside_the_measured_range():
    fit = CurveFit(*TRUTH, smallest=10, largest=5400)
    assert images_to_match(fit, float(fit(400))) == pytest.approx(400)
    assert describe_match(fit, float(fit(400))) == "400"
    assert images_to_match(fit, float(fit(6000))) is None  # extrapolated: not a measurement
    assert describe_match(fit, float(fit(6000))) == "beyond the measured range (> 5,400)"
    assert images_to_match(fit, 0.9) is None and images_to_match(fit, 0.95) is None  # >= a
    assert describe_match(fit, float(fit(5))) == "< 10 (below the measured range)"


def test_report_has_the_learning_curve_and_its_raw_numbers(tmp_path: Path):
    sweep = tmp_path / "sweep"
    grid = itertools.product((10, 30, 100, None), (True, False), (1, 2, 3))
    for num, (size, pretrained, seed) in enumerate(grid):
        truth = power_law(size or 5400, *TRUTH) - 0.15 * (not pretrained)
        over = {"data.train_per_class": str(size).replace("None", "null")}
        over |= {"pretrained": str(pretrained).lower(), "seed": str(seed)}
        results = ok_results(
            "efficientnet_lite0", pretrained, seed, truth + 0.003 * (seed - 2), size
        )
        write_job(sweep, num, over, results)
    report = write_report(sweep).read_text()
    section = report.split("## Learning curve\n")[1]
    assert "| pretrained | 0.9" in section and "| scratch | 0.75" in section  # a = 0.9, 0.9-0.15
    assert "| 5,400 (all) | 0.8918 [" in section  # mean and its t-interval over 3 seeds
    assert "| 228 |" in section  # scratch: 0.75 - 0.6 n^-0.5 = pretrained's 0.71 at 10 -> n = 225
    assert "beyond the measured range (> 5,400)" in section  # scratch never reaches pretrained
    assert (sweep / "data_efficiency.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((sweep / "learning_curve.json").read_text())
    assert [arm["label"] for arm in saved["arms"]] == ["pretrained", "scratch"]
    assert saved["arms"][0]["fit"]["a"] == pytest.approx(0.9, abs=0.01)
    runs = pd.read_csv(sweep / "runs.csv")
    assert list(runs.columns) == RUNS_COLUMNS and len(runs) == 24
    assert write_report(sweep).read_text() == report  # deterministic, byte for byte


MEASURED = Path(__file__).parent.parent / "docs" / "data_efficiency_fmnist" / "runs.csv"


@pytest.mark.parametrize("pretrained", [True, False], ids=["pretrained", "scratch"])
def test_fit_on_small_sizes_predicts_the_measured_300(pretrained: bool):
    """On the committed Fashion-MNIST study (3 seeds a size): the curve fitted on 10, 30 and 100
    images per class predicts the measured mean at 300 within 3 points."""
    runs = pd.read_csv(MEASURED)
    arm = runs[runs["pretrained"] == pretrained]
    small = arm[arm["images_per_class"].isin([10, 30, 100])]
    assert sorted(small["images_per_class"].unique()) == [10, 30, 100]
    assert small.groupby("images_per_class")["seed"].nunique().min() >= 3
    fit = fit_curve(small["images_per_class"].to_numpy(), small["acc"].to_numpy())
    measured = arm.loc[arm["images_per_class"] == 300, "acc"].mean()
    assert abs(float(fit(300)) - measured) <= 0.03, (float(fit(300)), measured)
