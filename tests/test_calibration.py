"""Temperature scaling and the conformal unknown, on a real trained run and real Fashion-MNIST."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import FMNIST_DIR, run_script
from transferlab.data.idx import read_idx
from transferlab.data.transforms import to_rgb
from transferlab.evaluation.calibration import expected_calibration_error
from transferlab.inference.predictor import Predictor
from transferlab.training.checkpoint import load_run
from transferlab.training.temperature import calibration_file, fit_temperature
from transferlab.unknown import UNKNOWN, accepted, conformal_threshold

pytestmark = pytest.mark.slow
POOL = 20000  # real images: 10000 test + the last 10000 of the train file (never trained on here)


@pytest.fixture(scope="module")
def real_logits(tiny_run: Path) -> tuple[torch.Tensor, np.ndarray, Predictor]:
    """The tiny run's logits and labels on 20000 real Fashion-MNIST images, computed once."""
    images = np.concatenate(
        [
            read_idx(FMNIST_DIR / "t10k-images-idx3-ubyte.gz"),
            read_idx(FMNIST_DIR / "train-images-idx3-ubyte.gz")[-10000:],
        ]
    )
    labels = np.concatenate(
        [
            read_idx(FMNIST_DIR / "t10k-labels-idx1-ubyte.gz"),
            read_idx(FMNIST_DIR / "train-labels-idx1-ubyte.gz")[-10000:],
        ]
    ).astype(np.int64)
    predictor = Predictor.from_checkpoint(tiny_run / "checkpoints" / "best.ckpt", device="cpu")
    logits = []
    with torch.inference_mode():
        for start in range(0, POOL, 500):
            batch = predictor.preprocess([to_rgb(x) for x in images[start : start + 500]])
            logits.append(predictor.net(batch).float())
    return torch.cat(logits), labels, predictor


def test_conformal_unknown_keeps_its_promise_over_20_splits(real_logits):
    """P(answer is the true label or unknown) ~= 1 - alpha on fresh data, split after split."""
    logits, labels, predictor = real_logits
    probs = (logits / predictor.temperature).softmax(dim=1).numpy()
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    assert 1 - correct.mean() > 0.15  # errs on more than alpha: the coverage is then tight too
    rng = np.random.default_rng(0)
    coverages = []
    for _ in range(20):
        order = rng.permutation(POOL)
        calib, test = order[: POOL // 2], order[POOL // 2 :]
        threshold = conformal_threshold(confidence[calib], correct[calib], alpha=0.1)
        kept = accepted(confidence[test], threshold)
        coverages.append(np.mean(correct[test] | ~kept))
    print(f"coverage over 20 splits: {min(coverages):.4f}..{max(coverages):.4f}")
    assert min(coverages) >= 0.88 and max(coverages) <= 0.92
    assert np.mean(coverages) == pytest.approx(0.9, abs=0.005)
    names = [predictor.classes[k] for k in probs.argmax(axis=1)[:200]]
    predictor.threshold = threshold  # the Predictor applies the same rule to the same numbers
    decided = [p.label for p in predictor.decide(probs[:200])]
    keep = accepted(confidence[:200], threshold)
    assert decided == [n if k else UNKNOWN for n, k in zip(names, keep, strict=True)]


def test_conformal_threshold_edges():
    confidence, correct = np.array([0.9, 0.8, 0.7]), np.array([True, False, True])
    assert conformal_threshold(confidence, correct, 0.1) == 1.0  # 3 samples cannot promise 90%
    assert conformal_threshold(np.full(99, 0.5), np.ones(99, bool), 0.1) == 0.0  # never wrong
    with pytest.raises(ValueError, match=r"unknown\.alpha"):
        conformal_threshold(confidence, correct, 0.0)


def test_fitted_temperature_minimises_nll_and_the_predictor_uses_it(real_logits):
    logits, labels, predictor = real_logits
    target = torch.as_tensor(labels)
    fit, held = slice(0, 5000), slice(5000, 10000)
    t = fit_temperature(logits[fit], target[fit])

    def nll(temperature: float) -> float:
        return float(F.cross_entropy(logits[fit] / temperature, target[fit]))

    assert nll(t) <= min(nll(1.0), nll(t * 1.05), nll(t / 1.05)) + 1e-9
    before = (logits[held]).softmax(dim=1).numpy()
    after = (logits[held] / t).softmax(dim=1).numpy()
    ece = (
        expected_calibration_error(before, labels[held]),
        expected_calibration_error(after, labels[held]),
    )
    held_nll = [float(F.cross_entropy(logits[held] / T, target[held])) for T in (1.0, t)]
    print(
        f"T={t:.3f} held-out NLL {held_nll[0]:.4f} -> {held_nll[1]:.4f}, ECE {ece[0]:.4f} -> {ece[1]:.4f}"
    )
    # T fitted on one half does not hurt the other beyond noise (the tiny run is barely trained,
    # so its T moves the held-out NLL little either way; a wrong T moves it far) and leaves the
    # held-out images calibrated
    assert held_nll[1] <= held_nll[0] * 1.001
    assert ece[1] < 0.03
    batch = predictor.preprocess([to_rgb(x) for x in read_idx_head(8)])
    expected = (predictor.net(batch) / predictor.temperature).softmax(dim=1).detach().numpy()
    assert predictor.probabilities(batch) == pytest.approx(expected, abs=1e-6)


def read_idx_head(count: int) -> np.ndarray:
    return read_idx(FMNIST_DIR / "t10k-images-idx3-ubyte.gz")[:count]


def test_train_stores_the_temperature_and_load_run_checks_it(tiny_run: Path, tmp_path: Path):
    record = json.loads(calibration_file(tiny_run / "checkpoints" / "best.ckpt").read_text())
    assert record["checkpoint"] == "best.ckpt" and record["temperature"] != 1.0
    assert record["val_nll_calibrated"] <= record["val_nll"]
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["calibration"] == record
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("wandb", "last.ckpt"))
    ckpt = copy / "checkpoints" / "best.ckpt"
    assert load_run(ckpt).temperature == record["temperature"]
    stale = {**record, "global_step": record["global_step"] + 1}  # best.ckpt overwritten since
    calibration_file(ckpt).write_text(json.dumps(stale))
    assert load_run(ckpt).temperature == 1.0
    calibration_file(ckpt).unlink()  # a run trained before calibration existed
    assert Predictor.from_checkpoint(ckpt, device="cpu").temperature == 1.0


def test_eval_fits_a_missing_temperature_and_reports_calibration_alpha_and_tta(
    tiny_run: Path, tmp_path: Path
):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("wandb", "last.ckpt"))
    ckpt = copy / "checkpoints" / "best.ckpt"
    calibration_file(ckpt).unlink()
    out = tmp_path / "eval"
    args = [f"ckpt_path={ckpt}", f"hydra.run.dir={out}", "logger=none", "cam.num_images=0"]
    args += ["unknown.alpha=0.1", "tta=flip"]
    result = run_script("eval.py", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    calibration = results["calibration"]
    assert calibration["source"] == "fitted on val by eval"
    stored = json.loads(calibration_file(ckpt).read_text())  # predict/serve/export now use it
    assert calibration["temperature"] == stored["temperature"] != 1.0
    assert (out / "reliability.png").is_file()
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    classes = results["classes"]
    probs = np.array([[float(r[f"prob_{k}"]) for k in classes] for r in rows])
    labels = np.array([classes.index(r["label"]) for r in rows])
    assert calibration["ece_after"] == pytest.approx(
        expected_calibration_error(probs, labels), abs=1e-4
    )  # the CSV holds the calibrated probabilities the ECE was computed from
    unknown = results["unknown"]
    assert unknown["chosen_on"].startswith("conformal alpha 0.1 on val")
    assert results["tta"]["acc"] == pytest.approx(results["test"]["test/acc"], abs=1e-6)
    assert 0.0 <= results["tta"]["acc_tta"] <= 1.0


def test_eval_refuses_contradicting_options(tmp_path: Path):
    args = ["ckpt_path=none.ckpt", "unknown.alpha=0.1", "unknown.coverage=0.9"]
    result = run_script("eval.py", args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown.alpha and unknown.")
