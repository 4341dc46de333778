"""One job per GPU in a parallel sweep: ``hydra/launcher=gpus`` (joblib) with this callback.

A joblib worker is reused for several jobs and takes whichever job is next, so a GPU chosen from
the job number would put two running jobs on one GPU. Instead each worker process claims a GPU
once, through a lock file that it holds until it exits, and every job it runs stays there.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

_claim: tuple[str, IO[str]] | None = None  # this process's GPU and the lock that holds it


def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else every GPU torch counts."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip() and gpu.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def claim_gpu(gpus: list[str], lock_dir: Path) -> str | None:
    """The first of ``gpus`` no other live process holds, kept for this process's lifetime."""
    global _claim
    if _claim is not None:
        return _claim[0]
    lock_dir.mkdir(parents=True, exist_ok=True)
    for gpu in gpus:
        handle = (lock_dir / f"gpu-{gpu}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _claim = (gpu, handle)
        return gpu
    return None


class PinGpu(Callback):
    """Sets the launcher's n_jobs (if 0) to the GPU count, each job's CUDA_VISIBLE_DEVICES to a GPU.

    Without GPUs it leaves everything alone: jobs run one at a time on the CPU.
    """

    def __init__(self) -> None:
        self.gpus: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.gpus = visible_gpus()  # read here, in the launching process, before any job pins
        launcher = config.hydra.launcher
        if not launcher.get("n_jobs"):  # 0 in gpus.yaml: as many jobs at once as GPUs
            with open_dict(launcher):
                launcher.n_jobs = max(1, len(self.gpus))
        log.info("GPUs %s: %s jobs at a time", self.gpus or "none", launcher.n_jobs)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.gpus:
            return
        job = config.hydra.job.num
        gpu = claim_gpu(self.gpus, Path(config.hydra.sweep.dir) / ".gpu_claims")
        if gpu is None:
            gpu = self.gpus[job % len(self.gpus)]
            log.warning("more parallel jobs than GPUs: job %s shares GPU %s", job, gpu)
        # Effective only before this process first touches CUDA; a claim never changes after that.
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        log.info("job %s pinned to GPU %s (CUDA_VISIBLE_DEVICES=%s)", job, gpu, gpu)
