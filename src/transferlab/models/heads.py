"""Classifier heads that replace a backbone's linear classifier (``head=`` config group)."""

from __future__ import annotations

from torch import nn


class MLPHead(nn.Sequential):
    """Linear -> ReLU -> Dropout -> Linear: a hidden layer between the features and the classes."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 512, dropout: float = 0.5):
        if hidden < 1:
            raise ValueError(
                f"model.head.hidden={hidden}: an MLP head needs at least 1 hidden unit"
            )
        super().__init__(
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
