"""A run's checkpoint and the config saved beside it: what eval, predict and serving load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the model its run config builds."""


def run_config(ckpt_path: Path, overrides: DictConfig | dict | None = None) -> DictConfig:
    """The config saved by the run that wrote ``ckpt_path`` (run/checkpoints/x.ckpt), merged with
    ``overrides`` (e.g. a new data.root on another machine)."""
    config_file = Path(ckpt_path).parent.parent / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{config_file} not found: ckpt_path must sit in <run dir>/checkpoints/ of a train.py run"
        )
    cfg = OmegaConf.load(config_file)
    return OmegaConf.merge(cfg, overrides) if overrides else cfg


def read_checkpoint(ckpt_path: Path) -> dict[str, Any]:
    """The checkpoint's tensors and hyper-parameters, loaded without unpickling code."""
    ckpt_path = Path(ckpt_path).expanduser()
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint")
    return torch.load(ckpt_path, map_location="cpu", weights_only=True)


def checkpoint_classes(checkpoint: dict[str, Any], ckpt_path: Path) -> list[str]:
    """The class names the Classifier saved with its hyper-parameters."""
    names = (checkpoint.get("hyper_parameters") or {}).get("class_names")
    if not names:
        raise CheckpointMismatchError(
            f"{ckpt_path}: no class_names in its hyper_parameters (not written by train.py?)"
        )
    return list(names)


def load_weights(
    module: nn.Module, ckpt_path: Path, prefix: str = "", checkpoint: dict | None = None
) -> None:
    """Load a Lightning checkpoint's weights safely, checking shapes first.

    ``prefix="net."`` loads only the backbone of a Classifier checkpoint into a bare network.
    """
    checkpoint = checkpoint or read_checkpoint(ckpt_path)
    state = {
        key.removeprefix(prefix): tensor
        for key, tensor in checkpoint["state_dict"].items()
        if key.startswith(prefix)
    }
    own = module.state_dict()
    for key, tensor in state.items():
        if key in own and own[key].shape != tensor.shape:
            raise CheckpointMismatchError(
                f"{ckpt_path}: {prefix}{key} has shape {tuple(tensor.shape)} but the model expects "
                f"{tuple(own[key].shape)} (a checkpoint of another num_classes or architecture?)"
            )
    module.load_state_dict(state, strict=True)
