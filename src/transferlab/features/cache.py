"""Frozen features on disk, keyed by everything that changes them.

An entry is ``<dir>/<model>/<key digest>/<split>-<samples digest>.npz`` (``features`` N x D
float32, ``labels`` N int with -1 for unlabeled, ``ids`` as the split record names the samples,
and ``logits``: the backbone's own ImageNet logits when it has that head) plus a ``.json``
sidecar of the same name, its key in full. Writes go to a temporary name and are renamed, so
concurrent sweep jobs never see half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class FeatureSet:
    """One split's frozen features."""

    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    logits: np.ndarray | None = None


def digest(value: Any) -> str:
    """sha256 of a JSON-able value in canonical form (sorted keys)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureCache:
    """A folder of cached feature sets; ``path(key)`` says where one lives."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()

    def path(self, key: dict[str, Any]) -> Path:
        """One folder per backbone x weights x input x data, one file per split and sample set
        in it: a sweep over ``train_per_class`` keeps each size's train entry, none evicts
        another."""
        shared = {k: v for k, v in key.items() if k not in ("split", "samples")}
        model = str(key.get("model", "model")).replace("/", "_")
        name = key["split"] + (f"-{str(key['samples'])[:12]}" if "samples" in key else "")
        return self.folder / model / digest(shared)[:16] / f"{name}.npz"

    def load(self, key: dict[str, Any]) -> FeatureSet | None:
        """The entry for ``key``, or None (a miss) when absent, unreadable or keyed otherwise."""
        path = self.path(key)
        try:
            stored = json.loads(path.with_suffix(".json").read_text())
            if stored != json.loads(json.dumps(key, sort_keys=True, default=str)):
                return None
            with np.load(path, allow_pickle=False) as npz:
                logits = npz["logits"] if "logits" in npz.files else None
                return FeatureSet(npz["features"], npz["labels"], npz["ids"], logits)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def save(self, key: dict[str, Any], entry: FeatureSet) -> Path:
        """Store ``entry`` under ``key``; the npz first, the sidecar last, both renamed into
        place, so a reader finds either a whole entry or none."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"features": entry.features.astype(np.float32), "labels": entry.labels}
        arrays["ids"] = entry.ids
        if entry.logits is not None:
            arrays["logits"] = entry.logits.astype(np.float32)
        _write_atomic(path, lambda f: np.savez(f, **arrays))
        sidecar = json.dumps(key, sort_keys=True, default=str, indent=1)
        _write_atomic(path.with_suffix(".json"), lambda f: f.write(sidecar.encode()))
        return path


def _write_atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
