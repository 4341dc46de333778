"""Loggers that never stop or lose a run: W&B online, else offline, else CSV; CSV that keeps the
metrics of earlier attempts of a resumed run."""

from __future__ import annotations

import contextlib
import logging
import netrc
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from transferlab.data.transforms import denormalize
from transferlab.network import reachable
from transferlab.training.rundir import persistent_id

log = logging.getLogger(__name__)


def wandb_logger(
    project: str,
    save_dir: str,
    group: str | None = None,
    tags: Sequence[str] = (),
    tag_groups: Sequence[str] = (),
    pretrained: bool | None = None,
    mode: str | None = None,
    **kwargs: object,
) -> Logger:
    """A WandbLogger that never prompts and never stops a run.

    The mode is decided up front and the run started here: online failing (bad key, server
    down) falls back to offline, offline failing (disk quota) to the CSV logger, each said once.
    The run id is kept in <save_dir>/wandb/run_id, so a resumed run continues the same W&B run.
    ``group`` defaults to the sweep folder in a multirun; ``tag_groups`` names config groups whose
    chosen option becomes a tag ("model:resnet18"); groups this config lacks are skipped.
    """
    chosen = mode or os.environ.get("WANDB_MODE")
    mode = chosen or wandb_mode()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    run_id = str(kwargs.pop("id", None) or persistent_id(Path(save_dir) / "wandb" / "run_id"))
    options = dict(
        project=project,
        save_dir=save_dir,
        group=group or sweep_group(),
        tags=run_tags(tags, tag_groups, pretrained),
    )
    options.update(id=run_id, resume="allow", **kwargs)
    if mode == "online":
        try:
            return _started(WandbLogger(mode="online", **options))
        except Exception as err:  # wandb raises its own error types for auth and network
            log.warning("W&B online failed (%s): logging offline" + _SYNC, _short(err), save_dir)
            _finish_failed()
    elif mode == "offline":
        why = "as configured" if chosen else "no API key or W&B host unreachable"
        log.warning("W&B offline (%s)" + _SYNC, why, save_dir)
    if mode == "disabled":
        return WandbLogger(mode="disabled", **options)
    try:
        return _started(WandbLogger(mode="offline", offline=True, **options))
    except Exception as err:
        _finish_failed()
        log.warning("W&B offline failed too (%s): logging to %s/csv", _short(err), save_dir)
        return csv_logger(save_dir)


def csv_logger(save_dir: str, name: str = "csv") -> CSVLogger:
    """<save_dir>/<name>/metrics.csv; a rerun of the run (resume) first moves the earlier
    attempt's file to metrics.attempt<N>.csv, which Lightning would otherwise delete."""
    metrics = Path(save_dir) / name / "metrics.csv"
    if rank_zero_only.rank == 0 and metrics.is_file():
        attempt = len(list(metrics.parent.glob("metrics.attempt*.csv"))) + 1
        metrics.rename(metrics.with_name(f"metrics.attempt{attempt}.csv"))
    return CSVLogger(save_dir, name=name, version="")


_SYNC = ": runs are saved under %s/wandb; upload later with `wandb sync`"


def _started(logger: WandbLogger) -> WandbLogger:
    """Start the W&B run now (rank 0), so its failures surface here and not mid-training."""
    _ = logger.experiment
    return logger


def _finish_failed() -> None:
    import wandb

    with contextlib.suppress(Exception):  # nothing started, or it died with the error reported
        wandb.finish(exit_code=1, quiet=True)
    with contextlib.suppress(Exception):  # a fresh W&B service: the failed one holds the run id
        wandb.teardown()
    # A shared service (`wandb beta core start`, named by WANDB_SERVICE) outlives teardown and
    # keeps the failed run's id: the retry starts this process's own service instead.
    os.environ.pop("WANDB_SERVICE", None)


def _short(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]


def wandb_mode(timeout: float = 3.0) -> str:
    """'online' if an API key exists and the W&B host answers, otherwise 'offline'."""
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    if not (os.environ.get("WANDB_API_KEY") or _netrc_has(urlparse(url).hostname or "")):
        return "offline"
    return "online" if reachable(url, timeout) else "offline"


def _netrc_has(host: str) -> bool:
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def sweep_group() -> str | None:
    """The sweep's folder (e.g. 'multirun/2026-11-23/09-10-00') when this job is part of one."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return str(HydraConfig.get().sweep.dir)[-128:]  # W&B's limit on group names


def run_tags(tags: Sequence[str], tag_groups: Sequence[str], pretrained: bool | None) -> list[str]:
    """Free tags, then 'group:choice' for each chosen config group, then pretrained or scratch."""
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    out = [str(t) for t in tags]
    out += [f"{g}:{choices[g]}" for g in tag_groups if choices.get(g)]
    if pretrained is not None:
        out.append("pretrained" if pretrained else "scratch")
    return [t[:64] for t in out]  # W&B's limit on a tag


class FinishWandbRun(Callback):
    """Closes the job's W&B run when a job ends (a Hydra callback).

    The jobs of a sweep share a process (one after another, or in a reused joblib worker), and
    Lightning's WandbLogger attaches to a run still open in the process: without this, every job
    after the first would log into the first job's run.
    """

    def on_job_end(self, config: object, job_return: JobReturn, **kwargs: object) -> None:
        wandb = sys.modules.get("wandb")
        if wandb is None or wandb.run is None:
            return
        failed = job_return.status != JobStatus.COMPLETED or job_return.return_value is None
        wandb.finish(exit_code=1 if failed else 0)


class WandbTestReport(L.Callback):
    """After testing: test metrics in the W&B run summary, the confusion matrix, sample predictions.

    Does nothing when no WandbLogger is attached, so it is safe in any callbacks list.
    """

    def __init__(self, num_samples: int = 32) -> None:
        self.num_samples = num_samples
        self.samples: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx > 0 or _wandb_of(trainer) is None:
            return
        x, y = batch[0][: self.num_samples], batch[1][: self.num_samples]
        with torch.no_grad():
            probs = pl_module(x).float().softmax(dim=1)
        self.samples = (x.cpu(), y.cpu(), probs.cpu())

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = _wandb_of(trainer)
        if logger is None or not trainer.is_global_zero:
            return
        import wandb

        run = logger.experiment
        metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")
        }
        run.summary.update(metrics)
        names = list(pl_module.class_names)
        media = {}
        matrix = getattr(pl_module, "confusion_matrix", None)
        if matrix is not None:
            y_true, y_pred = _pairs_from_matrix(matrix)
            media["test/confusion_matrix"] = wandb.plot.confusion_matrix(
                y_true=y_true, preds=y_pred, class_names=names
            )
        if self.samples is not None:
            media["test/predictions"] = _predictions_table(
                *self.samples, names, pl_module.input_spec
            )
        if media:
            run.log(media)


def _wandb_of(trainer: L.Trainer) -> WandbLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)


def _pairs_from_matrix(matrix: list[list[int]]) -> tuple[list[int], list[int]]:
    """(true, predicted) label lists that reproduce the counts, the form wandb's chart takes."""
    y_true, y_pred = [], []
    for true, row in enumerate(matrix):
        for pred, count in enumerate(row):
            y_true += [true] * int(count)
            y_pred += [pred] * int(count)
    return y_true, y_pred


def _predictions_table(
    x: torch.Tensor, y: torch.Tensor, probs: torch.Tensor, names: list[str], spec: dict
):
    import wandb

    table = wandb.Table(columns=["image", "label", "prediction", "confidence", "correct"])
    confidence, pred = probs.max(dim=1)
    shown = denormalize(x, spec)  # as the network saw them
    for img, true, p, c in zip(shown, y.tolist(), pred.tolist(), confidence.tolist(), strict=True):
        image = wandb.Image(img)
        table.add_data(image, names[true], names[p], round(c, 4), true == p)
    return table
