"""Unknown rejection: a prediction whose top probability is not above a threshold is 'unknown'.

A sample is accepted when its confidence is strictly above the threshold, so threshold 0.0
accepts every prediction and 1.0 rejects every one.
"""

from __future__ import annotations

import numpy as np

UNKNOWN = "unknown"


def accepted(confidence: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask of the predictions that are kept (confidence > threshold)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"unknown.threshold={threshold}: must lie in [0, 1]")
    return np.asarray(confidence) > threshold


def threshold_for_coverage(confidence: np.ndarray, coverage: float) -> float:
    """The threshold that keeps about ``coverage`` of these (validation) predictions."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"unknown.coverage={coverage}: must lie in (0, 1]")
    ranked = np.sort(np.asarray(confidence, dtype=np.float64))[::-1]
    keep = int(np.ceil(coverage * len(ranked)))
    if keep >= len(ranked):
        return 0.0
    return float(ranked[keep])  # the best rejected confidence; everything above it is kept


def selective_summary(
    confidence: np.ndarray, correct: np.ndarray, threshold: float
) -> dict[str, float | None]:
    """Coverage (share accepted) and accuracy on the accepted predictions."""
    keep = accepted(confidence, threshold)
    n_kept = int(keep.sum())
    return {
        "threshold": float(threshold),
        "coverage": n_kept / max(len(keep), 1),
        "accepted": n_kept,
        "rejected": len(keep) - n_kept,
        "accepted_accuracy": float(np.asarray(correct)[keep].mean()) if n_kept else None,
    }


def decide(predicted: list[str], confidence: np.ndarray, threshold: float) -> list[str]:
    """The predicted class names, with ``unknown`` where the prediction is rejected."""
    keep = accepted(confidence, threshold)
    return [name if ok else UNKNOWN for name, ok in zip(predicted, keep, strict=True)]
