"""The split a run trained on, stored with the run (<run>/split.json) and checked on rerun.

A data folder that changes between attempts of one run (files added, removed or corrupted)
would silently mix splits on resume; comparing sample ids and file digests reports it instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from transferlab.errors import ConfigError
from transferlab.results import write_json

SPLIT_FILE = "split.json"
SPLITS = ("train", "val", "test")
_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, this process


class DataChangedError(ConfigError):
    """The data no longer yields the split that a run stored."""


def sample_ids(dataset: Any) -> list:
    """Stable ids of a dataset's samples: its ``sample_ids()`` (indices, relative paths) or
    positions."""
    ids = dataset.sample_ids() if hasattr(dataset, "sample_ids") else range(len(dataset))
    return [i.item() if hasattr(i, "item") else i for i in ids]


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes: survives copies to another machine, catches any corruption."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digests(files: dict[str, Path]) -> dict[str, str]:
    """sha256 per named file; one this process has hashed is not read again while its size and
    mtime stay (fit's check, then test's, then eval in the same process)."""
    digests = {}
    for name in sorted(files):
        stat = os.stat(files[name])
        key = (str(files[name]), stat.st_size, stat.st_mtime_ns)
        if key not in _DIGESTS:
            _DIGESTS[key] = file_digest(files[name])
        digests[name] = _DIGESTS[key]
    return digests


def split_record(datamodule: Any) -> dict[str, Any]:
    """Sample ids per split and a digest per data file of a set-up DataModule."""
    files = file_digests(datamodule.data_files())
    sets = (datamodule.train_set, datamodule.val_set, datamodule.test_set)
    return {"files": files, **{name: sample_ids(ds) for name, ds in zip(SPLITS, sets, strict=True)}}


def split_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two split records, one short phrase per difference."""
    changes = []
    for name in SPLITS:
        before, now = set(map(_key, stored.get(name, []))), set(map(_key, current[name]))
        if before != now:
            changes.append(
                f"{name}: {len(now - before)} samples added, {len(before - now)} removed"
                + _examples(now ^ before)
            )
    old_files, new_files = stored.get("files", {}), current["files"]
    for label, names in (
        ("added", new_files.keys() - old_files.keys()),
        ("removed", old_files.keys() - new_files.keys()),
        (
            "modified",
            {n for n in old_files.keys() & new_files.keys() if old_files[n] != new_files[n]},
        ),
    ):
        if names:
            changes.append(f"files {label}: {len(names)}" + _examples(names))
    return changes


def check_split(datamodule: Any, run_dir: Path, write: bool = True) -> None:
    """Store the split in ``run_dir``, or raise DataChangedError if the stored one differs."""
    path = Path(run_dir) / SPLIT_FILE
    current = split_record(datamodule)
    if not path.is_file():
        if write:
            write_json(path, current)
        return
    changes = split_changes(json.loads(path.read_text()), current)
    if changes:
        raise DataChangedError(
            f"data under {datamodule.root} changed since {path} was written ({'; '.join(changes)}): "
            "restore the data, or train in a new run dir"
        )


def _key(sample_id: Any) -> str:
    return json.dumps(sample_id)


def _examples(items: Any) -> str:
    shown = sorted(map(str, items))[:3]
    return f" (e.g. {', '.join(shown)})" if shown else ""
