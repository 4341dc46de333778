"""Speed-ups that change how the network runs, not what it computes, as callbacks."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


class ChannelsLast(L.Callback):
    """Convert the module to channels_last memory format; convolutions then run NHWC."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pl_module.to(memory_format=torch.channels_last)


class Compile(L.Callback):
    """``torch.compile`` the network in place (``nn.Module.compile``), so checkpoint keys stay."""

    def __init__(self, **compile_kwargs: Any) -> None:
        self.compile_kwargs = {k: v for k, v in compile_kwargs.items() if v is not None}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            pl_module.net.compile(**self.compile_kwargs)
