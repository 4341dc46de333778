"""The metric set every run reports, as one torchmetrics collection cloned per stage."""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


class LogLoss(MeanMetric):
    """Mean negative log-likelihood of the true class (what sklearn calls log loss)."""

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        picked = probs.gather(1, target[:, None]).squeeze(1).clamp_min(1e-15)
        super().update(-picked.log())


def classification_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, macro precision/recall/F1, log loss and one-vs-rest AUROC, all fed probabilities."""
    metrics: dict[str, Metric] = {
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "precision": MulticlassPrecision(num_classes, average="macro"),
        "recall": MulticlassRecall(num_classes, average="macro"),
        "f1": MulticlassF1Score(num_classes, average="macro"),
        "log_loss": LogLoss(),
        "auroc": MulticlassAUROC(num_classes, average="macro"),
    }
    return MetricCollection(metrics)
