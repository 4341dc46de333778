"""Test-only callbacks that a real ``python train.py`` subprocess loads through a Hydra override
(``+callbacks.probe._target_=tests.run_probe.StageProbe``): the script's folder is on sys.path.

``StageProbe`` writes what each rank trains, at fit start (after a resume has been restored) and
at every epoch end; ``KillAt`` SIGKILLs the process at a known step, as a crash or OOM would;
``DeviceRecord`` notes which GPU a sweep job ran on, and when.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import lightning as L
import torch


class StageProbe(L.Callback):
    """<dir>/rank<r>-<when>.pt: the net's weights, requires_grad per parameter, the optimizer's
    groups (name, lr, parameter names) and the metrics Lightning holds at that point."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def _dump(self, trainer: L.Trainer, pl_module: L.LightningModule, when: str) -> None:
        names = {id(p): n for n, p in pl_module.net.named_parameters()}
        groups = [
            {"name": g.get("name"), "lr": g["lr"], "params": [names[id(p)] for p in g["params"]]}
            for g in trainer.optimizers[0].param_groups
        ]
        state = {
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "weights": {n: p.detach().cpu().clone() for n, p in pl_module.net.named_parameters()},
            "requires_grad": {n: p.requires_grad for n, p in pl_module.net.named_parameters()},
            "groups": groups,
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        }
        self.dirpath.mkdir(parents=True, exist_ok=True)
        torch.save(state, self.dirpath / f"rank{trainer.global_rank}-{when}.pt")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._dump(trainer, pl_module, "start")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._dump(trainer, pl_module, f"epoch{trainer.current_epoch}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._dump(trainer, pl_module, f"val{trainer.current_epoch}")


class KillAt(L.Callback):
    """SIGKILL this process when a training batch starts at ``global_step``: no cleanup runs."""

    def __init__(self, global_step: int) -> None:
        self.global_step = global_step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.global_step:
            os.kill(os.getpid(), signal.SIGKILL)


class DeviceRecord(L.Callback):
    """<path>: the GPU this job was given (its CUDA_VISIBLE_DEVICES), its pid and its wall-clock
    span from fit setup to test teardown. With ``hold_until`` the job keeps its GPU, before
    training, until that file exists (another job has started), as a longer job would."""

    def __init__(self, path: str, hold_until: str | None = None, timeout_s: float = 120) -> None:
        self.path = Path(path)
        self.hold_until = Path(hold_until) if hold_until else None
        self.timeout_s = timeout_s
        self.record: dict = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.record = {"gpu": gpu, "pid": os.getpid(), "start": time.time(), "end": None}
        self.path.write_text(json.dumps(self.record))
        deadline = time.monotonic() + self.timeout_s
        while self.hold_until and not self.hold_until.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "test":
            self.path.write_text(json.dumps({**self.record, "end": time.time()}))
