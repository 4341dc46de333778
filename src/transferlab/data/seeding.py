"""Reproducible augmentation: albumentations keeps its own RNG, which ``seed_everything`` does
not reach, so each loader (and each of its workers) reseeds it from torch's seeded RNG."""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import get_worker_info


def seed_transform(dataset: Any) -> None:
    """Reseed ``dataset.transform`` (an albumentations Compose) from torch's global RNG. The seed
    is drawn whether or not there is a transform, so the draws after it (the shuffle's) are the
    same for images and for their cached features."""
    seed = int(torch.randint(2**31 - 1, ()))
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: Lightning's per-worker seeding, then this worker's own transform seed."""
    pl_worker_init_function(worker_id)
    info = get_worker_info()
    if info is not None:
        seed_transform(info.dataset)
