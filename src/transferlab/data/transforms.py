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

from transferlab.data.resampling import check_interpolation, resize_crop, resize_side
from transferlab.errors import ConfigError

INPUT_KEYS = ("size", "mean", "std", "crop_pct", "interpolation", "test_size", "test_crop_pct")


def resolve_input(model: nn.Module, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The input spec from timm's pretrained config, with non-null ``overrides`` on top.

    ``test_size``/``test_crop_pct`` are timm's eval-time values where it has them (resnet18.a1
    trains at 224/0.95, tests at 288/1.0), else the train ones; overriding ``size`` or
    ``crop_pct`` drops timm's, which belong to its own train size. ``resize``/``test_resize``
    are the shorter side before the centre crop (256 for 224 at 0.875). A resolved spec
    resolves to itself, so a saved run reloads with the preprocessing it was trained with.
    """
    train = timm.data.resolve_model_data_config(model)
    test = timm.data.resolve_model_data_config(model, use_test_size=True)
    given = {k: v for k, v in (overrides or {}).items() if k in INPUT_KEYS and v is not None}
    spec = {
        "size": int(train["input_size"][-1]),
        "mean": [float(v) for v in train["mean"]],
        "std": [float(v) for v in train["std"]],
        "crop_pct": float(train["crop_pct"]),
        "interpolation": str(train["interpolation"]),
        "test_size": int(test["input_size"][-1]),
        "test_crop_pct": float(test["crop_pct"]),
    }
    if given.keys() & {"size", "crop_pct"}:
        spec["test_size"] = spec["size"] = given.get("size", spec["size"])
        spec["test_crop_pct"] = spec["crop_pct"] = given.get("crop_pct", spec["crop_pct"])
    spec.update(given)
    spec["mean"], spec["std"] = list(spec["mean"]), list(spec["std"])
    check_interpolation(spec["interpolation"])
    for key in ("crop_pct", "test_crop_pct"):
        if not 0 < spec[key] <= 1:
            raise ConfigError(f"input.{key}={spec[key]}: a centre crop keeps a share in (0, 1]")
    spec["resize"] = resize_side(spec["size"], spec["crop_pct"])
    spec["test_resize"] = resize_side(spec["test_size"], spec["test_crop_pct"])
    return spec


def finish(steps: Sequence[A.BasicTransform], spec: dict[str, Any]) -> A.Compose:
    """Append normalisation and HWC uint8 -> CHW float tensor to an augmentation list."""
    return A.Compose([*steps, A.Normalize(mean=spec["mean"], std=spec["std"]), ToTensorV2()])


class ResizeCrop(A.ImageOnlyTransform):
    """Shorter side to ``resize``, centre crop ``size``: timm's eval transform, pixel for pixel."""

    def __init__(self, size: int, resize: int, interpolation: str, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.size, self.resize = int(size), int(resize)
        self.interpolation = check_interpolation(interpolation)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return resize_crop(img, self.resize, self.size, self.interpolation)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "resize", "interpolation")


def eval_transform(spec: dict[str, Any]) -> A.Compose:
    """Evaluation at the spec's ``test_size``/``test_crop_pct`` (timm's, or the train ones)."""
    crop = ResizeCrop(spec["test_size"], spec["test_resize"], spec["interpolation"])
    return finish([crop], spec)


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
