"""A small CNN for scratch baselines, registered with timm so it is built and described like
any other backbone (the dog-breed project's 3 conv + pool + 2 linear network)."""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn


class SmallCNN(nn.Module):
    """3 x (conv3x3 -> BN -> ReLU -> maxpool), global pool, then hidden linear + classifier."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: tuple[int, ...] = (32, 64, 128),
        hidden: int = 256,
        drop_rate: float = 0.25,
        **_: object,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_chans
        for width in widths:
            layers += [
                nn.Conv2d(prev, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            prev = width
        self.features = nn.Sequential(*layers)
        self.num_features = prev
        self.hidden = nn.Sequential(
            nn.Flatten(), nn.Linear(prev, hidden), nn.ReLU(inplace=True), nn.Dropout(drop_rate)
        )
        self.fc = nn.Linear(hidden, num_classes) if num_classes else nn.Identity()
        self.feature_info = [
            {"num_chs": w, "reduction": 2 ** (i + 1), "module": f"features.{4 * i + 3}"}
            for i, w in enumerate(widths)
        ]
        self.pretrained_cfg = {
            "input_size": (in_chans, 64, 64),
            "mean": (0.5,) * in_chans,
            "std": (0.5,) * in_chans,
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "classifier": "fc",
            "first_conv": "features.0",
        }

    def group_matcher(self, coarse: bool = False) -> dict[str, object]:
        """Stages for fine-tuning strategies, in timm's group_matcher format."""
        return {"stem": r"^features\.[0-3]\.", "blocks": r"^features\.(\d+)"}

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.fc = nn.Linear(self.fc.in_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.hidden(x.mean(dim=(2, 3), keepdim=True))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def transferlab_smallcnn(pretrained: bool = False, **kwargs: object) -> SmallCNN:
    if pretrained:
        raise ValueError(
            "small_cnn is a scratch baseline and has no pretrained weights: set pretrained=false"
        )
    return SmallCNN(**kwargs)
