"""Small in-memory datasets (Fashion-MNIST, CIFAR-10) held on the device as one uint8 tensor and
augmented there, as the CIFAR speed records do: no loader workers, no per-sample Python.

The batch is first resized with ``F.interpolate(antialias=True)``, PIL's filters, so evaluation
is the CPU eval transform's resize and centre crop (``data/resampling.py``). Training then takes
its random crop, scale and flip from the resized batch in one ``affine_grid`` + ``grid_sample``:
crops only enlarge from there, so that step needs no antialiasing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from transferlab.data.datasets import ArrayDataset
from transferlab.data.resampling import check_interpolation, crop_start, resized_shape


class DeviceAugment:
    """uint8 [B,H,W,C] -> normalised float [B,3,S,S]; random resized crop + flip when training.

    ``scale`` is the range of a training crop's share of the eval crop's area. Training uses
    ``size``/``resize`` of the spec, evaluation ``test_size``/``test_resize``.
    """

    def __init__(
        self, spec: dict[str, Any], scale: tuple[float, float] = (0.6, 1.0), flip: bool = True
    ) -> None:
        self.train_geometry = int(spec["size"]), int(spec["resize"])
        self.eval_geometry = int(spec["test_size"]), int(spec["test_resize"])
        self.mode = check_interpolation(spec["interpolation"])  # the names are torch's modes
        self.mean, self.std = spec["mean"], spec["std"]
        self.scale, self.flip = scale, flip

    def __call__(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        size, short = self.train_geometry if train else self.eval_geometry
        x = images.permute(0, 3, 1, 2).float()
        h, w = resized_shape(x.shape[2], x.shape[3], short)
        x = self._resize(x, h, w)
        if train:
            theta = self._theta(x.shape[0], size / w, size / h, x.device)
            grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
            x = F.grid_sample(
                x, grid, mode=self.mode, padding_mode="reflection", align_corners=False
            )
        else:
            top, left = crop_start(h, size), crop_start(w, size)
            x = x[:, :, top : top + size, left : left + size]
        x = x.clamp(0, 255).div_(255).expand(-1, 3, -1, -1)  # cubic overshoots; grey -> RGB
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def _resize(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """PIL's resize: width, then height, each pass rounded and clipped to 0..255 levels."""
        for shape in ((x.shape[2], w), (h, w)):
            if shape != tuple(x.shape[2:]):
                x = F.interpolate(x, shape, mode=self.mode, antialias=True).round_().clamp_(0, 255)
        return x

    def _theta(self, n: int, sx: float, sy: float, device: torch.device) -> torch.Tensor:
        """Per-sample affine maps from output to input coordinates ([-1, 1] both).

        ``sx``/``sy`` are the eval crop's share of the width/height; each sample keeps a random
        share of its area, anywhere in the image, mirrored half the time.
        """
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
