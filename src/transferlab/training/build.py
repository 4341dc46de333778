"""Config -> objects, in one visible order shared by train, eval and the benchmarks.

The data module comes first (it knows the classes), then the backbone (it knows its input size,
mean and std), then the transforms that need both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, open_dict

from transferlab.data.base import ClassificationDataModule
from transferlab.data.on_device import DeviceAugment
from transferlab.data.transforms import eval_transform, finish, resolve_input
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
    """Instantiate data, backbone, transforms and LightningModule from a composed config.

    ``pretrained=False`` skips weight loading when a checkpoint will overwrite them anyway.
    The resolved input spec is written back into ``cfg.input`` so it is saved with the run.
    """
    datamodule: ClassificationDataModule = hydra.utils.instantiate(cfg.data)
    check_num_classes(datamodule.num_classes, f"data ({cfg.data.get('name', cfg.data._target_)})")
    model_kwargs: dict[str, Any] = {"num_classes": datamodule.num_classes}
    if pretrained is not None:
        model_kwargs["pretrained"] = pretrained
    net = hydra.utils.instantiate(cfg.model, **model_kwargs)
    spec = resolve_input(net, cfg.get("input"))
    with open_dict(cfg):
        cfg.input = spec
    augment = hydra.utils.instantiate(cfg.augment.train) if cfg.get("augment") else []
    datamodule.set_transforms(train=finish(augment or [], spec), eval=eval_transform(spec))
    if getattr(datamodule, "on_device", False):
        datamodule.set_device_augment(DeviceAugment(spec, **(cfg.augment.get("device") or {})))
    scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module_kwargs = dict(cfg.get("module", {}))
    if module_kwargs.get("mixup"):
        module_kwargs["mixup"] = hydra.utils.instantiate(
            cfg.module.mixup, num_classes=datamodule.num_classes
        )
    module = Classifier(
        net=net,
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        scheduler=scheduler,
        class_names=datamodule.classes,
        **module_kwargs,
    )
    return Experiment(datamodule=datamodule, module=module, input=spec)


def build_trainer(cfg: DictConfig, **overrides: Any) -> L.Trainer:
    """Trainer with the configured callbacks and loggers (each a dict of `_target_` entries)."""
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if cfg.get("finetune"):  # the fine-tuning strategy is a callback of its own config group
        callbacks.insert(0, hydra.utils.instantiate(cfg.finetune))  # first: others see its groups
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides
    )
