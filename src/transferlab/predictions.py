"""test_predictions.npz: a run's per-image test predictions, stored next to results.json.

The evidence behind the test metrics: sweep reports bootstrap and pair runs on the same test
images from it, without the checkpoint. numpy only, so reading it never imports torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PREDICTIONS_FILE = "test_predictions.npz"


@dataclass
class RunPredictions:
    """One row per test image: sample id (as split.json names it), label, predicted class and
    the probabilities of all classes."""

    ids: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    probs: np.ndarray  # float16: 20 bytes an image for 10 classes, ample for a report

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels

    @property
    def confidence(self) -> np.ndarray:
        """The probability of the predicted class."""
        return np.take_along_axis(self.probs, self.predicted[:, None], axis=1)[:, 0]


def write_predictions(folder: Path, ids: list[Any], labels: np.ndarray, probs: np.ndarray) -> Path:
    """Write ``folder``/test_predictions.npz atomically. ``predicted`` is the argmax of the float32
    ``probs`` the metrics saw: float16 could round two close classes into a tie."""
    probs = np.asarray(probs, dtype=np.float32)
    path = Path(folder) / PREDICTIONS_FILE
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        ids=np.asarray(ids),  # ints (array stores) or relative paths (folders): never pickled
        labels=np.asarray(labels, dtype=np.int32),
        predicted=probs.argmax(axis=1).astype(np.int32),
        probs=probs.astype(np.float16),
    )
    os.replace(tmp, path)
    return path


def read_predictions(folder: Path) -> RunPredictions | None:
    """The run's predictions, or None for a run written before they were stored."""
    path = Path(folder) / PREDICTIONS_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return RunPredictions(**{k: data[k] for k in ("ids", "labels", "predicted", "probs")})
