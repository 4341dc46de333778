"""Test accuracy against wall time while a run trains: the time-to-accuracy curve.

A measurement, not a model-selection signal: the points are written to a file and never reach
the checkpoint callback, so best.ckpt is still chosen on validation alone.
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging

from transferlab.errors import ConfigError
from transferlab.training.callbacks import RunStats


class TestClock(L.Callback):
    """Every ``every_seconds`` of training wall time, the test split's accuracy goes to ``path``.

    The clock starts when training starts and stops while this callback evaluates, so the curve's
    seconds are what the run would have taken without it. Validation stays on the clock: a user
    waits for it too. With weight averaging (EMA) the averaged weights are tested, as the run
    validates and saves them.
    """

    __test__ = False  # not a pytest class, whatever its name says

    def __init__(self, path: str, every_seconds: float = 60.0) -> None:
        if every_seconds <= 0:
            raise ConfigError(
                f"callbacks.test_clock.every_seconds={every_seconds}: give a number of seconds > 0"
            )
        self.path, self.every_seconds = Path(path), every_seconds
        self.points: list[dict[str, Any]] = []
        self._started = 0.0
        self._paused = 0.0
        self._loader: Any = None

    def seconds(self) -> float:
        return time.perf_counter() - self._started - self._paused

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started, self._paused, self.points = time.perf_counter(), 0.0, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.seconds() >= self.every_seconds * (len(self.points) + 1):
            self._measure(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._measure(trainer, pl_module)  # the final weights, wherever the clock stood

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds, paused_at = self.seconds(), time.perf_counter()
        with _run_stats_paused(trainer):  # results.json's train time and images/s leave it out
            accuracy = self._test_accuracy(trainer, _tested_module(trainer, pl_module))
        point = {
            "seconds": round(seconds, 2),
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "test_acc": accuracy,
        }
        point["eval_seconds"] = round(time.perf_counter() - paused_at, 2)  # off the clock
        self.points.append(point)
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.points, indent=1) + "\n")
        self._paused += time.perf_counter() - paused_at

    def _test_accuracy(self, trainer: L.Trainer, module: L.LightningModule) -> float:
        if self._loader is None:  # one loader for every point: its workers persist
            self._loader = trainer.datamodule.test_dataloader()
        modes = {m: m.training for m in module.modules()}  # frozen BatchNorms stay in eval
        module.eval()
        correct = total = 0
        try:
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                for images, labels in self._loader:
                    images = images.to(module.device, non_blocking=True)
                    labels = labels.to(module.device, non_blocking=True)
                    correct += int((module(images).argmax(1) == labels).sum())
                    total += len(labels)
        finally:
            for m, training in modes.items():
                m.train(training)
        return round(correct / max(total, 1), 4)


def _run_stats_paused(trainer: L.Trainer) -> AbstractContextManager:
    stats = next((c for c in trainer.callbacks if isinstance(c, RunStats)), None)
    return stats.off_the_clock() if stats else nullcontext()


def _tested_module(trainer: L.Trainer, pl_module: L.LightningModule) -> L.LightningModule:
    """The averaged copy when an EMA callback keeps one, else the module being trained."""
    for callback in trainer.callbacks:
        average = getattr(callback, "_average_model", None)
        if isinstance(callback, WeightAveraging) and average is not None:
            return average.module
    return pl_module
