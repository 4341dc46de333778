"""Unknown rejection: a prediction whose top probability is not above a threshold is 'unknown'.

A sample is accepted when its confidence is strictly above the threshold, so threshold 0.0
accepts every prediction and 1.0 rejects every one. The threshold is given, chosen for a share
of validation kept (``threshold_for_coverage``) or for a guaranteed error rate
(``conformal_threshold``).
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


def conformal_threshold(confidence: np.ndarray, correct: np.ndarray, alpha: float) -> float:
    """Split-conformal threshold from a calibration (validation) split: with it, a new sample
    exchangeable with them gets an answer that is its true label or ``unknown`` with probability
    at least ``1 - alpha`` (over the calibration split and the sample together).

    The score of a sample is the confidence of a wrong answer (0 for a right one): answering
    wrong under this module's rule means exactly "score > threshold". The threshold is the
    ceil((n + 1)(1 - alpha))-th smallest score, so P(score <= threshold) >= 1 - alpha; it is also
    at most 1 - alpha + 1/(n + 1) whenever the model errs on more than alpha of the split (else
    the threshold is 0, every answer is kept and the coverage is the accuracy).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"unknown.alpha={alpha}: must lie in (0, 1)")
    scores = np.sort(np.where(correct, 0.0, np.asarray(confidence, dtype=np.float64)))
    rank = int(np.ceil((len(scores) + 1) * (1.0 - alpha)))
    if rank > len(scores):  # too few samples for this alpha: only "unknown" keeps the promise
        return 1.0
    return float(scores[rank - 1])


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
