"""What the LightningModule logs about training, through a real Trainer and the CSV logger."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.conftest import TINY, compose_train
from transferlab.training.build import build_experiment, build_trainer
from transferlab.training.callbacks import FiniteLoss


class StepLosses(L.Callback):
    """Every step's training loss and batch size, as the optimizer saw them."""

    def __init__(self) -> None:
        self.epochs: dict[int, list[tuple[float, int]]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = (float(outputs["loss"]), len(batch[1]))
        self.epochs.setdefault(trainer.current_epoch, []).append(step)


def small_run(idx_dir: Path, *extra: str) -> list[str]:
    """small_cnn on the tiny IDX data, 10 steps an epoch (80 training images, batch 8)."""
    return [
        *TINY,
        f"data.search_dirs=[{idx_dir}]",
        "data.url=null",
        "data.batch_size=8",
        "model=small_cnn",
        "pretrained=false",
        "experiment=none",
        "input.size=32",
        "trainer.limit_val_batches=0",
        *extra,
    ]


def test_train_loss_epoch_mean_is_exact_and_step_loss_follows_log_every_n_steps(
    idx_dir: Path, tmp_path: Path
):
    overrides = small_run(
        idx_dir, "trainer.max_epochs=2", "trainer.log_every_n_steps=4", "logger=csv"
    )
    cfg = compose_train(overrides, tmp_path)
    exp = build_experiment(cfg)
    trainer = build_trainer(cfg)
    losses = StepLosses()
    trainer.callbacks.append(losses)
    trainer.fit(exp.module, datamodule=exp.datamodule)

    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    step_rows = {int(r["step"]): float(r["train/loss_step"]) for r in rows if r["train/loss_step"]}
    epoch_rows = [float(r["train/loss_epoch"]) for r in rows if r["train/loss_epoch"]]
    steps = [loss for epoch in sorted(losses.epochs) for loss, _ in losses.epochs[epoch]]
    assert len(steps) == 20
    # the loggers get the step loss on every 4th step (Lightning's step index counts from 0)
    assert sorted(step_rows) == [3, 7, 11, 15, 19]
    for step, value in step_rows.items():
        assert value == pytest.approx(steps[step], rel=1e-5)
    # and each epoch's mean of every step, weighted by batch size
    assert len(epoch_rows) == 2
    for epoch, logged in zip(sorted(losses.epochs), epoch_rows, strict=True):
        pairs = losses.epochs[epoch]
        mean = sum(loss * n for loss, n in pairs) / sum(n for _, n in pairs)
        assert logged == pytest.approx(mean, rel=1e-5)


class FiniteChecks(L.Callback):
    """At each step: would the run's FiniteLoss read the loss if it lived on an accelerator?"""

    def __init__(self) -> None:
        self.due: list[bool] = []

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        finite = next(c for c in trainer.callbacks if isinstance(c, FiniteLoss))
        self.due.append(finite.reads_loss(trainer, torch.empty((), device="meta")))


def test_nan_check_waits_for_the_device_only_on_logging_steps(idx_dir: Path, tmp_path: Path):
    cfg = compose_train(small_run(idx_dir, "trainer.log_every_n_steps=3", "logger=none"), tmp_path)
    exp = build_experiment(cfg)
    trainer = build_trainer(cfg)
    checks = FiniteChecks()
    trainer.callbacks.append(checks)
    trainer.fit(exp.module, datamodule=exp.datamodule)
    assert checks.due == [(step + 1) % 3 == 0 for step in range(10)]
    assert FiniteLoss().reads_loss(trainer, torch.zeros(()))  # on the CPU: every step


@pytest.mark.parametrize("default_layout", [True, False])
def test_the_default_run_trains_channels_last(idx_dir: Path, tmp_path: Path, default_layout: bool):
    extra = [] if default_layout else ["~callbacks.channels_last"]
    cfg = compose_train(small_run(idx_dir, "logger=none", *extra), tmp_path)
    exp = build_experiment(cfg)
    trainer = build_trainer(cfg)
    trainer.fit(exp.module, datamodule=exp.datamodule)
    convs = [m.weight for m in exp.module.net.modules() if isinstance(m, torch.nn.Conv2d)]
    nhwc = [w.is_contiguous(memory_format=torch.channels_last) for w in convs]
    assert convs and all(nhwc) is default_layout and any(nhwc) is default_layout
