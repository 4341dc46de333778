"""Grad-CAM (pytorch-grad-cam) for any timm backbone; the target layer is asked of the model.

The layer is the last stage in timm's ``feature_info`` (the deepest feature map, before pooling),
or else the last Conv2d found by walking the model, so no architecture needs a table entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from transferlab.data.transforms import denormalize


def target_layer(net: nn.Module, name: str | None = None) -> nn.Module:
    """The module whose activations explain the prediction: ``name`` if given, else the last
    feature stage timm describes, else the last Conv2d."""
    if name:
        try:
            return net.get_submodule(name)
        except AttributeError as err:
            raise ValueError(f"cam.target_layer={name}: {err}") from err
    if stage := last_stage(net):
        return net.get_submodule(stage["module"])
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(
            f"{type(net).__name__}: no feature_info and no Conv2d to explain; set cam.target_layer"
        )
    return convs[-1]


def to_channels_first(
    num_chs: int | None, prefix_tokens: int, grid: tuple[int, int]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Reshape a layer's output to (B, C, H, W): tokens (B, N, C) of ViTs onto their patch grid,
    channels-last maps (B, H, W, C) of Swin-like stages permuted; NCHW passes unchanged."""

    def reshape(x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            tokens = x[:, prefix_tokens:, :]
            h, w = (
                grid if grid[0] * grid[1] == tokens.shape[1] else (math.isqrt(tokens.shape[1]),) * 2
            )
            return tokens.reshape(x.shape[0], h, w, x.shape[2]).permute(0, 3, 1, 2)
        if x.ndim == 4 and num_chs and x.shape[1] != num_chs and x.shape[-1] == num_chs:
            return x.permute(0, 3, 1, 2)
        return x

    return reshape


def grad_cam(
    net: nn.Module,
    batch: torch.Tensor,
    targets: Sequence[int] | None = None,
    layer_name: str | None = None,
) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] at the input's size, for class ``targets`` (None: the
    predicted class of each image)."""
    layer = target_layer(net, layer_name)
    stage = last_stage(net)
    reduction = stage.get("reduction", 16)  # token grids (ViT) from the input size
    grid = (batch.shape[-2] // reduction, batch.shape[-1] // reduction)
    num_chs = None if layer_name else stage.get("num_chs")
    reshape = to_channels_first(num_chs, getattr(net, "num_prefix_tokens", 0), grid)
    cam_targets = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
    # an input that requires grad keeps the map defined when the backbone is frozen
    batch = batch.detach().clone().requires_grad_(True)
    was_training = net.training
    try:
        with torch.enable_grad(), GradCAM(net, [layer], reshape_transform=reshape) as cam:
            maps = cam(input_tensor=batch, targets=cam_targets)
    finally:
        net.train(was_training)  # GradCAM switches the model to eval mode
    return np.nan_to_num(maps.astype(np.float32)).clip(0.0, 1.0)


def last_stage(net: nn.Module) -> dict:
    """timm's description of the deepest feature stage (module, reduction, num_chs), or {}."""
    info = getattr(net, "feature_info", None)
    return dict(info[-1]) if isinstance(info, list) and info and "module" in info[-1] else {}


def overlay(image: np.ndarray, cam_map: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """The heat map blended over an HxWx3 uint8 RGB image (the map is resized to the image)."""
    if cam_map.shape != image.shape[:2]:
        resized = torch.nn.functional.interpolate(
            torch.from_numpy(cam_map)[None, None], size=image.shape[:2], mode="bilinear"
        )
        cam_map = resized[0, 0].numpy()
    rgb = image.astype(np.float32) / 255.0
    return show_cam_on_image(rgb, cam_map, use_rgb=True, image_weight=image_weight)


def cam_overlays(
    net: nn.Module,
    batch: torch.Tensor,
    spec: dict,
    targets: Sequence[int] | None = None,
    layer_name: str | None = None,
) -> list[np.ndarray]:
    """Heat maps over the images the network saw (``batch`` un-normalised with ``spec``), one
    HxWx3 uint8 array per image, for class ``targets`` (None: each image's predicted class)."""
    maps = grad_cam(net, batch, targets, layer_name)
    return [overlay(image, m) for image, m in zip(denormalize(batch, spec), maps, strict=True)]
