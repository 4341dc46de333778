"""Grad-CAM for timm backbones: the target layer is asked of the model, maps are well-formed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from transferlab.evaluation.cam import grad_cam, overlay, target_layer
from transferlab.models import create_backbone


@pytest.mark.parametrize(
    ("name", "expected_layer"), [("resnet18", "layer4"), ("tf_efficientnet_lite0", "blocks.6")]
)
def test_cam_maps_have_input_shape_and_unit_range(name: str, expected_layer: str):
    torch.manual_seed(0)
    net = create_backbone(name, num_classes=3, pretrained=False).eval()
    assert target_layer(net) is net.get_submodule(expected_layer)  # from timm's feature_info
    batch = torch.randn(2, 3, 64, 48)
    maps = grad_cam(net, batch, targets=[0, 2])
    assert maps.shape == (2, 64, 48) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert maps.reshape(2, -1).max(axis=1).min() > 0.5  # scaled per image, not all zero
    assert not net.training  # the caller's mode is restored


def test_target_layer_without_feature_info_is_the_last_conv():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2),
    )  # fmt: skip
    assert target_layer(net) is net[2]
    maps = grad_cam(net, torch.randn(1, 3, 20, 20))
    assert maps.shape == (1, 20, 20) and 0.0 <= maps.min() <= maps.max() <= 1.0


def test_vit_tokens_are_mapped_back_onto_the_patch_grid():
    net = create_backbone(
        "vit_tiny_patch16_224", num_classes=2, pretrained=False, img_size=64
    ).eval()
    maps = grad_cam(net, torch.randn(1, 3, 64, 64), layer_name="blocks.11.norm1")
    assert maps.shape == (1, 64, 64) and 0.0 <= maps.min() <= maps.max() <= 1.0


def test_overlay_resizes_the_map_to_the_image():
    image = np.full((40, 30, 3), 128, np.uint8)
    blended = overlay(image, np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10))
    assert blended.shape == (40, 30, 3) and blended.dtype == np.uint8
