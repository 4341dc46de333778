"""The LightningModule: what one step of image classification is. The Trainer owns the rest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassConfusionMatrix

from transferlab import __version__
from transferlab.data.transforms import resolve_input
from transferlab.training.callbacks import logging_step
from transferlab.training.finetune import classifier_of
from transferlab.training.metrics import classification_metrics

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
MixupFactory = Callable[..., Callable[..., tuple[torch.Tensor, torch.Tensor]]]
VERSION_KEY = "transferlab_version"


class Classifier(L.LightningModule):
    """Cross-entropy training of ``net`` with the metric collection on val and test.

    Born from ``conf/train.yaml``'s ``module`` node: ``net`` is the ``model`` group, ``optimizer``
    and ``scheduler`` are partials from the groups of the same names, ``scheduler_interval`` is
    stated by the scheduler's yaml; ``param_groups`` (set by a fine-tuning strategy) decide which
    parameters the optimizer sees. The checkpoint carries the class names and the resolved
    input spec (size, mean, std, crop, interpolation), so a run reloads without its data.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        class_names: Sequence[str] = (),
        input: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        mixup: MixupFactory | None = None,
    ) -> None:
        super().__init__()
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"module.scheduler_interval={scheduler_interval!r}: epoch or step")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "mixup", "input"])
        self.net = net
        self.input_spec = resolve_input(net, input)
        self.hparams["input_spec"] = self.input_spec
        self.class_names = list(class_names)
        num_classes = len(self.class_names)
        # timm.data.Mixup: mixes images, returns soft (already smoothed) targets
        self.mixup = mixup(num_classes=num_classes) if mixup is not None else None
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        metrics = classification_metrics(num_classes)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self._loss_sum: torch.Tensor | None = None  # this epoch's train loss x images, and images
        self._loss_count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # pooled features (a linear probe on cached features, features/probe_data.py) meet the
        # head only; images go through the whole net
        return classifier_of(self.net)(x) if x.ndim == 2 else self.net(x)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        smoothing = self.hparams.label_smoothing
        if self.mixup is not None:
            x, y = self.mixup(x, y)
            smoothing = 0.0
        loss = F.cross_entropy(self(x), y, label_smoothing=smoothing)
        self._log_train_loss(loss, len(y), batch_idx)
        return loss

    def on_train_epoch_start(self) -> None:
        self._loss_sum = None  # the epoch's first step starts the sums afresh

    def _log_train_loss(self, loss: torch.Tensor, n: int, batch_idx: int) -> None:
        """train/loss_step on logging steps and the epoch's last, train/loss_epoch (the exact
        mean, summed on the device) on the last. Not ``self.log`` every step: Lightning's costs
        about 1.5 ms a call on the CPU, more than the rest of the framework's step together
        (profiled with bench/overhead.py's small_cnn)."""
        if self._loss_sum is None:  # the epoch's first step, also when resumed mid-way
            self._loss_sum, self._loss_count = torch.zeros((), device=loss.device), 0
        self._loss_sum += loss.detach() * n
        self._loss_count += n
        trainer = self.trainer
        last = batch_idx + 1 >= trainer.num_training_batches or (
            0 < trainer.max_steps <= self.global_step + 1
        )
        if last or logging_step(trainer):
            self.log(
                "train/loss_step", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=n
            )
        if last:
            mean = self._loss_sum / self._loss_count
            self.log(
                "train/loss_epoch",
                mean,
                prog_bar=True,
                on_step=False,
                on_epoch=True,
                sync_dist=True,
                batch_size=1,
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[VERSION_KEY] = __version__  # load_run refuses incompatible versions

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        probs, y = self._evaluate(batch, self.test_metrics)
        self.test_confusion.update(probs, y)
        return probs  # what eval's predictions.csv is written from, so it matches the metrics

    def _evaluate(self, batch, metrics) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        probs = logits.float().softmax(dim=1)
        metrics.update(probs, y)
        return probs, y

    def _log_epoch_metrics(self, metrics: MetricCollection) -> None:
        """The epoch's metrics, logged once at its end: ``self.log`` per batch and metric costs
        more than a linear probe's whole step (six calls, about 1.5 ms each, on the CPU)."""
        values = metrics.compute()  # synced across ranks by torchmetrics
        metrics.reset()
        for name, value in values.items():
            self.log(name, value, prog_bar=name.endswith("/acc"), sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()  # an epoch cut short (sanity check, interrupt) leaves no state

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics(self.val_metrics)

    def on_test_epoch_start(self) -> None:
        self.test_metrics.reset()
        self.test_confusion.reset()

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics(self.test_metrics)
        # computed here, while all ranks are still alive to sync the counts
        self.confusion_matrix = self.test_confusion.compute().cpu().tolist()

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        if getattr(self.scheduler_factory, "keywords", {}).get("total_steps", 0) is None:
            # the yaml says total_steps: null (OneCycleLR): the Trainer knows the run's length
            kwargs["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer=optimizer, **kwargs)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval},
        }
