"""A timm backbone with a fresh head for the task's classes."""

from __future__ import annotations

import logging

import timm
from torch import nn

from transferlab.models.weights import create_pretrained

log = logging.getLogger(__name__)


def create_backbone(
    name: str,
    num_classes: int,
    pretrained: bool = True,
    weights: str | None = None,
    offline_weights: str | None = None,
    head: str = "linear",
    head_hidden: int = 512,
    head_dropout: float = 0.5,
    **timm_kwargs: object,
) -> nn.Module:
    """Create ``name`` from timm, load ImageNet weights if asked, then replace its classifier.

    The model keeps timm's own description of itself (``pretrained_cfg``, ``group_matcher``,
    ``feature_info``), which the data pipeline and fine-tuning strategies read.
    """
    if pretrained:
        model, source = create_pretrained(name, weights, offline_weights, **timm_kwargs)
    else:
        model, source = timm.create_model(name, pretrained=False, **timm_kwargs), "random init"
    log.info("backbone %s: weights from %s", name, source)
    model.reset_classifier(num_classes)
    if head == "mlp":
        set_mlp_head(model, head_hidden, head_dropout)
    elif head != "linear":
        raise ValueError(f"model.head={head!r}: choose 'linear' or 'mlp'")
    model.weights_source = source
    return model


def set_mlp_head(model: nn.Module, hidden: int, dropout: float) -> None:
    """Swap the linear classifier for Linear -> ReLU -> Dropout -> Linear (the dog-breed head)."""
    if hidden < 1:
        raise ValueError(f"model.head_hidden={hidden}: an MLP head needs at least 1 hidden unit")
    linear = model.get_classifier()
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"{type(model).__name__} has no linear classifier to extend into an MLP")
    mlp = nn.Sequential(
        nn.Linear(linear.in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, linear.out_features),
    )
    model.set_submodule(model.pretrained_cfg["classifier"], mlp)
