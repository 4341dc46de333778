"""Leakage and label-noise audit on frozen features.

Leakage: a val/test image among whose ``neighbours`` nearest training images (cosine similarity
of frozen features) one has a 256-bit perceptual hash within ``hash_distance`` bits: the
features narrow the search to look-alikes, the hash tells a re-encoded, resized copy of one
picture from another photo of a similar thing. (Measured on Fashion-MNIST: copies as JPEG q70
resized by 10% lie at most 28 bits apart, distinct garments at least 30; a 64-bit hash cannot
tell them apart.) Label noise: a
training image whose given label an out-of-fold probe finds unlikely, ranked by that confidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.fft import dctn

from transferlab.features.cache import FeatureSet


@dataclass
class Pair:
    """A training image and a val/test image that look like one picture."""

    train: int  # row in the train feature set
    other: int  # row in the val/test feature set
    similarity: float
    hash_distance: int


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def nearest_train(train: np.ndarray, other: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """For each row of ``other``, its ``k`` most similar training rows (cosine), best first."""
    a, b = unit_rows(train), unit_rows(other)
    k = min(k, len(a))
    found = np.empty((len(b), k), np.int64)
    for start in range(0, len(b), block):
        s = b[start : start + block] @ a.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable")
        found[start : start + block] = np.take_along_axis(top, order, 1)
    return found


def perceptual_hash(image: np.ndarray | torch.Tensor, side: int = 16) -> np.ndarray:
    """pHash with ``side``**2 bits of an image (C x H x W or H x W): the signs of the lowest
    ``side`` x ``side`` DCT frequencies of its 4*side-pixel grey version against their median."""
    x = torch.as_tensor(np.asarray(image), dtype=torch.float32)
    if x.ndim == 3:
        x = x.mean(0)
    grey = torch.nn.functional.interpolate(x[None, None], size=(4 * side,) * 2, mode="area")[0, 0]
    low = dctn(grey.numpy(), norm="ortho")[:side, :side].ravel()
    return low > np.median(low[1:])


def leakage_pairs(
    train: FeatureSet,
    other: FeatureSet,
    train_image: Callable[[int], Any],
    other_image: Callable[[int], Any],
    neighbours: int = 50,
    hash_distance: int = 26,
) -> list[Pair]:
    """Near-duplicates of training images in another split, most similar first.
    ``*_image(i)`` give the pixels of row i; training images are hashed once, when first met."""
    candidates = nearest_train(train.features, other.features, neighbours)
    a, b = unit_rows(train.features), unit_rows(other.features)
    hashes: dict[int, np.ndarray] = {}
    pairs = []
    for j, rows in enumerate(candidates):
        mine = perceptual_hash(other_image(j))
        for i in rows:
            if i not in hashes:
                hashes[i] = perceptual_hash(train_image(int(i)))
        bits = [int((hashes[i] != mine).sum()) for i in rows]
        best = int(np.argmin(bits))
        if bits[best] <= hash_distance:
            i = int(rows[best])
            pairs.append(Pair(i, j, float(a[i] @ b[j]), bits[best]))
    return sorted(pairs, key=lambda p: (-p.similarity, p.other))


def label_suspects(train: FeatureSet, folds: int = 5, seed: int = 0) -> list[dict[str, Any]]:
    """Training images ranked by how confidently an out-of-fold logistic-regression probe says
    their label is wrong (1 - probability of the given label)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = train.labels
    folds = max(2, min(folds, int(np.bincount(labels).min())))
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    probs = cross_val_predict(probe, train.features, labels, cv=split, method="predict_proba")
    given = probs[np.arange(len(labels)), labels]
    order = np.argsort(given, kind="stable")
    return [
        {
            "row": int(i),
            "id": train.ids[i].item(),
            "label": int(labels[i]),
            "predicted": int(probs[i].argmax()),
            "confidence": round(float(1 - given[i]), 4),
        }
        for i in order
    ]
