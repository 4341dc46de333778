"""Reproducible data: albumentations keeps its own RNG, which ``seed_everything`` does not reach,
so each loader (and each of its workers) reseeds it from torch's seeded RNG; and the training
order comes from the run's seed alone, whatever the loader's workers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import RandomSampler, get_worker_info


def seed_transform(dataset: Any) -> None:
    """Reseed ``dataset.transform`` (an albumentations Compose) from torch's global RNG. The seed
    is drawn whether or not there is a transform, so the draws after it (the shuffle's) are the
    same for images and for their cached features."""
    seed = draw_seed()
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: Lightning's per-worker seeding, then this worker's own transform seed."""
    pl_worker_init_function(worker_id)
    info = get_worker_info()
    if info is not None:
        seed_transform(info.dataset)


def draw_seed() -> int:
    """A seed from torch's global RNG, which ``seed_everything`` seeded."""
    return int(torch.randint(2**31 - 1, ()))


def shuffled(dataset: Any) -> RandomSampler:
    """A new order each epoch from a generator of the loader's own, seeded once from torch's
    RNG: the order depends on the run's seed alone, not on loader workers (a DataLoader without
    persistent workers draws from the global RNG at every epoch, one with them does not)."""
    generator = torch.Generator()
    generator.manual_seed(draw_seed())
    return OnePermutation(dataset, generator=generator)


class OnePermutation(RandomSampler):
    """One permutation per pass, drawn when the pass starts. torch's RandomSampler draws a
    second one when its iterator is run to the end, which loader workers do (they prefetch) and
    Lightning without workers does not (it stops at the epoch's last batch), so the next epoch's
    order would depend on the workers. A RandomSampler still: DDP replaces it as it would."""

    def __iter__(self) -> Iterator[int]:
        yield from torch.randperm(len(self.data_source), generator=self.generator).tolist()
