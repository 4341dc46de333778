"""Temperature scaling: one scalar T fitted on the validation split, stored beside its checkpoint.

``<run>/checkpoints/best.ckpt`` gets ``best.calibration.json``; ``load_run`` reads it, so eval,
predict, serve and export all answer with ``softmax(logits / T)``. The file names the checkpoint's
``global_step``: a checkpoint overwritten later (a resumed run) does not inherit a stale T, and a
checkpoint without a file (runs trained before calibration existed) answers with T = 1.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from transferlab.results import read_json, write_json

log = logging.getLogger(__name__)
SUFFIX = ".calibration.json"


def calibration_file(ckpt_path: str | Path) -> Path:
    """``checkpoints/best.ckpt`` -> ``checkpoints/best.calibration.json``."""
    return Path(ckpt_path).with_suffix(SUFFIX)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 minimising the NLL of ``softmax(logits / T)`` (LBFGS on log T, so T stays > 0)."""
    logits, labels = logits.detach().double(), labels.detach().long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def loader_logits(
    net: nn.Module,
    loader,
    max_samples: int | None = None,
    flip: bool = False,
    max_batches: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, classes) and labels of ``loader``'s (image, label) batches, in order, on the
    CPU; ``flip``: of the horizontally mirrored images (flip test-time augmentation)."""
    device = next(net.parameters()).device
    logits, labels, seen = [], [], 0
    with torch.inference_mode():
        for batch, (x, y) in enumerate(loader):
            if max_batches is not None and batch >= max_batches:
                break
            x = x.to(device)
            logits.append(net.eval()(x.flip(3) if flip else x).float().cpu())
            labels.append(torch.as_tensor(y).cpu())
            seen += len(x)
            if max_samples is not None and seen >= max_samples:
                break
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits)[:max_samples], torch.cat(labels).long()[:max_samples]


def val_batch_limit(limit: int | float | None, loader) -> int | None:
    """Lightning's ``limit_val_batches`` as a batch count: an int counts batches, a float below
    1 is a share of them; None, 1.0 or inf: all of them."""
    if isinstance(limit, int) and not isinstance(limit, bool):
        return limit
    if limit is None or float(limit) >= 1.0:
        return None
    return max(1, int(float(limit) * len(loader)))


def calibrate_best(trainer: L.Trainer, net: nn.Module, datamodule, best: str) -> dict | None:
    """After ``trainer.test(ckpt_path=best)`` ``net`` holds the best weights: fit T on the
    validation batches the Trainer validated on (``trainer.limit_val_batches``) and store it."""
    if not best or not trainer.is_global_zero:
        return None
    limits = [n for n in trainer.num_val_batches if n != float("inf")]
    max_batches = int(limits[0]) if limits else None
    return calibrate_checkpoint(net, datamodule.val_dataloader(), Path(best), max_batches)


def calibrate_checkpoint(
    net: nn.Module, loader, ckpt_path: Path, max_batches: int | None = None
) -> dict[str, Any]:
    """Fit T on ``loader`` (the validation split) with ``net`` holding ``ckpt_path``'s weights and
    write it beside the checkpoint; returns what was written."""
    logits, labels = loader_logits(net, loader, max_batches=max_batches)
    if not len(labels):  # nothing validated on: nothing to fit, T stays 1
        return {}
    temperature = fit_temperature(logits, labels)
    step = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)["global_step"]
    record = {
        "temperature": temperature,
        "checkpoint": Path(ckpt_path).name,
        "global_step": int(step),
        "fitted_on": "val",
        "num_samples": len(labels),
        "val_nll": float(F.cross_entropy(logits, labels)),
        "val_nll_calibrated": float(F.cross_entropy(logits / temperature, labels)),
    }
    write_json(calibration_file(ckpt_path), record)
    log.info("temperature %.3f fitted on %d validation images", temperature, len(labels))
    return record


def read_temperature(ckpt_path: Path, global_step: int | None) -> float:
    """The T stored for this checkpoint, or 1.0 when it has none (or the file is for an older
    version of it)."""
    path = calibration_file(ckpt_path)
    if not path.is_file():
        return 1.0
    record = read_json(path)
    if global_step is not None and record.get("global_step") != global_step:
        log.warning(
            "%s is for step %s of %s, the checkpoint is at step %s: using temperature 1",
            path.name,
            record.get("global_step"),
            record.get("checkpoint"),
            global_step,
        )
        return 1.0
    return float(record["temperature"])


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / T)`` from ``softmax(logits)``: log p is the logits up to a per-row
    constant, which softmax ignores."""
    if temperature == 1.0:
        return probs
    with np.errstate(divide="ignore"):
        scaled = np.log(np.asarray(probs, np.float64)) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
