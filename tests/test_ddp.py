"""``trainer=ddp`` with progressive fine-tuning as one real train.py run over 2 CPU processes (gloo;
the same code path as GPUs): stages unfrozen mid-run train in step on both ranks (Lightning #20340:
DDP syncs only what was trainable when it wrapped the model), and the run leaves one set of files."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, run_script

pytestmark = pytest.mark.slow

STAGES = ["hidden.1", "features.9"]  # small_cnn's stages at depth 1 and 2, unfrozen at epochs 1, 2


def dumps(probe: Path, when: str) -> list[dict]:
    return [torch.load(probe / f"rank{r}-{when}.pt", weights_only=True) for r in (0, 1)]


def ddp_args(idx_dir: Path, run_dir: Path) -> list[str]:
    """3 epochs of 3 steps on 2 CPU processes; hidden.1 unfreezes at epoch 1, features.9 at 2."""
    args = [*TINY, f"data.root={idx_dir}", "data.search_dirs=[]", "model=small_cnn"]
    args += ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "pretrained=false"]
    args += ["finetune=progressive", "finetune.unfreeze_at=[1,2]", "trainer.max_epochs=3"]
    args += ["trainer.limit_train_batches=3", "logger=wandb", "callbacks.progress_bar=null"]
    args += ["data.batch_size=8"]  # each rank reads half of the ~70 training images: 3 steps
    return [*args, f"hydra.run.dir={run_dir}"]


def probed(probe: Path) -> list[str]:
    return [
        "+callbacks.probe._target_=tests.run_probe.StageProbe",
        f"+callbacks.probe.dirpath={probe}",
    ]


def assert_ranks_equal(states: list[list[dict]]) -> None:
    for rank0, rank1 in states:
        assert rank0["weights"].keys() == rank1["weights"].keys()
        for name, weight in rank0["weights"].items():
            torch.testing.assert_close(rank1["weights"][name], weight, rtol=0, atol=1e-6)


def test_ddp_progressive_run_keeps_ranks_equal_and_writes_one_run(
    tmp_path: Path, idx_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    run_dir, probe = tmp_path / "run", tmp_path / "probe"
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = run_script("train.py", [*ddp_args(idx_dir, run_dir), *probed(probe)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    epochs = [dumps(probe, "start"), *(dumps(probe, f"epoch{e}") for e in range(3))]
    assert_ranks_equal(epochs)
    for epoch, stage in enumerate(STAGES, start=1):  # the newly unfrozen stage moves on both
        for before, after in zip(epochs[epoch], epochs[epoch + 1], strict=True):
            moved = [n for n in before["weights"] if n.startswith(f"{stage}.")]
            assert moved and all(
                not torch.equal(before["weights"][n], after["weights"][n]) for n in moved
            ), (epoch, stage)
            assert all(after["requires_grad"][n] for n in moved)
            assert stage in [g["name"] for g in after["groups"]]
    for epoch in range(3):  # each rank validates its half; the logged metrics are the whole's
        rank0, rank1 = dumps(probe, f"val{epoch}")
        synced = [key for key in rank0["metrics"] if key.startswith("val/")]
        assert "val/acc" in synced and "val/f1" in synced
        for key in synced:
            assert rank1["metrics"][key] == pytest.approx(rank0["metrics"][key], abs=1e-6), key

    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("results.json")] == [
        Path("run/results.json")
    ]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "ok" and results["epochs"] == 3
    checkpoints = sorted(p.relative_to(run_dir) for p in tmp_path.rglob("*.ckpt"))
    assert checkpoints == [Path("checkpoints/best.ckpt"), Path("checkpoints/last.ckpt")]
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert len(list(tmp_path.rglob("offline-run-*"))) == 1


def test_ddp_run_killed_after_an_unfreeze_resumes_with_ranks_in_step(
    tmp_path: Path, idx_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    run_dir, probe = tmp_path / "run", tmp_path / "probe"
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = [*ddp_args(idx_dir, run_dir), "resume=true"]
    args += ["callbacks.last_checkpoint.every_n_train_steps=2"]
    # both ranks SIGKILL themselves as step 5 starts: last.ckpt holds step 4, mid epoch 1
    killer = ["+callbacks.kill._target_=tests.run_probe.KillAt", "+callbacks.kill.global_step=5"]
    killed = run_script("train.py", [*args, *killer], cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, 4)

    resumed = run_script("train.py", [*args, *probed(probe)], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    start, epoch1, epoch2 = (dumps(probe, when) for when in ("start", "epoch1", "epoch2"))
    assert_ranks_equal([start, epoch1, epoch2])
    for stage, before, after in ((STAGES[0], start, epoch1), (STAGES[1], epoch1, epoch2)):
        for b, a in zip(before, after, strict=True):  # on both ranks
            moved = [n for n in b["weights"] if n.startswith(f"{stage}.")]
            assert moved and all(not torch.equal(b["weights"][n], a["weights"][n]) for n in moved)
            assert all(a["requires_grad"][n] for n in moved), stage
    assert json.loads((run_dir / "results.json").read_text())["status"] == "ok"
    run_id = (run_dir / "wandb" / "run_id").read_text().strip()
    attempts = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2 and all(p.name.endswith(f"-{run_id}") for p in attempts)
