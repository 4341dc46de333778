"""Predictor: a trained run answering for numpy RGB images.

predict.py, serving and Python users share it, so every consumer preprocesses exactly as the
run's eval transform did and applies the same unknown rule and the same Grad-CAM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch import nn

from transferlab.data.transforms import eval_transform
from transferlab.evaluation.cam import cam_overlays, grad_cam
from transferlab.training.checkpoint import LoadedRun, load_run
from transferlab.unknown import UNKNOWN, accepted


@dataclass
class Prediction:
    """One image's answer: ``label`` is the class name, or ``unknown`` under the threshold."""

    label: str
    index: int  # the top class, also when rejected
    confidence: float
    top: list[tuple[str, float]]
    probabilities: np.ndarray


class Predictor:
    """A trained network with its classes, input spec, temperature and unknown threshold."""

    def __init__(
        self,
        net: nn.Module,
        classes: Sequence[str],
        input_spec: dict[str, Any],
        threshold: float = 0.0,
        device: str | torch.device | None = None,
        cam_layer: str | None = None,
        temperature: float = 1.0,
    ) -> None:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")  # None: the best here
        self.net = net.to(device).eval()
        self.classes = list(classes)
        self.input_spec = dict(input_spec)
        self.transform = eval_transform(self.input_spec)
        self.threshold = float(threshold)
        self.device = torch.device(device)
        self.cam_layer = cam_layer
        self.temperature = float(temperature)  # probabilities are softmax(logits / T)

    @classmethod
    def from_checkpoint(
        cls,
        ckpt_path: str | Path,
        threshold: float = 0.0,
        device: str | None = None,
        overrides: DictConfig | dict | None = None,
        cam_layer: str | None = None,
    ) -> Predictor:
        """The run that wrote ``ckpt_path``, reloaded by ``load_run`` (no data needed)."""
        return cls.from_run(load_run(ckpt_path, overrides), threshold, device, cam_layer)

    @classmethod
    def from_run(
        cls,
        run: LoadedRun,
        threshold: float = 0.0,
        device: str | None = None,
        cam_layer: str | None = None,
    ) -> Predictor:
        """A reloaded run's network, classes, input spec and stored temperature."""
        return cls(
            run.module.net, run.classes, run.input, threshold, device, cam_layer, run.temperature
        )

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """HxWx3 uint8 RGB images -> the normalised batch the run's eval transform makes."""
        return torch.stack([self.transform(image=image)["image"] for image in images])

    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """Softmax probabilities (N, classes) of the temperature-scaled logits of a batch."""
        with torch.inference_mode():
            logits = self.net(batch.to(self.device))
        return (logits.float() / self.temperature).softmax(dim=1).cpu().numpy()

    def predict(self, images: Sequence[np.ndarray], top_k: int = 3) -> list[Prediction]:
        """Top class, confidence, top-k and the unknown decision for each RGB image."""
        return self.decide(self.probabilities(self.preprocess(images)), top_k)

    def decide(self, probs: np.ndarray, top_k: int = 3) -> list[Prediction]:
        """Turn probability rows into Predictions with this predictor's threshold."""
        best = probs.argmax(axis=1)
        confidence = probs[np.arange(len(probs)), best]
        keep = accepted(confidence, self.threshold)
        order = np.argsort(-probs, axis=1)[:, :top_k]
        return [
            Prediction(
                label=self.classes[b] if ok else UNKNOWN,
                index=int(b),
                confidence=float(c),
                top=[(self.classes[j], float(p[j])) for j in top],
                probabilities=p,
            )
            for b, c, ok, top, p in zip(best, confidence, keep, order, probs, strict=True)
        ]

    def cam(self, batch: torch.Tensor, targets: Sequence[int] | None = None) -> np.ndarray:
        """Grad-CAM maps (N, H, W) in [0, 1] for a preprocessed batch (targets: predicted)."""
        return grad_cam(self.net, batch.to(self.device), targets, self.cam_layer)

    def cam_overlays(
        self, batch: torch.Tensor, targets: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        """Heat maps over the images the network saw, one HxWx3 uint8 array per image."""
        return cam_overlays(
            self.net, batch.to(self.device), self.input_spec, targets, self.cam_layer
        )

    def explain(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """CAM overlays for RGB images, each for its predicted class."""
        return self.cam_overlays(self.preprocess(images))


DISPLAY_MIN_SIDE = 224  # pictures for people (CAM files, the web page) are at least this big


def enlarged(image: np.ndarray, min_side: int = DISPLAY_MIN_SIDE) -> np.ndarray:
    """An HxWx3 uint8 picture scaled up by a whole factor until its short side is ``min_side``
    (a 28 px input's CAM is unreadable at 28 px); larger pictures are returned as they are."""
    scale = max(1, -(-min_side // min(image.shape[:2])))
    if scale == 1:
        return image
    resized = Image.fromarray(image).resize(
        (image.shape[1] * scale, image.shape[0] * scale), Image.BICUBIC
    )
    return np.asarray(resized)
