"""What a run directory must offer before training starts, and what it holds for a rerun.

A run is resumable because its directory is the contract: `checkpoints/last.ckpt` says where
training stopped, `results.json` with status ok says the run is done.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from transferlab.errors import ConfigError
from transferlab.results import RESULTS_FILE, read_json

log = logging.getLogger(__name__)

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


class OutputDirError(ConfigError):
    """An output directory that cannot be created or written, or a disk without room."""


def check_output_dir(path: Path, min_free_mb: float = 0) -> None:
    """Raise OutputDirError unless ``path`` exists or can be created, is writable and has room."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise OutputDirError(f"output dir {path}: {existing} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise OutputDirError(f"output dir {path} is not writable: {err.strerror}") from err
    free_mb = shutil.disk_usage(path).free / 2**20
    if free_mb < min_free_mb:
        raise OutputDirError(
            f"output dir {path}: only {free_mb:.0f} MB free, min_free_mb={min_free_mb:g} "
            "(free disk space or lower min_free_mb)"
        )


class OutputDirCheck(Callback):
    """Hydra callback: check the run or sweep dir before Hydra writes into it; one line, exit 2."""

    def __init__(self, min_free_mb: float = 0) -> None:
        self.min_free_mb = min_free_mb

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir)

    def _check(self, path: str) -> None:
        try:
            check_output_dir(Path(path), self.min_free_mb)
        except OutputDirError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)


def finished_results(output_dir: Path) -> dict[str, Any] | None:
    """The stored results of a run that finished (status ok) in ``output_dir``, else None."""
    path = Path(output_dir) / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        results = read_json(path)
    except ValueError:  # a half-written file from an old crash: the run is not done
        return None
    return results if results.get("status") == "ok" else None


def resume_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """The checkpoint fit() starts from: ``ckpt_path``, or with ``resume`` the run's last.ckpt."""
    if not cfg.get("resume"):
        return cfg.get("ckpt_path")
    last = Path(output_dir) / LAST_CHECKPOINT
    if last.is_file():
        log.info("resuming from %s", last)
        return str(last)
    log.warning(
        "resume=true but %s does not exist: starting from scratch "
        "(to continue a run, pass its directory: hydra.run.dir=<run dir>)",
        last,
    )
    return None


def persistent_id(path: Path) -> str:
    """An id kept in ``path``: read if a previous attempt of this run wrote it, else created."""
    path = Path(path)
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:8]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(run_id + "\n")
    os.replace(tmp, path)
    return run_id
