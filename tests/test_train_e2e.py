"""train.py and eval.py as a user runs them: real subprocesses, real data, real files out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY, requires_fmnist, run_script

pytestmark = [pytest.mark.slow, requires_fmnist]


def train(tmp_path: Path, *overrides: str):
    run_dir = tmp_path / "run"
    result = run_script("train.py", [*TINY, f"hydra.run.dir={run_dir}", *overrides], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def test_train_writes_results_and_eval_reproduces_them(tmp_path: Path):
    run_dir, result = train(tmp_path, "model=resnet18", "pretrained=false")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "ok"
    assert results["model"] == "resnet18" and results["pretrained"] is False
    assert results["data"] == "fashion_mnist" and results["seed"] == 42
    for key in (
        "test/acc",
        "test/precision",
        "test/recall",
        "test/f1",
        "test/log_loss",
        "test/auroc",
    ):
        assert 0.0 <= results["test"][key] <= (1.0 if key != "test/log_loss" else 50.0), key
    assert results["images_per_second"] > 0 and results["train_seconds"] > 0
    assert len(results["history"]) == 1 and "val/acc" in results["history"][0]
    assert sum(map(sum, results["confusion_matrix"])) == 2 * 32  # limit_test_batches x eval batch
    best = Path(results["best_checkpoint"])
    assert best.is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "test/acc" in result.stdout  # the rich metrics table

    eval_dir = tmp_path / "eval"
    ev = run_script("eval.py", [f"ckpt_path={best}", f"hydra.run.dir={eval_dir}"], cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    evaluated = json.loads((eval_dir / "eval_results.json").read_text())
    assert evaluated["test"]["test/acc"] == pytest.approx(results["test"]["test/acc"], abs=1e-6)
    assert evaluated["confusion_matrix"] == results["confusion_matrix"]


def test_wandb_offline_run_files_are_written(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run_dir, _ = train(tmp_path, "model=small_cnn", "pretrained=false", "logger=wandb")
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert list(offline_runs[0].glob("*.wandb")), "no W&B run file to sync"


def test_ddp_on_cpu_with_two_processes(tmp_path: Path):
    run_dir, _ = train(
        tmp_path, "model=small_cnn", "pretrained=false", "trainer=ddp", "trainer.accelerator=cpu"
    )
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "ok" and results["epochs"] == 1
