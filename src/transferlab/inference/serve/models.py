"""The checkpoints a server answers with: loaded once at start, each with a display name."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transferlab.data.images import read_image
from transferlab.inference.predictor import Predictor
from transferlab.training.build import build_experiment
from transferlab.training.checkpoint import run_config

log = logging.getLogger(__name__)
MAX_MODELS = 2


@dataclass
class ServedModel:
    name: str
    checkpoint: Path
    predictor: Predictor

    def answer(self, image: np.ndarray, top_k: int = 5) -> dict[str, Any]:
        """JSON-ready prediction for one RGB image: label (or 'unknown'), confidence, top-k."""
        prediction = self.predictor.predict([image], top_k=top_k)[0]
        return {
            "model": self.name,
            "label": prediction.label,
            "confidence": round(prediction.confidence, 6),
            "top": [{"class": c, "probability": round(p, 6)} for c, p in prediction.top],
        }


def load_models(ckpts: list[str], threshold: float, device: str | None = None) -> list[ServedModel]:
    """One Predictor per checkpoint (1 or 2), named '<model> (pretrained|scratch)' from its run."""
    if not 1 <= len(ckpts) <= MAX_MODELS:
        raise ValueError(f"ckpts: give 1 or {MAX_MODELS} checkpoints, got {len(ckpts)}")
    models = []
    for ckpt in ckpts:
        path = Path(ckpt).expanduser()
        cfg = run_config(path)
        name = f"{cfg.model.name} ({'pretrained' if cfg.pretrained else 'scratch'})"
        if any(m.name == name for m in models):
            name = f"{name} [{path.parent.parent.name}]"
        models.append(ServedModel(name, path, Predictor.from_checkpoint(path, threshold, device)))
        log.info("serving %s from %s", name, path)
    return models


def example_images(ckpt: str, folder: Path, count: int) -> list[Path]:
    """Up to ``count`` test images of the checkpoint's run (one per class first), saved as PNGs
    so the page can offer them; none if that run's data is not on this machine."""
    if count <= 0:
        return []
    try:
        datamodule = build_experiment(
            run_config(Path(ckpt).expanduser()), pretrained=False
        ).datamodule
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
