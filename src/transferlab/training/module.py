"""The LightningModule: what one step of image classification is. The Trainer owns the rest."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from transferlab.training.metrics import classification_metrics

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


class Classifier(L.LightningModule):
    """Cross-entropy training of ``net`` with the metric collection on val and test.

    ``optimizer`` and ``scheduler`` are partials from the config groups of the same names;
    ``param_groups`` (set by a fine-tuning strategy) decides which parameters they see.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        class_names: Sequence[str] = (),
        label_smoothing: float = 0.0,
        mixup: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "mixup"])
        self.net = net
        self.mixup = mixup  # timm.data.Mixup: mixes images, returns soft (already smoothed) targets
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.class_names = list(class_names)
        num_classes = len(self.class_names)
        metrics = classification_metrics(num_classes)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self._loss_sum: torch.Tensor | None = None  # this epoch's train loss x images, and images
        self._loss_count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        smoothing = self.hparams.label_smoothing
        if self.mixup is not None:
            x, y = self.mixup(x, y)
            smoothing = 0.0
        loss = F.cross_entropy(self(x), y, label_smoothing=smoothing)
        if self._finite_check_due(loss) and not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at global step {self.global_step} (epoch "
                f"{self.current_epoch}): lower optimizer.lr or enable trainer.gradient_clip_val"
            )
        self._log_train_loss(loss, len(y), batch_idx)
        return loss

    def _logging_step(self) -> bool:
        """Whether the Trainer sends this step's metrics to the loggers (``log_every_n_steps``)."""
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def _finite_check_due(self, loss: torch.Tensor) -> bool:
        """Every step on the CPU, where reading the loss is free. On an accelerator reading it
        waits for the step to finish, so only on logging steps, which wait for it anyway: the
        GPU's queue of work never drains for the check. Checkpoints never hold non-finite
        weights either way (``on_save_checkpoint``)."""
        return loss.device.type == "cpu" or self._trainer is None or self._logging_step()

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
        if last or self._logging_step():
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
        # Raising here, before the file is written, keeps last.ckpt/best.ckpt the last good ones.
        bad = [
            k
            for k, v in checkpoint["state_dict"].items()
            if v.is_floating_point() and not torch.isfinite(v).all()
        ]
        if bad:
            raise FloatingPointError(
                f"weights became non-finite by global step {self.global_step} (epoch "
                f"{self.current_epoch}, e.g. {bad[0]}): not saving them over the last good "
                "checkpoint; lower optimizer.lr or enable trainer.gradient_clip_val"
            )

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
        for name, metric in metrics.items():
            self.log(name, metric, prog_bar=name.endswith("/acc"), batch_size=len(y))
        return probs, y

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def on_test_epoch_end(self) -> None:
        # computed here, while all ranks are still alive to sync the counts
        self.confusion_matrix = self.test_confusion.compute().cpu().tolist()

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        if "total_steps" in inspect.signature(self.scheduler_factory).parameters:
            kwargs["total_steps"] = int(self.trainer.estimated_stepping_batches)  # OneCycleLR
        scheduler = self.scheduler_factory(optimizer=optimizer, **kwargs)
        interval = "step" if kwargs else "epoch"
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval},
        }
