"""Early stopping (`callbacks=[default,early_stopping]`) watches what the checkpoint watches, ends
fit on a real run, and results.json says in which epoch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY, compose_train
from transferlab.results import RESULTS_FILE, read_json
from transferlab.training.run import train

FAST = [
    *TINY,
    "model=small_cnn",
    "pretrained=false",
    "data.train_per_class=4",
    "trainer.limit_train_batches=2",
    "logger=none",
    "callbacks=[default,early_stopping]",
    "callbacks.progress_bar=null",
]


def test_early_stopping_monitors_the_checkpoint_metric():
    callbacks = compose_train(["callbacks=[default,early_stopping]"]).callbacks
    assert callbacks.early_stopping.monitor == callbacks.model_checkpoint.monitor == "val/acc"
    assert callbacks.early_stopping.mode == callbacks.model_checkpoint.mode == "max"
    moved = compose_train(
        ["callbacks=[default,early_stopping]", "callbacks.model_checkpoint.monitor=val/loss"]
    )
    assert moved.callbacks.early_stopping.monitor == "val/loss"  # one fact, one place


@pytest.mark.slow
@pytest.mark.parametrize(
    ("min_delta", "patience", "stopped"),
    [
        (1.0, 1, 1),  # accuracy cannot rise by 1.0: the 2nd epoch exhausts a patience of 1
        (0.0, 10, None),  # never out of patience: all 3 epochs run, nothing stopped them
    ],
)
def test_results_say_in_which_epoch_training_stopped(
    idx_dir: Path, tmp_path: Path, min_delta: float, patience: int, stopped: int | None
):
    overrides = [*FAST, f"data.search_dirs=[{idx_dir}]", "trainer.max_epochs=3"]
    overrides += [f"callbacks.early_stopping.min_delta={min_delta}"]
    overrides += [f"callbacks.early_stopping.patience={patience}"]
    cfg = compose_train(overrides, output_dir=tmp_path / "run")
    results = train(cfg, {"model": "small_cnn"})
    assert read_json(tmp_path / "run" / RESULTS_FILE)["stopped_epoch"] == stopped
    epochs = 3 if stopped is None else stopped + 1
    assert results["epochs"] == len(results["history"]) == epochs
    assert results["history"][-1]["epoch"] == epochs - 1
    assert results["best_val"]["metric"] == "val/acc"
    assert 0.0 <= results["best_val"]["value"] <= 1.0
