"""Classify images with an exported model.onnx using onnxruntime alone (no torch).

Preprocessing is the training pipeline's eval transform (``data/resampling.py``: shorter side to
``test_resize``, centre crop ``test_size``, the backbone's interpolation, antialiased), then
normalisation, all read from the input spec stored in the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from transferlab.data.resampling import resize_crop

METADATA_KEY = "transferlab"


def preprocess(image: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """HxWx3 uint8 RGB -> 3xSxS float32, as the eval transform makes it in training."""
    crop = resize_crop(image, spec["test_resize"], spec["test_size"], spec["interpolation"])
    mean, std = np.asarray(spec["mean"], np.float32), np.asarray(spec["std"], np.float32)
    return ((crop.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)


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
        # the graph already divides its logits by it; files exported before calibration: 1
        self.temperature = float(self.metadata.get("temperature", 1.0))
        spec = self.metadata["input"]  # files exported before test_* evaluated at the train size
        self.input: dict[str, Any] = {
            "test_size": spec["size"],
            "test_resize": spec["resize"],
            **spec,
        }

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> 3xSxS float32 (see ``preprocess``)."""
        return preprocess(image, self.input)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Nx3xSxS float32 -> NxC probabilities."""
        return self.session.run(["probs"], {"image": np.ascontiguousarray(batch, np.float32)})[0]

    def predict(self, image: np.ndarray) -> np.ndarray:
        return self.predict_batch(self.preprocess(image)[None])[0]
