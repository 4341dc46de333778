"""Optimizer param groups that appear or change mid-run, kept consistent with the lr schedulers.

torch schedulers keep per-group lists (``base_lrs``, ``_last_lr``; OneCycleLR keeps ``max_lr``
etc. in the group itself), so a group added after the scheduler was built must be added there too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
from torch import nn
from torch.optim import Optimizer

# Scheduler attributes holding one entry per param group; the lr-valued ones scale with the group.
_PER_GROUP_LRS = ("base_lrs", "_last_lr", "min_lrs")
_PER_GROUP_OTHER = ("lr_lambdas",)


def _is_lr(key: str, value: Any) -> bool:
    return key.endswith("lr") and isinstance(value, float)


def schedulers_of(trainer: L.Trainer, optimizer: Optimizer) -> Iterator[Any]:
    for config in trainer.lr_scheduler_configs:
        if config.scheduler.optimizer is optimizer:
            yield config.scheduler


def add_scaled_group(
    trainer: L.Trainer, optimizer: Optimizer, params: list[nn.Parameter], name: str, scale: float
) -> None:
    """Add ``params`` as group ``name`` with every lr of group 0 (the head) times ``scale``."""
    ref = optimizer.param_groups[0]
    group = {k: v * scale if _is_lr(k, v) else v for k, v in ref.items() if k != "params"}
    optimizer.add_param_group({**group, "params": params, "name": name, "lr_scale": scale})
    for scheduler in schedulers_of(trainer, optimizer):
        for attr in _PER_GROUP_LRS:
            values = getattr(scheduler, attr, None)
            if isinstance(values, list) and values:
                values.append(values[0] * scale)
        for attr in _PER_GROUP_OTHER:
            values = getattr(scheduler, attr, None)
            if isinstance(values, list) and values:
                values.append(values[0])


def scale_lrs(trainer: L.Trainer, optimizer: Optimizer, factor: float) -> None:
    """Multiply every group's lrs (and the schedulers' copies of them) by ``factor``."""
    for group in optimizer.param_groups:
        for key, value in list(group.items()):
            if _is_lr(key, value):
                group[key] = value * factor
    for scheduler in schedulers_of(trainer, optimizer):
        for attr in _PER_GROUP_LRS:
            values = getattr(scheduler, attr, None)
            if isinstance(values, list):
                values[:] = [v * factor for v in values]


def group_summary(optimizer: Optimizer) -> list[dict[str, Any]]:
    """Name, lr, parameter count and whether anything in it trains, per param group."""
    return [
        {
            "name": group.get("name", f"group{i}"),
            "lr": group["lr"],
            "params": sum(p.numel() for p in group["params"]),
            "trainable": any(p.requires_grad for p in group["params"]),
        }
        for i, group in enumerate(optimizer.param_groups)
    ]
