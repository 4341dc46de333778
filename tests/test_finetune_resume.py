"""A progressive fine-tuning run SIGKILLed after its first unfreeze continues that phase on resume
(Lightning #21901: BackboneFinetuning's unfrozen layers came back frozen): real train.py runs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, run_script

pytestmark = pytest.mark.slow

# small_cnn's stages at depth 1, 2, 3 (tests/test_finetune); unfreeze_at=[1,2] never reaches the third
STAGES = ["hidden.1", "features.9", "features.8"]


def params_of(stage: str, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: w for n, w in weights.items() if n.startswith(f"{stage}.")}


def group(state: dict, name: str) -> dict:
    return next(g for g in state["groups"] if g["name"] == name)


@pytest.mark.parametrize(
    ("kill_step", "saved_step", "resumed_epoch"),
    [(5, 4, 1), (6, 6, 2)],
    ids=["mid-epoch", "epoch-end"],
)
def test_killed_progressive_run_keeps_its_unfrozen_stages_training(
    tmp_path: Path, idx_dir: Path, kill_step: int, saved_step: int, resumed_epoch: int
):
    run_dir, probe = tmp_path / "run", tmp_path / "probe"
    # 3 steps an epoch; epoch 1 trains hidden.1, epoch 2 also features.9. last.ckpt every 2 steps
    # and at epoch ends: killed at step 5 it holds step 4 (mid epoch 1), at step 6 epoch 1's end.
    # Lightning resumes either without calling on_train_epoch_start for the epoch it resumes in.
    args = [*TINY, f"data.root={idx_dir}", "data.search_dirs=[]", "model=small_cnn"]
    args += ["pretrained=false", "finetune=progressive", "finetune.unfreeze_at=[1,2]"]
    args += ["trainer.max_epochs=3", "trainer.limit_train_batches=3", "logger=none"]
    args += ["callbacks.progress_bar=null", "callbacks.last_checkpoint.every_n_train_steps=2"]
    args += [f"hydra.run.dir={run_dir}", "resume=true"]
    killer = [
        "+callbacks.kill._target_=tests.run_probe.KillAt",
        f"+callbacks.kill.global_step={kill_step}",
    ]
    killed = run_script("train.py", [*args, *killer], cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == saved_step
    saved = {g["name"]: g["lr"] for g in last["optimizer_states"][0]["param_groups"]}
    assert list(saved) == ["head", STAGES[0]], "killed after the first unfreeze"

    prober = [
        "+callbacks.probe._target_=tests.run_probe.StageProbe",
        f"+callbacks.probe.dirpath={probe}",
    ]
    resumed = run_script("train.py", [*args, *prober], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "results.json").read_text())["status"] == "ok"

    start = torch.load(probe / "rank0-start.pt", weights_only=True)
    end = torch.load(probe / f"rank0-epoch{resumed_epoch}.pt", weights_only=True)
    assert (start["epoch"], start["global_step"]) == (resumed_epoch, saved_step)
    trained, frozen = STAGES[:resumed_epoch], STAGES[resumed_epoch:]
    for state in (start, end):  # from the first resumed step to the epoch's end
        weights, requires_grad = state["weights"], state["requires_grad"]
        assert all(requires_grad[n] for s in trained for n in params_of(s, weights))
        assert not any(requires_grad[n] for s in frozen for n in params_of(s, weights))
        assert [g["name"] for g in state["groups"]] == ["head", *trained]
        for depth, stage in enumerate(trained, start=1):
            assert set(group(state, stage)["params"]) == set(params_of(stage, weights))
            want = 0.5**depth * group(state, "head")["lr"]  # progressive's lr_decay: 0.5
            assert group(state, stage)["lr"] == pytest.approx(want), stage
    for name, lr in saved.items():  # the schedule goes on where it was
        assert group(start, name)["lr"] == pytest.approx(lr)
    before, after = start["weights"], end["weights"]
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    head = {n for n in before if n.startswith("fc.")}
    assert moved == head | {n for s in trained for n in params_of(s, before)}
