"""Config -> objects, in one visible order shared by train, eval, inspect and the benchmarks.

The data module comes first (it knows the classes), then the LightningModule from its `_target_`
(its net asks timm for input size, mean and std), then the transforms that need both.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, open_dict

from transferlab.data.base import ClassificationDataModule
from transferlab.data.on_device import DeviceAugment
from transferlab.data.transforms import eval_transform, finish
from transferlab.training.module import Classifier
from transferlab.training.validate import check_num_classes

log = logging.getLogger(__name__)


@dataclass
class Experiment:
    """What a run is made of."""

    datamodule: ClassificationDataModule
    module: Classifier
    input: dict[str, Any]


def build_experiment(cfg: DictConfig, pretrained: bool | None = None) -> Experiment:
    """Instantiate data, LightningModule and transforms from a composed config.

    ``pretrained=False`` skips weight loading when a checkpoint will overwrite them anyway.
    The resolved input spec is written back into ``cfg.input`` so it is saved with the run.
    """
    datamodule = build_datamodule(cfg)
    check_num_classes(datamodule.num_classes, f"data ({cfg.data.get('name', cfg.data._target_)})")
    module = build_module(cfg, datamodule.classes, pretrained)
    set_transforms(datamodule, cfg, module.input_spec)
    return Experiment(datamodule=datamodule, module=module, input=module.input_spec)


def build_datamodule(cfg: DictConfig) -> ClassificationDataModule:
    return hydra.utils.instantiate(cfg.data)


def build_module(
    cfg: DictConfig,
    classes: Sequence[str],
    pretrained: bool | None = None,
    input_spec: dict[str, Any] | None = None,
) -> Classifier:
    """The ``module`` node with the net sized for ``classes``; ``pretrained`` and ``input_spec``
    (a checkpoint's) override the config's."""
    net: dict[str, Any] = {"num_classes": len(classes)}
    if pretrained is not None:
        net["pretrained"] = pretrained
    extra = {"input": input_spec} if input_spec else {}
    module = hydra.utils.instantiate(cfg.module, net=net, class_names=list(classes), **extra)
    with open_dict(cfg):
        cfg.input = module.input_spec
    return module


def set_transforms(datamodule: ClassificationDataModule, cfg: DictConfig, spec: dict) -> None:
    """The augment group's train transforms and the eval transform, sized by the backbone."""
    augment = hydra.utils.instantiate(cfg.augment.train) if cfg.get("augment") else []
    datamodule.set_transforms(train=finish(augment or [], spec), eval=eval_transform(spec))
    if getattr(datamodule, "on_device", False):
        datamodule.set_device_augment(DeviceAugment(spec, **(cfg.augment.get("device") or {})))


def build_trainer(cfg: DictConfig, **overrides: Any) -> L.Trainer:
    """Trainer with the configured callbacks and loggers (each a dict of `_target_` entries)."""
    hush_adverts()
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides
    )


ADVERTS = (
    "💡 Tip: For seamless cloud logging",  # another logging product, on every run
    "The `srun` command is available",  # any machine with SLURM installed, SLURM or not
)


def hush_adverts() -> None:
    """Drop Lightning's lines that are advice nobody asked for; nothing else is filtered."""
    for text in ADVERTS:
        warnings.filterwarnings("ignore", message=f"{re.escape(text)}.*")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _Adverts) for f in rank_zero.filters):
        rank_zero.addFilter(_Adverts())


class _Adverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ADVERTS)
