"""The checkpoints a server answers with: loaded once at start, each with a display name."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from PIL import Image

from transferlab.data.images import read_image
from transferlab.errors import ConfigError
from transferlab.inference.predictor import Predictor
from transferlab.training.checkpoint import LoadedRun, load_run

log = logging.getLogger(__name__)
MAX_MODELS = 2
TOP_K = 5  # classes listed per answer, on the page and in the API


@dataclass
class ServedModel:
    name: str
    run: LoadedRun
    predictor: Predictor

    def answer(self, image: np.ndarray, top_k: int = TOP_K) -> dict[str, Any]:
        """JSON-ready prediction for one RGB image: label (or 'unknown'), confidence, top-k."""
        prediction = self.predictor.predict([image], top_k=top_k)[0]
        return {
            "model": self.name,
            "label": prediction.label,
            "confidence": round(prediction.confidence, 6),
            "top": [{"class": c, "probability": round(p, 6)} for c, p in prediction.top],
        }


def load_models(
    ckpts: list[str], threshold: float, device: str | None = None, paths: DictConfig | None = None
) -> list[ServedModel]:
    """One Predictor per checkpoint (1 or 2), named '<model> (pretrained|scratch)' from its run."""
    if not 1 <= len(ckpts) <= MAX_MODELS:
        raise ConfigError(f"ckpts: give 1 or {MAX_MODELS} checkpoints, got {len(ckpts)}")
    models = []
    for ckpt in ckpts:
        run = load_run(ckpt, paths=paths)
        name = run.name
        if any(m.name == name for m in models):
            name = f"{name} [{run.ckpt_path.parent.parent.name}]"
        predictor = Predictor.from_run(run, threshold, device)  # with the run's temperature
        models.append(ServedModel(name, run, predictor))
        log.info("serving %s from %s", name, run.ckpt_path)
    return models


def example_images(run: LoadedRun, folder: Path, count: int) -> list[Path]:
    """Up to ``count`` test images of the run (one per class first), saved as PNGs so the page
    can offer them; none if that run's data is not on this machine."""
    if count <= 0:
        return []
    try:
        datamodule = run.experiment().datamodule
        datamodule.setup("test")
    except Exception as err:  # the data may live elsewhere; the page works without examples
        log.warning("no example images: %s", err)
        return []
    test = datamodule.test_set
    labels = np.asarray(test.targets)
    first = [int(np.flatnonzero(labels == k)[0]) for k in np.unique(labels)]
    chosen = (first + [i for i in range(len(test)) if i not in set(first)])[:count]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in chosen:
        path = folder / f"{i:05d}_{datamodule.classes[labels[i]].replace('/', '-')}.png"
        Image.fromarray(test.raw(i)).save(path)
        paths.append(path)
    return paths


def decode(path: str | Path, max_pixels: int) -> np.ndarray:
    """The uploaded file as RGB, refusing non-images and decompression bombs (read_image's rules)."""
    return read_image(path, max_pixels=max_pixels)
