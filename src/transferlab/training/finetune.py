"""Fine-tuning strategies as one Lightning callback: which backbone stages train, from which epoch,
at which learning rate.

Stages are timm's own coarse grouping of the model (``group_matcher``), the head is its classifier
(``pretrained_cfg['classifier']``). Every strategy in ``conf/finetune/`` is this callback with
other numbers: the head trains from the start, stage ``d`` levels below the head joins the optimizer
at ``unfreeze_at[d-1]`` as a param group of its own with ``lr x lr_decay**d``.

Two things Lightning's BackboneFinetuning gets wrong are handled here: a resumed run re-enters
its epoch's phase even where Lightning skips on_train_epoch_start (#21901), and under DDP the
stages unfrozen after the model was wrapped have their gradients averaged too (#20340).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.callbacks import BaseFinetuning
from timm.models import group_parameters
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from transferlab.training.param_groups import add_scaled_group, group_summary, scale_lrs

log = logging.getLogger(__name__)


@dataclass
class Stage:
    """A backbone stage: its modules (those holding parameters) and its distance from the head."""

    name: str
    depth: int
    modules: list[nn.Module]

    def parameters(self) -> list[nn.Parameter]:
        return [p for m in self.modules for p in m.parameters(recurse=False)]


def classifier_of(net: nn.Module) -> nn.Module:
    """The head: the module timm names as the classifier (a Linear, or the MLP that replaced it)."""
    name = getattr(net, "pretrained_cfg", {}).get("classifier")
    return net.get_submodule(name) if name else net.get_classifier()


def backbone_stages(net: nn.Module) -> list[Stage]:
    """timm's coarse parameter groups of ``net`` minus the head, top stage (depth 1) first."""
    head = {id(p) for p in classifier_of(net).parameters()}
    named = dict(net.named_parameters())
    if hasattr(net, "group_matcher"):
        groups = group_parameters(net, net.group_matcher(coarse=True))
    else:  # not a timm model: the whole backbone is one stage
        groups = {0: list(named)}
    owners = [
        [n.rpartition(".")[0] for n in names if id(named[n]) not in head]
        for _, names in sorted(groups.items())
    ]
    owners = [list(dict.fromkeys(o)) for o in owners if o]  # unique, in order
    n = len(owners)
    return [
        Stage(stage_label(o), n - i, [net.get_submodule(m) for m in o])
        for i, o in reversed(list(enumerate(owners)))
    ]


def stage_label(owners: Sequence[str]) -> str:
    """A short readable name from module paths: 'layer3', 'blocks.6+conv_head+bn2'."""
    tops: dict[str, list[list[str]]] = {}
    for owner in owners:
        first, *rest = owner.split(".")
        tops.setdefault(first, []).append(rest)
    parts = []
    for first, rests in tops.items():
        common = []
        for level in zip(*rests, strict=False):
            if len(set(level)) > 1:
                break
            common.append(level[0])
        parts.append(".".join([first, *common[:1]]))
    return "+".join(parts)


class StagedFinetuning(BaseFinetuning):
    """Head from epoch 0; backbone stage ``d`` (1 = just below the head) from ``unfreeze_at``.

    ``unfreeze_at``: one epoch for every stage (0: full, N: freeze_unfreeze), a list of epochs
    from the top stage down (progressive; stages past the list stay frozen), or None (linear_probe).
    ``lr_decay``: stage ``d`` trains at ``lr x lr_decay**d`` (discriminative learning rates).
    ``unfreeze_lr_factor``: when the backbone first joins after a head-only phase, every lr is
    multiplied by this (fastai's fine_tune lowers the lr for the whole network there).
    Frozen stages are frozen entirely: no gradients and BatchNorm in eval mode (running stats kept).
    """

    def __init__(
        self,
        unfreeze_at: int | Sequence[int] | None = 0,
        lr_decay: float = 1.0,
        unfreeze_lr_factor: float = 1.0,
    ) -> None:
        super().__init__()
        if lr_decay <= 0 or unfreeze_lr_factor <= 0:
            raise ValueError("finetune.lr_decay and finetune.unfreeze_lr_factor must be > 0")
        self.unfreeze_at = unfreeze_at
        self.lr_decay = lr_decay
        self.unfreeze_lr_factor = unfreeze_lr_factor
        self.stages: list[Stage] = []
        self._announced: list[str] | None = None
        self._synced_by_ddp: set[int] = set()

    def unfreeze_epoch(self, stage: Stage) -> int | None:
        """The epoch from which ``stage`` trains, or None for never."""
        if self.unfreeze_at is None:
            return None
        if isinstance(self.unfreeze_at, int):
            return self.unfreeze_at
        epochs = list(self.unfreeze_at)
        return epochs[stage.depth - 1] if stage.depth <= len(epochs) else None

    def trains(self, stage: Stage, epoch: int) -> bool:
        start = self.unfreeze_epoch(stage)
        return start is not None and epoch >= start

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":  # validate/test use the weights as they are
            super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        self.stages = backbone_stages(pl_module.net)
        self.freeze([s.modules for s in self.stages], train_bn=False)
        self.make_trainable(classifier_of(pl_module.net))
        log.info(
            "finetune stages (top first): %s",
            ", ".join(f"{s.name}@{self.unfreeze_epoch(s)}" for s in self.stages),
        )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The strategy has just wrapped the model: DDP's reducer averages the gradients of exactly
        # the parameters that require grad now, never those of stages unfrozen later.
        self._synced_by_ddp = {id(p) for p in pl_module.parameters() if p.requires_grad}
        super().on_fit_start(trainer, pl_module)  # on resume: restores the groups added before
        for optimizer in trainer.optimizers:
            optimizer.param_groups[0].setdefault("name", "head")
            optimizer.param_groups[0].setdefault("lr_scale", 1.0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After a resume has been restored, and also where Lightning skips on_train_epoch_start
        # (a checkpoint from mid-epoch or an epoch's end): setup() froze every stage again, so
        # the resumed epoch's stages would sit in the optimizer without gradients (Lightning #21901).
        self._enter_epoch(trainer, pl_module, announce=trainer.global_step > 0)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._enter_epoch(trainer, pl_module, announce=True)

    def _enter_epoch(
        self, trainer: L.Trainer, pl_module: L.LightningModule, announce: bool
    ) -> None:
        """The current epoch's stages trainable, in the optimizer, BatchNorm in train mode; idempotent."""
        super().on_train_epoch_start(trainer, pl_module)  # finetune_function, then records groups
        epoch = trainer.current_epoch
        for stage in self.stages:
            for module in stage.modules:
                if isinstance(module, _BatchNorm):
                    module.train(self.trains(stage, epoch) and pl_module.training)
        if not announce:
            return
        frozen = [s.name for s in self.stages if not self.trains(s, epoch)]
        if frozen == self._announced:
            return  # the same stages as the last epoch: one line per change, not per epoch
        self._announced = frozen
        for optimizer in trainer.optimizers:
            training = ", ".join(
                f"{g['name']} (lr {g['lr']:.3g})" for g in group_summary(optimizer)
            )
            log.info("epoch %d trains: %s; frozen: %s", epoch, training, ", ".join(frozen) or "-")

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer
    ) -> None:
        """Average across processes the gradients DDP leaves alone: without this each rank steps
        a late-unfrozen stage with its own gradients and the replicas drift (Lightning #20340)."""
        if trainer.world_size < 2:
            return
        grads = [
            p.grad
            for group in optimizer.param_groups
            for p in group["params"]
            if p.grad is not None and id(p) not in self._synced_by_ddp
        ]
        if grads:  # one collective: the same stages train, in the same order, on every rank
            flat = torch.cat([g.reshape(-1) for g in grads])
            flat = trainer.strategy.reduce(flat, reduce_op="mean")
            for grad, mean in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
                grad.copy_(mean.view_as(grad))

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, opt: Optimizer) -> None:
        in_optimizer = {id(p) for group in opt.param_groups for p in group["params"]}
        due = [s for s in self.stages if self.trains(s, epoch)]
        new = [s for s in due if any(id(p) not in in_optimizer for p in s.parameters())]
        backbone_started = any(id(p) in in_optimizer for s in self.stages for p in s.parameters())
        if new and epoch > 0 and not backbone_started:
            scale_lrs(pl_module.trainer, opt, self.unfreeze_lr_factor)
        for stage in due:
            self.make_trainable(stage.modules)
        for stage in new:
            params = [p for p in stage.parameters() if id(p) not in in_optimizer]
            add_scaled_group(pl_module.trainer, opt, params, stage.name, self.lr_decay**stage.depth)
