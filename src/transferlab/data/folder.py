"""Image files in class sub-folders (one split or train|val|test), or listed in a CSV of path,label.

Every file is decoded once at setup: unreadable ones are listed once, by path and reason, and left
out (``bad_images: skip``) or stop the run (``error``), so no loader worker meets them later.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path

import albumentations as A
import numpy as np

from transferlab.data.base import ClassificationDataModule, Splits
from transferlab.data.datasets import FileDataset
from transferlab.data.download import DataNotFoundError, download_archive
from transferlab.data.images import UnreadableImageError
from transferlab.data.kaggle import download_competition
from transferlab.data.listing import (
    Listing,
    clean_class_names,
    find_split_dirs,
    find_unreadable,
    groups_by_pattern,
    list_class_folders,
    list_csv,
)
from transferlab.errors import ConfigError

log = logging.getLogger(__name__)
BAD_IMAGE_POLICIES = ("skip", "error")


class UnreadableImagesError(ConfigError, UnreadableImageError):
    """``bad_images: error`` met files that do not decode: the user's to fix, in one line."""


class FolderDataModule(ClassificationDataModule):
    """Class folders under ``root`` (or the rows of ``csv``); val is carved from train when absent.

    ``group_column``/``group_pattern`` keep near-duplicates of one item on one side of the split;
    ``label_pattern`` reads classes from file names where there are no class folders;
    ``class_pattern``/``rename_classes`` turn class keys into shown names. A test folder without
    classes is unlabeled: it feeds ``predict_dataloader`` and metrics are taken on val.
    """

    def __init__(
        self,
        root: str,
        name: str = "image_folder",
        csv: str | None = None,
        path_column: str = "path",
        label_column: str = "label",
        group_column: str | None = None,
        group_pattern: str | None = None,
        class_pattern: str | None = None,
        label_pattern: str | None = None,
        rename_classes: dict[str, str] | None = None,
        bad_images: str = "skip",
        check_threads: int = 8,
        url: str | None = None,
        md5: str | None = None,
        kaggle_competition: str | None = None,
        download_to: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(root, **kwargs)
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ConfigError(f"data.bad_images={bad_images!r}: choose one of {BAD_IMAGE_POLICIES}")
        self.name = name
        self.csv = Path(csv).expanduser() if csv else None
        self.columns = (path_column, label_column, group_column)
        self.group_pattern, self.class_pattern = group_pattern, class_pattern
        self.label_pattern = label_pattern
        self.rename_classes = dict(rename_classes or {})
        self.bad_images, self.check_threads = bad_images, check_threads
        self.url, self.md5, self.kaggle_competition = url, md5, kaggle_competition
        self.download_to = Path(download_to).expanduser() if download_to else self.root
        self.unreadable: dict[Path, str] = {}
        self._readable: dict[str, Listing] | None = None  # the files the splits read

    @property
    def classes(self) -> list[str]:
        return clean_class_names(self._listings()[1], self.class_pattern, self.rename_classes)

    def prepare_data(self) -> None:
        self._listings()

    @functools.cache  # noqa: B019  (one scan per data module; it lives as long as the run)
    def _listings(self) -> tuple[dict[str, Listing], list[str]]:
        """The files of every split, and the class keys (folder names or CSV labels) in order."""
        self._ensure_present()
        if self.csv is not None:
            listings = {"train": list_csv(self._table(), *self.columns)}
        else:
            listings = {
                split: list_class_folders(folder, self.label_pattern)
                for split, folder in find_split_dirs(self.root).items()
            }
        train = listings["train"]
        if train.names is None:
            raise ConfigError(
                f"{self.root}: the training images need class sub-folders (or data.label_pattern "
                f"to read the class from file names)"
            )
        if self.group_pattern:
            train.groups = groups_by_pattern(train.paths, self.group_pattern)
        return listings, sorted(set(train.names))

    def _table(self) -> Path:
        return self.csv if self.csv.is_absolute() else self.root / self.csv

    def data_files(self) -> dict[str, Path]:
        """Every image the splits read, named by its path under the root (as the sample ids),
        and the CSV that labels them: split.json keeps a sha256 of each."""
        listings = self._readable or self._listings()[0]
        files = {p for listing in listings.values() for p in listing.paths}
        if self.csv is not None:
            files.add(self._table())
        return {os.path.relpath(p, self.root): p for p in files}

    def _ensure_present(self) -> None:
        if self.root.is_dir() or (self.csv is not None and self.csv.is_absolute()):
            return
        if self.kaggle_competition:
            download_competition(self.kaggle_competition, self.download_to, self.root)
        elif self.url:
            try:
                download_archive(self.url, self.download_to, self.md5)
            except OSError as err:  # offline, refused, timed out
                raise DataNotFoundError(
                    f"{self.name}: {self.root} not found and the download of {self.url} failed "
                    f"({err}); offline, unpack that archive into {self.download_to} so that "
                    f"{self.root} exists, or set data.root to a folder of <class>/ sub-folders"
                ) from err
        if not self.root.is_dir():
            source = self.kaggle_competition or self.url
            raise DataNotFoundError(
                f"{self.name}: {self.root} not found"
                + (f" after fetching {source} into {self.download_to}" if source else "")
                + "; set data.root to a folder of <class>/ sub-folders (or train|val|test/<class>/)"
            )

    def load(self, train_transform: A.Compose, eval_transform: A.Compose) -> Splits:
        listings, keys = self._listings()
        listings = self._readable = self._drop_unreadable(listings)
        index = {key: i for i, key in enumerate(keys)}
        train = self._dataset(listings["train"], index, train_transform, "train")
        val, test = listings.get("val"), listings.get("test")
        if val is not None and val.names is None:
            raise ConfigError(
                f"{self.root}: the validation images need class sub-folders; put them in "
                "val/<class>/ (or remove val/ to carve validation from train)"
            )
        predict = None
        if test is not None and test.names is None:
            predict, test = self._dataset(test, index, eval_transform, "test"), None
            log.warning(
                "%s: the test split has no classes (no class sub-folders, no label_pattern "
                "match): its %d images are unlabeled, for predict_dataloader only; test metrics "
                "are taken on the validation split",
                self.name,
                len(predict),
            )
        groups = listings["train"].groups
        return Splits(
            train=train,
            train_labels=train.targets,
            val=self._dataset(val, index, eval_transform, "val") if val is not None else None,
            test=self._dataset(test, index, eval_transform, "test") if test is not None else None,
            groups=np.asarray(groups) if groups is not None else None,
            predict=predict,
        )

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self.split_info["unreadable"] = len(self.unreadable)

    def _dataset(
        self, listing: Listing, index: dict[str, int], transform: A.Compose, split: str
    ) -> FileDataset:
        if listing.names is None:
            labels = np.full(len(listing.paths), -1)
        else:
            unknown = sorted(set(listing.names) - set(index))
            if unknown:
                raise ConfigError(
                    f"{self.root}: {split} has classes {unknown} that train has not; "
                    f"add training images for them, or remove them from {split}"
                )
            labels = np.array([index[n] for n in listing.names])
        return FileDataset(listing.paths, labels, np.arange(len(labels)), transform, root=self.root)

    def _drop_unreadable(self, listings: dict[str, Listing]) -> dict[str, Listing]:
        """Decode every file once; list each bad one once; leave them out or stop, by config."""
        paths = [p for listing in listings.values() for p in listing.paths]
        started = time.perf_counter()
        self.unreadable = find_unreadable(paths, self.check_threads)
        log.info(
            "%s: checked %d images in %.1f s", self.name, len(paths), time.perf_counter() - started
        )
        if not self.unreadable:
            return listings
        lines = "\n".join(f"  {path}: {reason}" for path, reason in self.unreadable.items())
        if self.bad_images == "error":
            shown = "; ".join(f"{p}: {r}" for p, r in list(self.unreadable.items())[:3])
            more = len(self.unreadable) - 3
            raise UnreadableImagesError(
                f"{self.name}: {len(self.unreadable)} of {len(paths)} images cannot be read ("
                f"{shown}{f'; and {more} more' if more > 0 else ''}); remove them or set "
                "data.bad_images=skip"
            )
        log.warning(
            "%s: %d of %d images cannot be read and are left out (data.bad_images=skip):\n%s",
            self.name,
            len(self.unreadable),
            len(paths),
            lines,
        )
        bad = set(self.unreadable)
        return {split: listing.without(bad) for split, listing in listings.items()}
