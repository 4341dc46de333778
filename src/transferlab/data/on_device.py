"""Small in-memory datasets (Fashion-MNIST, CIFAR-10) held on the device as one uint8 tensor and
augmented there, as the CIFAR speed records do: no loader workers, no per-sample Python.

Crop, scale, flip and resize are one batched ``affine_grid`` + ``grid_sample``; normalisation
follows. Evaluation takes the same centre crop (``crop_pct``) as the CPU eval transform.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from transferlab.data.datasets import ArrayDataset


class DeviceAugment:
    """uint8 [B,H,W,C] -> normalised float [B,3,S,S]; random resized crop + flip when training."""

    def __init__(
        self, spec: dict[str, Any], scale: tuple[float, float] = (0.6, 1.0), flip: bool = True
    ) -> None:
        self.size, self.crop_pct = int(spec["size"]), float(spec["crop_pct"])
        self.mean, self.std = spec["mean"], spec["std"]
        self.scale, self.flip = scale, flip

    def __call__(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float().div_(255)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        theta = self._theta(x.shape[0], x.shape[2], x.shape[3], train, x.device)
        grid = F.affine_grid(theta, [x.shape[0], 3, self.size, self.size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def _theta(self, n: int, h: int, w: int, train: bool, device: torch.device) -> torch.Tensor:
        """Per-sample affine maps from output to input coordinates ([-1, 1] both)."""
        side = min(h, w) * self.crop_pct  # the square the eval transform keeps
        sx, sy = (
            torch.full((n,), side / w, device=device),
            torch.full((n,), side / h, device=device),
        )
        tx, ty = torch.zeros(n, device=device), torch.zeros(n, device=device)
        if train:
            area = torch.empty(n, device=device).uniform_(*self.scale).sqrt()
            sx, sy = sx * area, sy * area
            tx = (torch.rand(n, device=device) * 2 - 1) * (1 - sx)
            ty = (torch.rand(n, device=device) * 2 - 1) * (1 - sy)
            if self.flip:
                sx = sx * (torch.randint(0, 2, (n,), device=device) * 2 - 1)
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
        return theta


class DeviceBatches:
    """Ready (images, labels) batches cut from a device-resident copy of an ArrayDataset.

    Iterating shuffles with the global torch RNG (seeded by the run) and shards across ranks.
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        store: torch.Tensor,
        batch_size: int,
        augment: DeviceAugment,
        train: bool,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.store, self.augment, self.train = store, augment, train
        self.indices = torch.as_tensor(dataset.indices, device=store.device)
        self.labels = torch.tensor(dataset.labels, device=store.device).long()
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def _order(self) -> torch.Tensor:
        order = (
            self.indices[torch.randperm(len(self.indices), device="cpu").to(self.indices.device)]
            if self.train
            else self.indices
        )
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = math.ceil(len(self.indices) / self.world_size)
        return (
            n // self.batch_size
            if self.train and n >= self.batch_size
            else math.ceil(n / self.batch_size)
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            with torch.no_grad():
                yield self.augment(self.store[idx], self.train), self.labels[idx]


def device_store(
    dataset: ArrayDataset, device: torch.device, cache: dict[int, torch.Tensor]
) -> torch.Tensor:
    """The dataset's whole uint8 array on ``device`` (HxWxC), uploaded once per array."""
    key = id(dataset.images)
    if key not in cache:
        images = torch.tensor(dataset.images)  # a copy: the IDX buffer is read-only
        cache[key] = (images[..., None] if images.ndim == 3 else images).to(device)
    return cache[key]
