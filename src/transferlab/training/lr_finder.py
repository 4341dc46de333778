"""Lightning's learning-rate finder, run before fit when ``tune.lr_find=true``."""

from __future__ import annotations

import functools
import logging

import lightning as L
from lightning.pytorch.tuner import Tuner

from transferlab.training.module import Classifier

log = logging.getLogger(__name__)


def find_learning_rate(
    trainer: L.Trainer, module: Classifier, datamodule: L.LightningDataModule, **kwargs: float
) -> float | None:
    """Sweep the lr exponentially over a few steps and set the suggestion as the optimizer's lr.

    The sweep trains with the fine-tuning strategy's first phase (e.g. only the head for
    linear_probe), so the lr found is the one that phase starts with.
    """
    finder = Tuner(trainer).lr_find(module, datamodule=datamodule, update_attr=False, **kwargs)
    lr = finder.suggestion() if finder else None
    if lr is None:
        log.warning("lr finder gave no suggestion (too few steps?): keeping optimizer.lr")
        return None
    module.optimizer_factory = functools.partial(module.optimizer_factory, lr=lr)
    log.info("lr finder suggests lr=%.3g", lr)
    return lr
