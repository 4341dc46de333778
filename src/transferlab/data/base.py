"""What every classification DataModule shares: splits, subsets, transforms and loaders.

A format subclass says how to read its files (``load``); everything else is here, so a new
format is one small class and a new dataset in a known format is one yaml.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from transferlab.data.datasets import ArrayDataset
from transferlab.data.on_device import DeviceAugment, DeviceBatches, device_store
from transferlab.data.seeding import seed_transform, seed_worker, shuffled
from transferlab.data.split import split_stratified, take_per_class
from transferlab.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Splits:
    """What a format reads: labelled train data, and a test split (or None to use val)."""

    train: Dataset
    train_labels: np.ndarray
    test: Dataset | None
    val: Dataset | None = None  # a fixed validation split shipped with the data
    groups: np.ndarray | None = None  # near-duplicate groups for leakage-free splits
    predict: Dataset | None = None  # unlabeled images (a competition's test folder)


class ClassificationDataModule(L.LightningDataModule):
    """Base class; subclasses implement ``classes`` and ``load``."""

    def __init__(
        self,
        root: str,
        batch_size: int = 64,
        num_workers: int | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        train_per_class: int | None = None,
        eval_batch_size: int | None = None,
        pin_memory: bool = True,
        on_device: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(os.path.expanduser(str(root)))
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        if train_per_class is not None and train_per_class < 1:
            raise ConfigError(
                f"data.train_per_class={train_per_class}: must be at least 1 (null: all the "
                "training images)"
            )
        self.train_per_class = train_per_class
        self.pin_memory = pin_memory
        self.on_device = on_device  # whole dataset as one tensor on the device (in-memory formats)
        self._device_stores: dict = {}
        self.train_transform: A.Compose | None = None
        self.eval_transform: A.Compose | None = None
        self.split_info: dict[str, int] = {}
        self.train_counts: dict[str, int] = {}  # training images per class, after any subset

    # --- to implement per format -------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        raise NotImplementedError

    def load(self, train_transform: A.Compose, eval_transform: A.Compose) -> Splits:
        """Read the data; ``train`` uses ``train_transform`` at the positions ``setup`` selects."""
        raise NotImplementedError

    def data_files(self) -> dict[str, Path]:
        """The files samples are read from, by a name that survives moving the data: their
        digests are stored with a run (split.json) to detect data that changed under it."""
        return {}

    # --- shared ------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def set_transforms(self, train: A.Compose, eval: A.Compose) -> None:
        self.train_transform, self.eval_transform = train, eval

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        if self.train_transform is None or self.eval_transform is None:
            raise RuntimeError("call set_transforms() before setup(): sizes come from the model")
        splits = self.load(self.train_transform, self.eval_transform)
        if splits.val is None:
            train_idx, val_idx = split_stratified(
                splits.train_labels, self.val_fraction, self.split_seed, splits.groups
            )
            self.val_set = splits.train.with_transform(self.eval_transform, val_idx)
        else:
            train_idx, self.val_set = np.arange(len(splits.train_labels)), splits.val
        self._check_every_class_trains(splits.train_labels[train_idx])
        if self.train_per_class is not None:
            self._warn_short_classes(splits.train_labels[train_idx])
            keep = take_per_class(
                splits.train_labels[train_idx], self.train_per_class, self.split_seed
            )
            train_idx = train_idx[keep]
        counts = np.bincount(splits.train_labels[train_idx], minlength=self.num_classes)
        self.train_counts = dict(zip(self.classes, map(int, counts), strict=True))
        self.train_set = splits.train.with_transform(self.train_transform, train_idx)
        self.test_set = splits.test if splits.test is not None else self.val_set
        self.predict_set = splits.predict
        if splits.test is None:
            log.warning("no test split in %s: testing on the validation split", self.root)
        self.split_info = {
            "train": len(self.train_set),
            "val": len(self.val_set),
            "test": len(self.test_set),
            **({"predict": len(self.predict_set)} if self.predict_set is not None else {}),
        }
        log.info("data %s: %s", type(self).__name__, self.split_info)

    def _check_every_class_trains(self, labels: np.ndarray) -> None:
        """A class without training images cannot be learnt: its files were all unreadable or
        missing, or the validation split took its only image."""
        counts = np.bincount(labels, minlength=self.num_classes)
        empty = [name for name, n in zip(self.classes, counts, strict=True) if n == 0]
        if empty:
            raise ConfigError(
                f"{self.root}: no training images for class {', '.join(map(repr, empty))} (its "
                "files unreadable or missing, or data.val_fraction took its only image); add "
                "images to it, remove it, or lower data.val_fraction"
            )

    def _warn_short_classes(self, labels: np.ndarray) -> None:
        """Asking for more images than a class has trains on all it has: say so, once."""
        counts = np.bincount(labels, minlength=self.num_classes)
        short = [f"{n} ({c})" for n, c in zip(self.classes, counts, strict=True)]
        short = [s for s, c in zip(short, counts, strict=True) if c < self.train_per_class]
        if short:
            log.warning(
                "data.train_per_class=%d: %d of %d classes have fewer training images and train "
                "on all they have: %s",
                self.train_per_class,
                len(short),
                self.num_classes,
                ", ".join(short),
            )

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        seed_transform(self.train_set)  # augmentations follow the run's seed (data/seeding.py)
        return self._loader(self.train_set, self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.val_set, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.test_set, self.eval_batch_size)

    def set_device_augment(self, augment: DeviceAugment) -> None:
        """Used with ``on_device``: the batched on-device replacement of the CPU transforms."""
        self.device_augment = augment

    def predict_dataloader(self) -> DataLoader:
        if self.predict_set is None:
            raise RuntimeError(f"{self.root}: this dataset has no unlabeled split to predict on")
        return self._loader(self.predict_set, self.eval_batch_size)

    def _loader(
        self, dataset: Dataset, batch_size: int, shuffle: bool = False, drop_last: bool = False
    ) -> DataLoader | DeviceBatches:
        if self.on_device:
            return self._device_loader(dataset, batch_size, train=shuffle)
        drop_last = drop_last and len(dataset) > batch_size
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=shuffled(dataset) if shuffle else None,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory and _has_accelerator(),
            worker_init_fn=seed_worker,
            collate_fn=getattr(dataset, "collate", None),  # a dataset that stacks its batches
        )

    def _device_loader(self, dataset: Dataset, batch_size: int, train: bool) -> DeviceBatches:
        if not isinstance(dataset, ArrayDataset):
            raise ValueError(
                f"data.on_device=true needs an in-memory dataset (IDX, CIFAR); {type(self).__name__} "
                "reads files: set data.on_device=false"
            )
        strategy = self.trainer.strategy if self.trainer else None
        device = strategy.root_device if strategy else torch.device("cpu")
        store = device_store(dataset, device, self._device_stores)
        rank, world = (strategy.global_rank, strategy.world_size) if strategy else (0, 1)
        return DeviceBatches(dataset, store, batch_size, self.device_augment, train, rank, world)


def default_num_workers() -> int:
    """Half the CPUs this process may use, at most 8: the rest feed the training step."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus // 2))


def _has_accelerator() -> bool:
    return torch.cuda.is_available()


class PublishedDataModule(ClassificationDataModule):
    """A published dataset with fixed class names, whose files are found in ``search_dirs`` or
    ``root``, else fetched from ``url``; subclasses say how in ``locate``."""

    def __init__(
        self,
        root: str,
        class_names: list[str],
        search_dirs: list[str] = (),
        url: str | None = None,
        name: str = "dataset",
        **kwargs,
    ) -> None:
        super().__init__(root, **kwargs)
        self.class_names = list(class_names)
        self.search_dirs = [Path(d).expanduser() for d in search_dirs]
        self.url, self.name = url, name

    @property
    def classes(self) -> list[str]:
        return self.class_names

    def prepare_data(self) -> None:
        self.locate()

    def locate(self) -> object:
        """Find (or download) the files; called once per process before reading them."""
        raise NotImplementedError
