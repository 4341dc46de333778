"""IDX-format datasets (MNIST family): gzipped uint8 arrays of images and labels."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import albumentations as A
import numpy as np

from transferlab.data.base import PublishedDataModule, Splits
from transferlab.data.datasets import ArrayDataset
from transferlab.data.download import find_or_download
from transferlab.errors import ConfigError


def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX file (optionally gzipped) into a numpy array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated ({body.size} bytes for shape {shape})")
    return body.reshape(shape)


class IdxDataModule(PublishedDataModule):
    """Train and test IDX pairs, found in ``search_dirs`` or the root, else downloaded there;
    ``md5`` holds the published checksum of each download, by the keys of ``files``."""

    def __init__(
        self, root: str, files: dict[str, str], md5: dict[str, str] | None = None, **kwargs
    ) -> None:
        super().__init__(root, **kwargs)
        self.files = dict(files)
        self.md5 = dict(md5 or {})
        if unknown := sorted(set(self.md5) - set(self.files)):
            raise ConfigError(f"data.md5 has {unknown}, which are not keys of data.files")

    @functools.cache  # noqa: B019  (one lookup per data module; it lives as long as the run)
    def locate(self) -> dict[str, Path]:
        found = find_or_download(
            list(self.files.values()),
            [*self.search_dirs, self.root],
            self.root,
            self.url,
            self.name,
            {self.files[key]: md5 for key, md5 in self.md5.items()},
        )
        return {key: found[name] for key, name in self.files.items()}

    def data_files(self) -> dict[str, Path]:
        return {path.name: path for path in self.locate().values()}

    def load(self, train_transform: A.Compose, eval_transform: A.Compose) -> Splits:
        paths = self.locate()
        train_x, train_y = read_idx(paths["train_images"]), read_idx(paths["train_labels"])
        test_x, test_y = read_idx(paths["test_images"]), read_idx(paths["test_labels"])
        train = ArrayDataset(train_x, train_y, np.arange(len(train_y)), train_transform)
        test = ArrayDataset(test_x, test_y, np.arange(len(test_y)), eval_transform)
        return Splits(train=train, train_labels=train_y, test=test)
