"""Map-style datasets that hand (tensor, label) pairs to the loaders."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from transferlab.data.images import read_image
from transferlab.data.transforms import to_rgb

Transform = Callable[..., dict]


class IndexedDataset(Dataset):
    """The samples ``indices`` of a store of images, with ``labels``, under one ``transform``.

    Subclasses say how to ``load`` one image as RGB; views share the store, never copy it.
    """

    labels: np.ndarray
    indices: np.ndarray
    transform: Transform

    def load(self, j: int) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = self.indices[i]
        return self.transform(image=self.load(j))["image"], int(self.labels[j])

    def raw(self, i: int) -> np.ndarray:
        """Sample ``i`` as RGB, before any transform (for reports)."""
        return self.load(self.indices[i])

    @property
    def targets(self) -> np.ndarray:
        return self.labels[self.indices]

    def sample_ids(self) -> list:
        """Stable ids of the samples this view holds (positions in the source store)."""
        return self.indices.tolist()

    def with_transform(self, transform: Transform, positions: np.ndarray) -> IndexedDataset:
        """A view of some of this dataset's samples (positions in this view) with another transform."""
        view = copy.copy(self)
        view.indices, view.transform = self.indices[positions], transform
        return view


class ArrayDataset(IndexedDataset):
    """Images held in memory as one uint8 array (IDX, CIFAR pickles), selected by ``indices``."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, transform: Transform
    ) -> None:
        self.images, self.labels, self.indices, self.transform = images, labels, indices, transform

    def load(self, j: int) -> np.ndarray:
        return to_rgb(self.images[j])


class FileDataset(IndexedDataset):
    """Image files read on demand with ``read_image``; ``labels`` are -1 for an unlabeled split.

    Paths are kept as one numpy string array, so loader workers share it without copying.
    """

    def __init__(
        self,
        paths: Sequence[Path | str] | np.ndarray,
        labels: np.ndarray,
        indices: np.ndarray,
        transform: Transform,
        root: Path | str | None = None,
    ) -> None:
        self.paths = np.asarray(paths, dtype=str)
        self.labels, self.indices, self.transform = np.asarray(labels), indices, transform
        self.root = Path(root) if root is not None else None

    def load(self, j: int) -> np.ndarray:
        return read_image(self.paths[j])

    def sample_ids(self) -> list:
        """Paths relative to the data root: the same ids after the folder moves."""
        paths = self.paths[self.indices]
        if self.root is None:
            return paths.tolist()
        return [os.path.relpath(p, self.root) for p in paths]
