"""A timm backbone with a fresh head for the task's classes."""

from __future__ import annotations

import logging
from collections.abc import Callable

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
    head: Callable[..., nn.Module] | None = None,
    **timm_kwargs: object,
) -> nn.Module:
    """Create ``name`` from timm, load ImageNet weights if asked, then replace its classifier:
    timm's linear one reset to ``num_classes``, or ``head(in_features, num_classes)``.

    The model keeps timm's own description of itself (``pretrained_cfg``, ``group_matcher``,
    ``feature_info``), which the data pipeline and fine-tuning strategies read.
    """
    if pretrained:
        model, source = create_pretrained(name, weights, offline_weights, **timm_kwargs)
    else:
        model, source = timm.create_model(name, pretrained=False, **timm_kwargs), "random init"
    model.reset_classifier(num_classes)
    if head is not None:
        set_head(model, head)
    model.weights_source = source
    return model


def set_head(model: nn.Module, head: Callable[..., nn.Module]) -> None:
    """Put ``head(in_features, num_classes)`` where timm keeps the classifier."""
    linear = model.get_classifier()
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"{type(model).__name__} has no linear classifier to replace with a head")
    model.set_submodule(
        model.pretrained_cfg["classifier"], head(linear.in_features, linear.out_features)
    )
