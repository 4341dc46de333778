"""Classify images with an exported model.onnx using onnxruntime alone (no torch).

Preprocessing repeats the training pipeline's eval transform (shorter side to ``resize`` with
bilinear OpenCV resize, centre crop ``size``, normalise) from the metadata stored in the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

METADATA_KEY = "transferlab"


class OnnxClassifier:
    """Load once, then ``predict(rgb_uint8_image)`` -> probabilities in ``classes`` order."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ValueError(f"{self.path}: no transferlab metadata; export it with export.py")
        self.metadata: dict[str, Any] = json.loads(meta[METADATA_KEY])
        self.classes: list[str] = list(self.metadata["classes"])
        self.input: dict[str, Any] = self.metadata["input"]

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> 3xSxS float32, as the eval transform does in training."""
        h, w = image.shape[:2]
        scale = self.input["resize"] / min(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        if (new_h, new_w) != (h, w):
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        size = self.input["size"]
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        crop = image[top : top + size, left : left + size].astype(np.float32) / 255.0
        mean, std = (
            np.asarray(self.input["mean"], np.float32),
            np.asarray(self.input["std"], np.float32),
        )
        return ((crop - mean) / std).transpose(2, 0, 1)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Nx3xSxS float32 -> NxC probabilities."""
        return self.session.run(["probs"], {"image": np.ascontiguousarray(batch, np.float32)})[0]

    def predict(self, image: np.ndarray) -> np.ndarray:
        return self.predict_batch(self.preprocess(image)[None])[0]
