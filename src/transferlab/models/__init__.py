"""Backbones (timm), their weights and heads."""

from transferlab.models import smallcnn  # noqa: F401  (registers the scratch CNN with timm)
from transferlab.models.backbone import create_backbone

__all__ = ["create_backbone"]
