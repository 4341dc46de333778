"""Albumentations pipelines sized by the backbone's own pretrained config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np
import timm
import torch
from albumentations.pytorch import ToTensorV2
from torch import nn

INPUT_KEYS = ("size", "mean", "std", "crop_pct", "interpolation")


def resolve_input(model: nn.Module, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Input size/mean/std/crop from timm's pretrained config, with non-null ``overrides`` on top.

    ``resize`` is the shorter side before the centre crop (256 for 224 at crop_pct 0.875).
    """
    cfg = timm.data.resolve_model_data_config(model)
    spec = {
        "size": int(cfg["input_size"][-1]),
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "crop_pct": float(cfg.get("crop_pct", 0.875)),
        "interpolation": str(cfg.get("interpolation", "bilinear")),
    }
    spec.update({k: v for k, v in (overrides or {}).items() if k in INPUT_KEYS and v is not None})
    spec["mean"], spec["std"] = list(spec["mean"]), list(spec["std"])
    spec["resize"] = round(spec["size"] / spec["crop_pct"])
    return spec


def finish(steps: Sequence[A.BasicTransform], spec: dict[str, Any]) -> A.Compose:
    """Append normalisation and HWC uint8 -> CHW float tensor to an augmentation list."""
    return A.Compose([*steps, A.Normalize(mean=spec["mean"], std=spec["std"]), ToTensorV2()])


def eval_transform(spec: dict[str, Any]) -> A.Compose:
    """Resize the shorter side to ``resize`` then centre-crop ``size`` (the 256 -> 224 recipe)."""
    size = spec["size"]
    return finish([A.SmallestMaxSize(max_size=spec["resize"]), A.CenterCrop(size, size)], spec)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """HxW or HxWx1 grayscale to HxWx3, so ImageNet backbones see three channels."""
    if image.ndim == 2:
        image = image[:, :, None]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def denormalize(batch: torch.Tensor, spec: dict[str, Any]) -> np.ndarray:
    """Normalised (N,3,H,W) or (3,H,W) tensors back to (N,)H,W,3 uint8 RGB, as the network saw them."""
    single = batch.ndim == 3
    x = batch.detach().cpu().float()[None] if single else batch.detach().cpu().float()
    mean = torch.tensor(spec["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"]).view(1, -1, 1, 1)
    pixels = (
        ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    )
    return pixels[0] if single else pixels
