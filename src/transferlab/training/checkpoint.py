"""Reloading a run: its checkpoint, the config saved beside it, and the one way to rebuild both.

Eval, predict, export, serving and the Python ``Predictor`` all call ``load_run``, so a run is
rebuilt, version-checked and validated the same way everywhere.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from transferlab import __version__
from transferlab.errors import ConfigError
from transferlab.training.build import (
    Experiment,
    build_datamodule,
    build_module,
    set_transforms,
)
from transferlab.training.module import VERSION_KEY, Classifier
from transferlab.training.temperature import read_temperature
from transferlab.training.validate import validate


class CheckpointError(ConfigError):
    """A checkpoint that is missing, of another transferlab version, or does not fit its run."""


@dataclass
class LoadedRun:
    """A trained run rebuilt from its files: the module holds the checkpoint's weights."""

    ckpt_path: Path
    cfg: DictConfig
    module: Classifier
    temperature: float = 1.0  # softmax(logits / T); fitted on val beside the checkpoint, else 1

    @property
    def classes(self) -> list[str]:
        return self.module.class_names

    @property
    def input(self) -> dict[str, Any]:
        return self.module.input_spec

    @property
    def name(self) -> str:
        """'<model> (pretrained|scratch)', how reports and the web page call a run."""
        return f"{self.cfg.model.name} ({'pretrained' if self.cfg.pretrained else 'scratch'})"

    def experiment(self) -> Experiment:
        """The run's data (transforms set as in training) with this module; the data must still
        have the classes the checkpoint was trained on."""
        datamodule = build_datamodule(self.cfg)
        if list(datamodule.classes) != self.classes:
            raise CheckpointError(
                f"{self.ckpt_path}: trained on classes {self.classes} but the data at "
                f"{getattr(datamodule, 'root', '?')} now has {list(datamodule.classes)}; "
                "point overrides.data.root at the data the run trained on"
            )
        set_transforms(datamodule, self.cfg, self.input)
        return Experiment(datamodule=datamodule, module=self.module, input=self.input)


def load_run(
    ckpt_path: str | Path,
    overrides: DictConfig | dict | None = None,
    paths: DictConfig | None = None,
) -> LoadedRun:
    """Rebuild the run that wrote ``ckpt_path`` (<run>/checkpoints/x.ckpt) with its weights.

    ``overrides`` are merged onto its saved config (e.g. a new data.root on another machine);
    ``paths`` (the calling entry point's data and output dirs) replace the run's.
    """
    ckpt_path = Path(ckpt_path).expanduser()
    checkpoint = read_checkpoint(ckpt_path)
    check_version(checkpoint.get(VERSION_KEY), ckpt_path)
    cfg = run_config(ckpt_path, overrides)
    if paths is not None:
        with open_dict(cfg):
            cfg.paths = paths
    validate(cfg)
    hparams = checkpoint.get("hyper_parameters") or {}
    if not hparams.get("class_names"):
        raise CheckpointError(f"{ckpt_path}: no class_names in it (not written by train.py?)")
    module = build_module(cfg, hparams["class_names"], False, hparams.get("input_spec"))
    load_weights(module, ckpt_path, checkpoint=checkpoint)
    temperature = read_temperature(ckpt_path, checkpoint.get("global_step"))
    return LoadedRun(ckpt_path=ckpt_path, cfg=cfg, module=module.eval(), temperature=temperature)


def check_version(version: str | None, ckpt_path: Path) -> None:
    """Same major.minor as this transferlab: before 1.0 a minor release may change the format."""
    if version is None or version.split(".")[:2] != __version__.split(".")[:2]:
        written = f"transferlab {version}" if version else "a transferlab before 0.2"
        raise CheckpointError(
            f"{ckpt_path}: written by {written}, this is {__version__}; retrain the run, or "
            f"load it with that version (pip install transferlab=={version or '0.1.0'})"
        )


def run_config(ckpt_path: Path, overrides: DictConfig | dict | None = None) -> DictConfig:
    """The config saved by the run that wrote ``ckpt_path``, merged with ``overrides``."""
    config_file = Path(ckpt_path).parent.parent / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise CheckpointError(
            f"{config_file} not found: ckpt_path must sit in <run dir>/checkpoints/ of a train.py run"
        )
    cfg = OmegaConf.load(config_file)
    return OmegaConf.merge(cfg, overrides) if overrides else cfg


def read_checkpoint(ckpt_path: Path) -> dict[str, Any]:
    """The checkpoint's tensors and hyper-parameters, loaded without unpickling code."""
    ckpt_path = Path(ckpt_path).expanduser()
    if not ckpt_path.is_file():
        raise CheckpointError(
            f"ckpt_path={ckpt_path}: no such checkpoint; pass <run dir>/checkpoints/best.ckpt "
            "of a train.py run"
        )
    try:
        return torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch names the first object that is not data
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = found[1] if found else "objects other than tensors"
        raise CheckpointError(
            f"{ckpt_path}: holds {what}, which loading could run as code, so it is not loaded; "
            "use a checkpoint written by train.py"
        ) from None


def load_weights(module: nn.Module, ckpt_path: Path, checkpoint: dict | None = None) -> None:
    """Load a Lightning checkpoint's weights into ``module``, checking shapes first."""
    checkpoint = checkpoint or read_checkpoint(ckpt_path)
    state = checkpoint["state_dict"]
    own = module.state_dict()
    for key, tensor in state.items():
        if key in own and own[key].shape != tensor.shape:
            raise CheckpointError(
                f"{ckpt_path}: {key} has shape {tuple(tensor.shape)} but the model expects "
                f"{tuple(own[key].shape)} (a checkpoint of another num_classes or architecture?)"
            )
    module.load_state_dict(state, strict=True)
