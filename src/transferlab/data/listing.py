"""Which image files a folder dataset holds: class sub-folders per split, or a CSV of path,label.

A listing is plain paths and class names; nothing is decoded here (``check`` does that once).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from transferlab.data.images import check_images, find_images, is_image_file, permission_denied
from transferlab.errors import ConfigError

log = logging.getLogger(__name__)

# Folder names (any case) that mark a split; anything else under the root is a class folder.
SPLIT_NAMES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
SKIP_DIRS = {"__MACOSX"}  # what macOS zips add beside the data


@dataclass
class Listing:
    """The files of one split; ``names`` is each file's class (None: an unlabeled split)."""

    paths: list[Path]
    names: list[str] | None
    groups: list[str] | None = None

    def without(self, bad: set[Path]) -> Listing:
        keep = [i for i, p in enumerate(self.paths) if p not in bad]
        pick = lambda xs: None if xs is None else [xs[i] for i in keep]  # noqa: E731
        return Listing([self.paths[i] for i in keep], pick(self.names), pick(self.groups))


def find_split_dirs(root: Path) -> dict[str, Path]:
    """``{split: folder}`` for the split folders under ``root``; just ``{"train": root}`` if none."""
    found: dict[str, Path] = {}
    for child in (p for p in children(root) if p.is_dir()):
        for split, names in SPLIT_NAMES.items():
            if child.name.lower() in names and split not in found:
                found[split] = child
    if found and "train" not in found:
        raise ConfigError(
            f"{root}: has {', '.join(p.name for p in found.values())} but no train/ folder; "
            f"rename the training split to train/ or point data.root at it"
        )
    return found or {"train": root}


def list_class_folders(folder: Path, label_pattern: str | None = None) -> Listing:
    """Images in ``folder/<class>/**``; images lying directly in ``folder`` take their class from
    ``label_pattern`` (a regex on the file name, e.g. Lamoda's ``0001_bluzy.jpg``) or, when it
    matches none of them, form an unlabeled split."""
    paths: list[Path] = []
    names: list[str] = []
    entries = children(folder)
    for class_dir in entries:
        if not class_dir.is_dir() or class_dir.name in SKIP_DIRS or class_dir.name.startswith("."):
            continue
        check_class_link(class_dir, folder)
        images = find_images(class_dir)
        if not images:
            log.warning("%s: no image files, not used as a class", class_dir)
        paths += images
        names += [class_dir.name] * len(images)
    loose = [p for p in entries if p.is_file() and is_image_file(p)]
    if paths:
        if loose:
            log.warning("%s: %d images outside class folders are ignored", folder, len(loose))
        return Listing(paths, names)
    if not loose:
        raise ConfigError(
            f"{folder}: no images found; expected {folder}/<class>/*.jpg (or *.png, ...): "
            "put images there, or point data.root at the folder that holds them"
        )
    return Listing(loose, labels_by_pattern(loose, label_pattern) if label_pattern else None)


def children(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted; an unreadable folder is a one-line user error."""
    try:
        return sorted(folder.iterdir())
    except PermissionError as err:
        raise permission_denied(err) from err


def check_class_link(class_dir: Path, folder: Path) -> None:
    """A class folder may be a symlink to images elsewhere, but not back into the data: a link to
    the data folder or above it would make a class of every image, and one to a place inside it
    would put the same images in two classes."""
    if not class_dir.is_symlink():
        return
    target, data = class_dir.resolve(), folder.resolve()
    if target == data or target in data.parents:
        raise ConfigError(
            f"{class_dir}: a symlink to {target}, which holds the class folders, so every image "
            "would also be in this class; remove the link"
        )
    if target.is_relative_to(data):
        raise ConfigError(
            f"{class_dir}: a symlink to {target}, inside the data folder, so its images would be "
            "in two classes; remove the link (or move the images instead of linking them)"
        )


def labels_by_pattern(paths: list[Path], pattern: str) -> list[str] | None:
    """Each file's class from the regex's first group; None when no file name matches."""
    regex = re.compile(pattern)
    matches = [regex.search(p.name) for p in paths]
    if not any(matches):
        return None
    misses = [p.name for p, m in zip(paths, matches, strict=True) if m is None]
    if misses or regex.groups < 1:
        raise ConfigError(
            f"data.label_pattern={pattern!r} needs a (group) naming the class in every file "
            f"name of {paths[0].parent}; it does not match {misses[:3]} ({len(misses)} in all)"
        )
    return [m.group(1) for m in matches]


def list_csv(
    table: Path,
    path_column: str = "path",
    label_column: str = "label",
    group_column: str | None = None,
) -> Listing:
    """Rows of a CSV naming an image (relative to the CSV's folder) and its class."""
    reader = csv.DictReader(io.StringIO(read_csv_text(table), newline=""))
    wanted = [c for c in (path_column, label_column, group_column) if c]
    header = reader.fieldnames or []
    missing = [c for c in wanted if c not in header]
    if missing:
        raise ConfigError(
            f"{table}: needs columns {', '.join(wanted)} (missing {', '.join(missing)}; "
            f"has {', '.join(header) or 'no header'}); set data.path_column / data.label_column / "
            "data.group_column"
        )
    rows = []
    for row in reader:
        values = [row[c] for c in wanted]
        if any(v is None or not v.strip() for v in values):
            given = sum(v is not None for k, v in row.items() if k is not None)
            empty = next(
                c for c, v in zip(wanted, values, strict=True) if v is None or not v.strip()
            )
            raise ConfigError(
                f"{table}, line {reader.line_num}: no {empty} value (the row has {given} of the "
                f"header's {len(header)} fields); complete the row or delete it"
            )
        rows.append([v.strip() for v in values])
    if not rows:
        raise ConfigError(f"{table}: no rows under the header; add one row per image")
    paths = [(table.parent / row[0]).resolve() for row in rows]
    groups = [row[2] for row in rows] if group_column else None
    return Listing(paths, [row[1] for row in rows], groups)


def read_csv_text(table: Path) -> str:
    """The CSV's text; a missing, unreadable or non-UTF-8 file is a one-line user error."""
    try:
        data = table.read_bytes()
    except FileNotFoundError as err:
        raise ConfigError(
            f"data.csv: {table} not found; set data.csv to a CSV of path,label rows (relative "
            "to data.root, or absolute)"
        ) from err
    except PermissionError as err:
        raise permission_denied(err) from err
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{table}, line {line}: not UTF-8 (byte 0x{data[err.start]:02x}); save the file as "
            f"UTF-8, e.g. iconv -f latin1 -t utf-8 {table.name} > utf8.csv"
        ) from err


def groups_by_pattern(paths: list[Path], pattern: str) -> list[str]:
    """Item ids from file names: the regex's first group, or the file itself when it does not match."""
    regex = re.compile(pattern)
    if regex.groups < 1:
        raise ConfigError(f"data.group_pattern={pattern!r}: needs a (group) capturing the item id")
    return [m.group(1) if (m := regex.search(p.name)) else str(p) for p in paths]


def clean_class_names(
    keys: list[str], pattern: str | None = None, rename: dict[str, str] | None = None
) -> list[str]:
    """Display names: the regex's first group (``001.Affenpinscher`` -> ``Affenpinscher``), then
    ``rename`` (``bluzy`` -> ``blouses``)."""
    regex = re.compile(pattern) if pattern else None
    names = [m.group(1) if regex and regex.groups and (m := regex.search(k)) else k for k in keys]
    names = [(rename or {}).get(n, n) for n in names]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ConfigError(
            f"data.class_pattern / data.rename_classes map several classes to {clashes}"
        )
    return names


def find_unreadable(paths: list[Path], threads: int = 8) -> dict[Path, str]:
    """``{path: reason}`` for every file that does not decode, checked in a few threads."""
    threads = max(1, min(threads, len(paths)))
    chunks = [paths[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:  # Pillow's decoders release the GIL
        results = list(pool.map(check_images, chunks))
    return dict(sorted(item for bad in results for item in bad.items()))
