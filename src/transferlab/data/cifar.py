"""CIFAR python-pickle batches (CIFAR-10 and CIFAR-100): 32x32 RGB rows of 3072 bytes.

The batches are pickles from the internet, so they are read with an unpickler that builds only
dicts, lists, bytes and numpy arrays: a tampered file cannot run code.
"""

from __future__ import annotations

import functools
import logging
import pickle
from pathlib import Path

import albumentations as A
import numpy as np

from transferlab.data.base import PublishedDataModule, Splits
from transferlab.data.datasets import ArrayDataset
from transferlab.data.download import DataNotFoundError, download_archive

log = logging.getLogger(__name__)

# What numpy arrays pickled by Python 2 (the official files) or 3 (protocol 2) need, and no more.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def read_batch(path: Path, label_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (N x 32 x 32 x 3 uint8 images, N labels)."""
    try:
        with open(path, "rb") as f:
            batch = _ArraysOnly(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key.encode()], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a CIFAR python batch ({type(err).__name__}: {err})") from err
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


class CifarDataModule(PublishedDataModule):
    """The ``folder`` of batches (e.g. cifar-10-batches-py) in ``search_dirs`` or ``root``, else
    the official tarball from ``url``, checked against ``md5``, unpacked into ``root``."""

    def __init__(
        self,
        root: str,
        train_files: list[str],
        test_files: list[str],
        folder: str = "cifar-10-batches-py",
        label_key: str = "labels",
        md5: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(root, **kwargs)
        self.train_files, self.test_files = list(train_files), list(test_files)
        self.folder, self.label_key, self.md5 = folder, label_key, md5

    @functools.cache  # noqa: B019  (one lookup per data module; it lives as long as the run)
    def locate(self) -> Path:
        names = [*self.train_files, *self.test_files]
        candidates = [d / self.folder for d in [*self.search_dirs, self.root]]
        for folder in candidates:
            if all((folder / n).is_file() for n in names):
                log.info("%s: using batches in %s", self.name, folder)
                return folder
        where = self.root / self.folder
        if self.url:
            try:
                download_archive(self.url, self.root, self.md5)
            except OSError as err:
                raise DataNotFoundError(
                    f"{self.name}: batches not found in {', '.join(map(str, candidates))} and the "
                    f"download of {self.url} failed ({err}); offline, unpack that tarball so that "
                    f"{where}/{names[0]} exists (or add its folder to data.search_dirs)"
                ) from err
        if not all((where / n).is_file() for n in names):
            raise DataNotFoundError(
                f"{self.name}: {', '.join(names)} not found in {where}; put the unpacked "
                f"{self.folder}/ folder in {self.root}"
            )
        return where

    def data_files(self) -> dict[str, Path]:
        return {name: self.locate() / name for name in [*self.train_files, *self.test_files]}

    def _read(self, files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [read_batch(self.locate() / f, self.label_key) for f in files]
        images, labels = (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
        )
        if labels.size and not 0 <= labels.min() <= labels.max() < len(self.class_names):
            raise ValueError(
                f"{self.locate()}: labels reach {labels.max()} but data.class_names has "
                f"{len(self.class_names)} names; check data.label_key and data.class_names"
            )
        return images, labels

    def load(self, train_transform: A.Compose, eval_transform: A.Compose) -> Splits:
        train_x, train_y = self._read(self.train_files)
        test_x, test_y = self._read(self.test_files)
        train = ArrayDataset(train_x, train_y, np.arange(len(train_y)), train_transform)
        test = ArrayDataset(test_x, test_y, np.arange(len(test_y)), eval_transform)
        return Splits(train=train, train_labels=train_y, test=test)
