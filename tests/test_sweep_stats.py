"""A verdict you can trust: per-image test predictions stored by every run, and the sweep
report's intervals and tests, checked on a real run and on simulated sweeps with a known truth."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from tests.test_sweep_report import ok_results, table_row, write_job
from transferlab.predictions import PREDICTIONS_FILE, read_predictions, write_predictions
from transferlab.sweep.evidence import Cell, Evidence, comparisons, gather
from transferlab.sweep.report import write_report
from transferlab.sweep.runs import load_sweep
from transferlab.sweep.stats import holm, image_resamples, paired_difference
from transferlab.sweep.verdict import answer

# The size docs/sweeps.md recommends: 3 seeds x the 10,000 Fashion-MNIST test images.
SEEDS, IMAGES = 3, 10_000
# A simulated run decides image i right when  mu + difficulty_i + arch_i + seed + noise_si > 0
# (all normal): images share a difficulty, each cell has its own per-image strengths, each seed
# shifts the whole run and errs on its own images. Measured below: seed sd ~0.35 points of
# accuracy, two seeds of a cell disagree on ~6% of the images, two cells on ~10%.
DIFFICULTY, ARCH, NOISE, SEED_SHIFT = 1.0, 0.5, 0.35, 0.02


def simulate(rng, difficulty: np.ndarray, acc: float, seeds: int = SEEDS) -> np.ndarray:
    """Correctness (seeds x images) of a cell whose expected accuracy is ``acc``."""
    total = math.hypot(DIFFICULTY, ARCH, NOISE, SEED_SHIFT)
    score = total * norm.ppf(acc) + difficulty + rng.normal(0, ARCH, difficulty.shape)
    shifts = rng.normal(0, SEED_SHIFT, (seeds, 1))
    return score + shifts + rng.normal(0, NOISE, (seeds, difficulty.size)) > 0


def simulated_sweep(rng, accs: dict[tuple[str, str], float]) -> Evidence:
    """Cells (model, pretrained) with the given true accuracies, tested on the same images."""
    difficulty = rng.normal(0, DIFFICULTY, IMAGES)
    cells = [
        Cell({"model": m, "pretrained": p}, simulate(rng, difficulty, acc), 0.0)
        for (m, p), acc in accs.items()
    ]
    return Evidence(cells=cells, images=IMAGES)


def test_simulated_runs_look_like_fashion_mnist_seeds():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, DIFFICULTY, IMAGES)
    a, b = simulate(rng, difficulty, 0.9, 20), simulate(rng, difficulty, 0.9, 1)
    assert 0.002 < a.mean(axis=1).std(ddof=1) < 0.006  # seed-to-seed sd of accuracy
    assert 0.04 < (a[0] != a[1]).mean() < 0.08 and 0.08 < (a[0] != b[0]).mean() < 0.14


def test_at_most_4_of_40_null_comparisons_are_flagged():
    """Equal true accuracy, seed spread and all: the raw (unadjusted) p < 0.05 at most 4 times.
    An image-only test on one seed each (McNemar) flags about 1 in 5 of these."""
    rng = np.random.default_rng(1)
    flagged, covered = 0, 0
    for _ in range(40):
        difficulty = rng.normal(0, DIFFICULTY, IMAGES)
        result = paired_difference(simulate(rng, difficulty, 0.9), simulate(rng, difficulty, 0.9))
        flagged += result.p < 0.05
        covered += result.low < 0 < result.high
    print(f"null comparisons flagged: {flagged}/40")
    assert flagged <= 4 and covered == 40 - flagged  # the CI and the p-value agree


def test_a_two_point_gain_is_found_in_90_percent_of_recommended_sweeps():
    """2 models x pretrained/scratch x 3 seeds x 10,000 images, pre-training worth 2 points
    for one model: the report's Holm-adjusted comparison finds it in >= 36 of 40 sweeps."""
    rng = np.random.default_rng(2)
    accs = {("a", "true"): 0.90, ("a", "false"): 0.88, ("b", "true"): 0.90, ("b", "false"): 0.90}
    found = 0
    for _ in range(40):
        shown = comparisons(simulated_sweep(rng, accs))
        gain = next(c for c in shown if c.name == "pre-training (model=a)")
        found += gain.p_holm < 0.05 and gain.result.diff > 0
    print(f"2-point gain found in {found}/40 sweeps")
    assert found >= 36


def test_holm_adjusts_in_order_and_skips_untested():
    adjusted = holm([0.01, 0.04, math.nan, 0.03])
    assert adjusted == pytest.approx([0.03, 0.06, math.nan, 0.06], nan_ok=True)


def test_every_run_sees_the_same_image_resamples():
    correct = np.random.default_rng(3).random((500, 3)) < 0.8
    means = image_resamples(np.concatenate([correct, correct[:, :1]], axis=1), resamples=300)
    assert np.array_equal(means[:, 0], means[:, 3])  # a copy of a run: identical resamples
    assert abs(means[:, :3].mean(axis=0) - correct.mean(axis=0)).max() < 0.01


@pytest.mark.slow
def test_a_run_stores_the_predictions_its_test_accuracy_comes_from(tiny_run: Path):
    preds = read_predictions(tiny_run)
    results = json.loads((tiny_run / "results.json").read_text())
    assert preds.correct.mean() == pytest.approx(results["test"]["test/acc"], abs=1e-6)
    split = json.loads((tiny_run / "split.json").read_text())
    assert set(preds.ids.tolist()) <= set(split["test"]) and len(set(preds.ids.tolist())) == len(
        preds.ids
    )
    assert preds.probs.dtype == np.float16 and preds.probs.shape == (len(preds.ids), 10)
    assert np.allclose(preds.probs.astype(np.float32).sum(axis=1), 1, atol=0.01)
    assert (preds.confidence >= preds.probs.max(axis=1) - 1e-3).all()
    assert (tiny_run / PREDICTIONS_FILE).stat().st_size < 40 * len(preds.ids) + 2000


def fake_sweep(
    root: Path, accs: dict, seeds: int = SEEDS, predictions: bool = True, images: int = IMAGES
) -> Path:
    """A sweep folder as train.py leaves it, with simulated per-image predictions."""
    rng = np.random.default_rng(4)
    difficulty = rng.normal(0, DIFFICULTY, images)
    labels = np.arange(images) % 10
    num = 0
    for (model, pretrained), acc in accs.items():
        for seed, correct in enumerate(simulate(rng, difficulty, acc, seeds), start=1):
            over = {"model": model, "pretrained": pretrained, "seed": str(seed)}
            results = ok_results(model, pretrained == "true", seed, float(correct.mean()))
            write_job(root, num, over, results)
            if predictions:
                predicted = np.where(correct, labels, (labels + 1) % 10)
                write_predictions(root / str(num), range(images), labels, np.eye(10)[predicted])
            num += 1
    return root


ACCS = {
    ("resnet18", "true"): 0.91,
    ("resnet18", "false"): 0.87,
    ("efficientnet_lite0", "true"): 0.85,
    ("efficientnet_lite0", "false"): 0.84,
}


def test_report_opens_with_the_answer_and_is_byte_identical(tmp_path: Path, capsys):
    sweep = fake_sweep(tmp_path / "sweep", ACCS)
    started = time.perf_counter()
    first = write_report(sweep).read_bytes()
    print(f"report of a 2x2x3-seed sweep with {IMAGES} test images: ", end="")
    print(f"{time.perf_counter() - started:.2f} s")
    assert write_report(sweep).read_bytes() == first
    report = first.decode()
    best, pre, cost = report.splitlines()[2:5]
    assert best.startswith("- **Best:** `model=resnet18, pretrained=true`, test acc 0.9")
    assert "ahead of `model=efficientnet_lite0, pretrained=true` (Holm p < 0.0001)." in best
    assert pre.startswith("- **Pre-training:** pays off: +") and "for `model=resnet18`" in pre
    assert "a significant gain in 2 of 2 groups" not in pre  # effnet's 1 point is not resolved
    assert cost.startswith("- **Cost:** pretrained `model=resnet18` trained in 20 s")
    acc = table_row(report, "resnet18", "true")[1]
    low, high = map(float, acc.split("(")[1].rstrip(")").split("–"))
    assert low < float(acc.split()[0]) < high and high - low < 0.02
    assert "| pre-training (model=efficientnet_lite0) |" in report.split("## Comparisons")[1]
    assert "Best: `model=resnet18, pretrained=true`" in capsys.readouterr().out


def test_one_seed_is_not_enough_evidence(tmp_path: Path):
    report = write_report(fake_sweep(tmp_path / "sweep", ACCS, seeds=1, images=2000)).read_text()
    assert "- **Best:** not enough evidence: run more seeds." in report
    assert "- **Pre-training:** not enough evidence: run more seeds" in report


def test_a_close_race_asks_for_more_seeds(tmp_path: Path):
    close = {("resnet18", "true"): 0.90, ("efficientnet_lite0", "true"): 0.90}  # CI > ±1 point
    report = write_report(fake_sweep(tmp_path / "sweep", close, seeds=2, images=2000)).read_text()
    assert "- **Best:** not enough evidence: run more seeds." in report


def test_older_runs_without_predictions_keep_mean_and_std(tmp_path: Path):
    sweep = fake_sweep(tmp_path / "sweep", ACCS, predictions=False, images=2000)
    report = write_report(sweep).read_text()
    assert "- **Answer:** not enough evidence: no run stored its per-image" in report
    assert "±" in table_row(report, "resnet18", "true")[1] and "## Comparisons" not in report
    fake_sweep(tmp_path / "mixed", ACCS, images=2000)
    (tmp_path / "mixed" / "0" / PREDICTIONS_FILE).unlink()  # one old run in resnet18/true
    mixed = write_report(tmp_path / "mixed").read_text()
    assert "mean ± std only: `model=resnet18, pretrained=true`" in mixed
    assert "±" in table_row(mixed, "resnet18", "true")[1]
    assert "(" in table_row(mixed, "resnet18", "false")[1]


def test_equal_cells_are_called_tied_not_a_winner(tmp_path: Path):
    equal = {("resnet18", "true"): 0.90, ("efficientnet_lite0", "true"): 0.90}
    best = answer(gather(load_sweep(fake_sweep(tmp_path / "sweep", equal))))[0]
    assert "; tied with `model=" in best and "within ±1 point" in best


def test_runs_are_paired_by_sample_id_not_by_position(tmp_path: Path):
    sweep = fake_sweep(tmp_path / "sweep", ACCS, images=2000)
    before = gather(load_sweep(sweep))
    stored = read_predictions(sweep / "0")
    order = np.random.default_rng(5).permutation(2000)[1:]  # shuffled, one image missing
    probs = stored.probs[order].astype(np.float32)
    write_predictions(sweep / "0", stored.ids[order], stored.labels[order], probs)
    after = gather(load_sweep(sweep))
    assert after.images == 1999 and set(after.ids.astype(int)) == set(order)
    for old, new in zip(before.cells, after.cells, strict=True):
        assert np.array_equal(old.correct[:, after.ids.astype(int)], new.correct)


def test_arms_tuned_apart_are_still_compared(tmp_path: Path):
    """scripts/tune_arms.py runs each arm's seeds at its own lr: pretrained and scratch differ in
    optimizer values too, and the report still pairs them for the pre-training verdict."""
    rng = np.random.default_rng(5)
    difficulty = rng.normal(0, DIFFICULTY, 2000)
    labels = np.arange(2000) % 10
    root, num = tmp_path / "seeds", 0
    for pretrained, lr, acc in (("true", "0.0016", 0.81), ("false", "0.0077", 0.74)):
        for seed, correct in enumerate(simulate(rng, difficulty, acc), start=1):
            over = {"pretrained": pretrained, "optimizer.lr": lr, "seed": str(seed)}
            results = ok_results("efficientnet_lite0", pretrained == "true", seed, correct.mean())
            write_job(root / f"pretrained_{pretrained}", num, over, results)
            predicted = np.where(correct, labels, (labels + 1) % 10)
            job = root / f"pretrained_{pretrained}" / str(num)
            write_predictions(job, range(2000), labels, np.eye(10)[predicted])
            num += 1
    report = write_report(root).read_text()
    pre = report.splitlines()[3]
    assert pre.startswith("- **Pre-training:** pays off: +"), pre
    row = "| pre-training (all jobs) | pretrained=true, optimizer.lr=0.0016 | pretrained=false, "
    assert row in report
