"""Calibration in eval: the run's temperature (or one fitted on val), ECE before and after it,
the reliability diagram, and flip test-time augmentation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torchmetrics.classification import MulticlassCalibrationError

from transferlab.evaluation import figures
from transferlab.training.checkpoint import LoadedRun
from transferlab.training.temperature import (
    calibrate_checkpoint,
    calibration_file,
    loader_logits,
    tempered,
    val_batch_limit,
)

log = logging.getLogger(__name__)
ECE_BINS = 15  # Guo et al. 2017's count, the one calibration papers compare with


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-label ECE (L1, 15 equal-width confidence bins), as torchmetrics computes it."""
    metric = MulticlassCalibrationError(num_classes=probs.shape[1], n_bins=ECE_BINS, norm="l1")
    return float(metric(torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(labels)))


def reliability_bins(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per confidence bin (the ECE's bins): sample count, mean confidence and accuracy."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, ECE_BINS - 1)
    count = np.bincount(which, minlength=ECE_BINS)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, confidence, ECE_BINS) / count
        accuracy = np.bincount(which, correct.astype(float), ECE_BINS) / count
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": accuracy}


def run_temperature(cfg: DictConfig, run: LoadedRun, datamodule) -> tuple[float, str]:
    """The temperature eval answers with, and where it came from: the run's stored one; else
    (``calibrate=true``) one fitted on val now and stored beside the checkpoint; else 1."""
    stored = calibration_file(run.ckpt_path).is_file()
    if run.temperature != 1.0 or not cfg.get("calibrate"):  # 1.0: none stored, or a stale one
        return run.temperature, "run" if stored else "none"
    loader = datamodule.val_dataloader()
    limit = val_batch_limit(run.cfg.trainer.get("limit_val_batches"), loader)  # as in training
    record = calibrate_checkpoint(run.module.net, loader, run.ckpt_path, limit)
    run.temperature = record.get("temperature", 1.0)
    return run.temperature, "fitted on val by eval"


def calibration_report(
    raw: np.ndarray, labels: np.ndarray, temperature: float, source: str, output_dir: Path
) -> dict[str, Any]:
    """ECE of the test probabilities before (T = 1) and after the temperature, and the
    reliability diagram of both (``reliability.png``)."""
    calibrated = tempered(raw, temperature)
    before = expected_calibration_error(raw, labels)
    after = expected_calibration_error(calibrated, labels)
    curves = {
        f"T = 1 (ECE {before:.3f})": reliability_bins(raw, labels),
        f"T = {temperature:.2f} (ECE {after:.3f})": reliability_bins(calibrated, labels),
    }
    figures.plot_reliability(curves, output_dir / "reliability.png")
    return {
        "temperature": temperature,
        "source": source,
        "ece_bins": ECE_BINS,
        "ece_before": before,
        "ece_after": after,
    }


def flip_tta(net, loader, probs: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    """Accuracy and ECE of the test pass's (calibrated) ``probs`` and of their mean with the
    softmax of each image's horizontal mirror, over the samples the test pass saw."""
    mirrored, seen = loader_logits(net, loader, max_samples=len(labels), flip=True)
    if not np.array_equal(seen.numpy(), labels):
        raise RuntimeError("the test loader's order changed between passes; TTA needs it fixed")
    p_plain = probs
    p_tta = (p_plain + (mirrored / temperature).softmax(dim=1).numpy()) / 2
    return {
        "mode": "flip",
        "acc": float((p_plain.argmax(axis=1) == labels).mean()),
        "acc_tta": float((p_tta.argmax(axis=1) == labels).mean()),
        "ece": expected_calibration_error(p_plain, labels),
        "ece_tta": expected_calibration_error(p_tta, labels),
    }
