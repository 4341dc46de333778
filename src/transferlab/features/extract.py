"""Pooled pre-logit features (and ImageNet logits) of a frozen backbone, per split, via the cache."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from transferlab.data.base import ClassificationDataModule
from transferlab.data.split_record import SPLITS, sample_ids, split_record
from transferlab.data.transforms import eval_transform, resolve_input
from transferlab.errors import ConfigError
from transferlab.features.cache import FeatureCache, FeatureSet, digest
from transferlab.models.weights import WeightsNotFoundError, create_pretrained

log = logging.getLogger(__name__)


@dataclass
class Extracted:
    """A backbone's feature sets per split, where they are cached, and the seconds spent."""

    splits: dict[str, FeatureSet]
    paths: dict[str, Path]
    seconds: float
    input: dict[str, Any] = field(default_factory=dict)  # the spec the images were prepared by
    hits: list[str] = field(default_factory=list)


def weights_digest(model: nn.Module) -> str:
    """sha256 over the state dict: other weights under the same name are another entry."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def extract(
    model: nn.Module, dataset: Dataset, batch_size: int, workers: int, desc: str
) -> FeatureSet:
    """Run ``model`` (timm, eval mode) over ``dataset`` in order: pooled features and logits."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    feats, logits, labels = [], [], []
    for x, y in tqdm(loader, desc=desc, unit="batch", leave=False):
        fmap = model.forward_features(x)
        pooled = model.forward_head(fmap, pre_logits=True)
        feats.append(pooled.flatten(1).float().numpy())
        logits.append(model.forward_head(fmap).float().numpy())
        labels.append(np.asarray(y))
    ids = np.asarray(sample_ids(dataset))
    return FeatureSet(
        np.concatenate(feats), np.concatenate(labels).astype(np.int64), ids, np.concatenate(logits)
    )


def cached_features(
    model: nn.Module,
    model_name: str,
    datamodule: ClassificationDataModule,
    spec: dict[str, Any],
    cache: FeatureCache,
    batch_size: int = 128,
    splits: tuple[str, ...] = SPLITS,
) -> Extracted:
    """The ``splits``' features of ``model`` on ``datamodule`` with the eval transform, read from
    ``cache`` when the key (model, weights, input spec, data files, split samples) matches."""
    started = time.perf_counter()
    transform = eval_transform(spec)
    datamodule.set_transforms(train=transform, eval=transform)  # no augmentation: features
    datamodule.prepare_data()
    datamodule.setup("fit")
    record = split_record(datamodule)
    sets = {"train": datamodule.train_set, "val": datamodule.val_set, "test": datamodule.test_set}
    base = {
        "model": model_name,
        "weights": weights_digest(model),
        "input": {k: spec[k] for k in sorted(spec)},
        "data_files": digest(record["files"]),
    }
    out = Extracted(splits={}, paths={}, seconds=0.0, input=dict(spec))
    for split in splits:
        dataset = sets[split]
        key = {**base, "split": split, "samples": digest(record[split])}
        entry = cache.load(key)
        if entry is None:
            with torch.random.fork_rng(devices=[]):  # loaders draw seeds: leave the run's RNG be
                entry = extract(
                    model, dataset, batch_size, datamodule.num_workers, f"{model_name} {split}"
                )
            cache.save(key, entry)
        else:
            out.hits.append(split)
        out.splits[split], out.paths[split] = entry, cache.path(key)
    out.seconds = time.perf_counter() - started
    log.info(
        "%s features: %s (%.1f s, cached: %s)",
        model_name,
        {s: e.features.shape for s, e in out.splits.items()},
        out.seconds,
        out.hits or "none",
    )
    return out


BACKBONE_TARGET = "transferlab.models.create_backbone"


def pretrained_backbone(model_cfg: DictConfig) -> nn.Module:
    """The backbone with its own ImageNet head and weights, or WeightsNotFoundError saying why
    there are none."""
    if model_cfg.get("_target_") != BACKBONE_TARGET:
        name = model_cfg.get("name", model_cfg.get("_target_"))
        raise WeightsNotFoundError(f"{name}: not a timm backbone, no ImageNet weights to use")
    model, source = create_pretrained(
        model_cfg.name, model_cfg.get("weights"), model_cfg.get("offline_weights")
    )
    log.info("%s: ImageNet weights from %s", model_cfg.name, source)
    return model


def frozen_features(
    cfg: DictConfig, cache: FeatureCache, splits: tuple[str, ...] = SPLITS
) -> tuple[Extracted, ClassificationDataModule]:
    """The config's backbone (with ImageNet weights) on the config's data: cached features of
    ``splits`` at the backbone's own input spec, and the set-up DataModule they came from."""
    model = pretrained_backbone(cfg.model)
    spec = resolve_input(model, cfg.get("input"))
    datamodule = hydra.utils.instantiate(cfg.data)
    if not isinstance(datamodule, ClassificationDataModule):
        raise ConfigError(f"data: {type(datamodule).__name__} is not a ClassificationDataModule")
    batch = cfg.data.get("eval_batch_size") or 2 * cfg.data.batch_size
    name = cfg.model.get("name", "model")
    extracted = cached_features(model, name, datamodule, spec, cache, batch, splits)
    return extracted, datamodule
