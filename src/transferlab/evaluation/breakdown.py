"""Evaluation tables computed from one pass of test probabilities: predictions, per-class
precision/recall/F1, ROC curves, the most confidently wrong samples; and their files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import (
    multiclass_auroc,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
    multiclass_roc,
)

from transferlab.tables import dict_rows_table
from transferlab.unknown import decide

Rows = list[dict[str, Any]]


def prediction_rows(
    probs: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    sample_ids: Sequence[Any],
    threshold: float,
) -> Rows:
    """One row per test sample: image, label, prediction, confidence, the decision after unknown
    rejection, and one probability column per class."""
    best = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), best]
    predicted = [classes[b] for b in best]
    decisions = decide(predicted, confidence, threshold)
    return [
        {
            "image": sample,
            "label": classes[y],
            "prediction": name,
            "confidence": round(float(c), 6),
            "decision": decision,
            **{f"prob_{k}": round(float(p), 6) for k, p in zip(classes, row, strict=True)},
        }
        for sample, y, name, c, decision, row in zip(
            sample_ids, labels, predicted, confidence, decisions, probs, strict=True
        )
    ]


def per_class_rows(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> Rows:
    """Precision, recall, F1 and support of every class (torchmetrics, average=None)."""
    p, y, k = torch.from_numpy(probs), torch.from_numpy(labels).long(), len(classes)
    scores = {
        "precision": multiclass_precision(p, y, k, average=None),
        "recall": multiclass_recall(p, y, k, average=None),
        "f1": multiclass_f1_score(p, y, k, average=None),
    }
    support = np.bincount(labels, minlength=k)
    return [
        {
            "class": name,
            **{metric: round(float(v[i]), 6) for metric, v in scores.items()},
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    ]


def roc_curves(
    probs: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[float]]:
    """One-vs-rest (fpr, tpr) per class and each class's AUC."""
    p, y = torch.from_numpy(probs), torch.from_numpy(labels).long()
    fpr, tpr, _ = multiclass_roc(p, y, num_classes)
    auc = multiclass_auroc(p, y, num_classes, average=None)
    curves = [(f.numpy(), t.numpy()) for f, t in zip(fpr, tpr, strict=True)]
    return curves, [float(a) for a in auc]


def confidently_wrong(probs: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` wrong predictions made with the highest confidence."""
    best = probs.argmax(axis=1)
    wrong = np.flatnonzero(best != labels)
    confidence = probs[wrong, best[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:n]


def write_markdown(rows: Rows, path: Path) -> Path:
    """``rows`` as a markdown table file (floats to 4 decimals)."""
    path.write_text(dict_rows_table(rows) + "\n")
    return path
