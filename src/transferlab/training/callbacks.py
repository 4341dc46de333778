"""Callbacks for what cuts across the loop: finite losses and weights, timing, throughput,
per-epoch history, the split check, the last checkpoint and the test probabilities."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint

from transferlab.data.split_record import check_split
from transferlab.training.param_groups import group_summary


class RunStats(L.Callback):
    """Train wall time, training images/s and one history row per epoch (metrics + lr per group).

    The history goes into results.json, so learning curves need no logger.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.images = 0
        self.train_seconds = 0.0
        self._start: float | None = None
        self._groups: list[dict[str, Any]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        # the groups that train this epoch and the lr they start it with (fine-tuning phases)
        self._groups = [g for opt in trainer.optimizers for g in group_summary(opt)]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._start is None:  # an epoch resumed mid-way skips on_train_epoch_start
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += len(batch[1]) * trainer.world_size

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.training:
            self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause(trainer)
        row: dict[str, Any] = {"epoch": trainer.current_epoch}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("val/", "train/")) and not key.endswith("_step"):
                row[key.removesuffix("_epoch")] = _number(value)
        row["lr"] = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
        row["param_groups"] = self._groups
        row["train_seconds"] = round(self.train_seconds, 3)
        self.history.append(row)

    def _pause(self, trainer: L.Trainer | None) -> None:
        if self._start is not None:
            self.train_seconds += time.perf_counter() - self._start
            self._start = None

    @contextmanager
    def off_the_clock(self) -> Iterator[None]:
        """Time spent inside is not training time (TestClock's test passes), nor its images/s."""
        running = self._start is not None
        self._pause(None)
        try:
            yield
        finally:
            if running:
                self._start = time.perf_counter()

    @property
    def images_per_second(self) -> float:
        return self.images / self.train_seconds if self.train_seconds else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "images": self.images, "train_seconds": self.train_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self.images = int(state_dict["images"])
        self.train_seconds = float(state_dict["train_seconds"])


def _number(value: torch.Tensor | float) -> float:
    return float(value.item() if isinstance(value, torch.Tensor) else value)


class SplitCheck(L.Callback):
    """Stores the split with the run (<run>/split.json) at fit start; on a rerun or resume of
    the same run dir, stops with the differences when the data no longer gives that split."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = Path(run_dir)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.datamodule is not None:
            check_split(trainer.datamodule, self.run_dir, write=trainer.is_global_zero)


def logging_step(trainer: L.Trainer) -> bool:
    """Whether the Trainer sends this step's metrics to the loggers (``log_every_n_steps``)."""
    every = trainer.log_every_n_steps
    return every > 0 and (trainer.global_step + 1) % every == 0


class FiniteLoss(L.Callback):
    """The one finite check: a non-finite loss stops the run naming the step, and non-finite
    weights are never written over the last good checkpoint.

    The loss is read every step on the CPU, where reading it is free. On an accelerator reading
    it waits for the step to finish, so only on logging steps, which wait for it anyway: the
    GPU's queue of work never drains for the check.
    """

    def reads_loss(self, trainer: L.Trainer, loss: torch.Tensor) -> bool:
        return loss.device.type == "cpu" or logging_step(trainer)

    def on_before_backward(self, trainer: L.Trainer, pl_module, loss: torch.Tensor) -> None:
        if self.reads_loss(trainer, loss) and not loss_is_finite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at global step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}): lower optimizer.lr or enable trainer.gradient_clip_val"
            )

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict) -> None:
        # Raising here, before the file is written, keeps last.ckpt/best.ckpt the last good ones.
        bad = [
            k
            for k, v in checkpoint["state_dict"].items()
            if v.is_floating_point() and not torch.isfinite(v).all()
        ]
        if bad:
            raise FloatingPointError(
                f"weights became non-finite by global step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}, e.g. {bad[0]}): not saving them over the last good "
                "checkpoint; lower optimizer.lr or enable trainer.gradient_clip_val"
            )


def loss_is_finite(loss: torch.Tensor) -> bool:
    return bool(torch.isfinite(loss))


class LastCheckpoint(Checkpoint):
    """``last.ckpt`` every N optimizer steps and at epoch ends: a killed run loses at most N
    steps, and ``resume=true`` always finds the latest state.

    Epochs shorter than N steps (10 images per class: one step each) save at the first epoch
    end N steps after the last save, not at every one: the rule still holds and such a run does
    not write a checkpoint per step. The end of training always saves.

    Mid-epoch it is written just before the backward pass of the step after, when those
    weights have produced a finite loss and are still unchanged: a NaN never lands in it.
    Being a Checkpoint, Lightning calls it after the other callbacks (RunStats' row included).
    Not Lightning's ModelCheckpoint(save_last, every_n_train_steps): that one saves right after
    the optimizer step, before the new weights have produced a loss, so a last.ckpt could hold
    weights whose next loss is NaN and a resume would fail again at once.
    """

    def __init__(
        self, dirpath: str, every_n_train_steps: int | None = None, filename: str = "last.ckpt"
    ) -> None:
        self.path = Path(dirpath) / filename
        self.every_n_train_steps = every_n_train_steps
        self._saved_step = 0  # the initial weights need no save

    def on_before_backward(self, trainer: L.Trainer, pl_module, loss: torch.Tensor) -> None:
        step, every = trainer.global_step, self.every_n_train_steps
        due = bool(every) and step > 0 and step % every == 0 and step != self._saved_step
        if due and loss_is_finite(loss):
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        every = self.every_n_train_steps
        short_epoch = bool(every) and trainer.num_training_batches < every
        if not short_epoch or trainer.global_step - self._saved_step >= every:
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._saved_step:
            self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state, to resume
        self._saved_step = trainer.global_step


class TestProbabilities(L.Callback):
    """Keeps the probabilities the test metrics were computed from, in test-set order, so every
    artefact written from them (test_predictions.npz, eval's predictions.csv) agrees with them.

    Under DDP each rank tests every world_size-th sample (Lightning's DistributedSampler, no
    shuffle); gathering and interleaving the ranks' rows restores the order, and the sampler's
    padding is cut off."""

    __test__ = False  # a callback, not a pytest test class

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.probs: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.probs.append(outputs.detach().float())
        self.labels.append(batch[1].detach())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        probs, labels = torch.cat(self.probs), torch.cat(self.labels).long()
        if trainer.world_size > 1:
            loader = trainer.test_dataloaders
            size = len((loader[0] if isinstance(loader, list) else loader).dataset)
            probs = pl_module.all_gather(probs).transpose(0, 1).flatten(0, 1)[:size]
            labels = pl_module.all_gather(labels).transpose(0, 1).flatten(0, 1)[:size]
        self.probs, self.labels = [probs.cpu()], [labels.cpu()]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, labels) of the test pass, one row per test sample in order."""
        return torch.cat(self.probs).numpy(), torch.cat(self.labels).numpy()
