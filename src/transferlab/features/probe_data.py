"""A linear probe's data as cached features: the frozen backbone runs once per image, ever.

With ``finetune=linear_probe`` and no train-time augmentation, every epoch would push the same
images through the same frozen backbone; its pooled features are the only input the head sees.
So the run reads them from the feature cache instead, and the Trainer, optimizer, schedule,
checkpoints and results.json stay those of any run.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset

from transferlab.data.base import ClassificationDataModule
from transferlab.features.cache import FeatureCache, FeatureSet
from transferlab.features.extract import frozen_features

log = logging.getLogger(__name__)
EVAL_BATCH = 1024


def probes_on_features(cfg: DictConfig, choices: dict[str, Any]) -> bool:
    """Whether this run is a linear probe that cached features serve exactly: ImageNet weights,
    a frozen backbone for all epochs, no augmentation or mixup, images read from files, and no
    dropout or stochastic depth (the Trainer path applies them in train mode; cached features,
    drawn in eval mode, never saw them)."""
    features = cfg.get("features") or {}
    return bool(
        features.get("cache", False)
        and cfg.pretrained
        and choices.get("finetune") == "linear_probe"
        and choices.get("augment") == "none"
        and not cfg.module.get("mixup")
        and not cfg.data.get("on_device", False)
        and not cfg.model.get("drop_rate")
        and not cfg.model.get("drop_path_rate")
    )


class FeatureDataset(Dataset):
    """One split's cached features as (feature vector, label) samples, with their sample ids."""

    def __init__(self, entry: FeatureSet) -> None:
        self.features = torch.from_numpy(np.ascontiguousarray(entry.features, np.float32))
        self.labels = torch.from_numpy(entry.labels.astype(np.int64))
        self.ids = entry.ids

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[i], self.labels[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch by one indexing (the DataLoader's fetcher asks for this when it
        exists): per-sample fetch and collate cost more than a probe's step."""
        rows = torch.as_tensor(indices)
        return self.features[rows], self.labels[rows]

    @staticmethod
    def collate(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return batch  # already stacked by __getitems__

    def sample_ids(self) -> list:
        return [i.item() if hasattr(i, "item") else i for i in self.ids]


class FeatureDataModule(ClassificationDataModule):
    """The splits of ``source`` (already set up) as cached features of its images."""

    def __init__(self, source: ClassificationDataModule, splits: dict[str, FeatureSet]) -> None:
        super().__init__(
            str(source.root),
            batch_size=source.batch_size,
            num_workers=0,  # tensors in memory: workers would only copy them
            # a feature vector is a few KB, not an image: val and test go in few batches
            eval_batch_size=max(source.eval_batch_size, EVAL_BATCH),
            pin_memory=False,
        )
        self.source = source
        self.train_set = FeatureDataset(splits["train"])
        self.val_set = FeatureDataset(splits["val"])
        self.test_set = FeatureDataset(splits["test"])
        self.predict_set = None
        self.split_info = dict(source.split_info)
        self.train_counts = getattr(source, "train_counts", None)

    @property
    def classes(self) -> list[str]:
        return self.source.classes

    def data_files(self) -> dict:
        return self.source.data_files()


def feature_datamodule(cfg: DictConfig) -> FeatureDataModule:
    """The config's data as cached features of its backbone (extracted now on a miss)."""
    # building the ImageNet backbone draws random init weights: leave the run's RNG as the
    # Trainer path has it, so both paths shuffle the same batches
    with torch.random.fork_rng(devices=[]):
        extracted, source = frozen_features(cfg, FeatureCache(cfg.features.cache_dir))
    log.info(
        "linear probe on cached features of %s (%.1f s; cached: %s); features.cache=false "
        "trains through the backbone instead",
        cfg.model.get("name"),
        extracted.seconds,
        ", ".join(extracted.hits) or "none",
    )
    return FeatureDataModule(source, extracted.splits)
