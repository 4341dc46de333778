"""Finding dataset files locally, or fetching them from their official source when online."""

from __future__ import annotations

import logging
import shutil
import tarfile
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class DataNotFoundError(FileNotFoundError):
    """The dataset is neither on disk nor downloadable; the message says how to provide it."""


def find_or_download(
    names: Sequence[str],
    search_dirs: Sequence[Path],
    target: Path,
    base_url: str | None,
    dataset: str,
) -> dict[str, Path]:
    """Paths of all ``names`` from the first dir holding them all, else download into ``target``."""
    for folder in search_dirs:
        if all((folder / n).is_file() for n in names):
            log.info("%s: using files in %s", dataset, folder)
            return {n: folder / n for n in names}
    looked = ", ".join(str(d) for d in search_dirs)
    if base_url is None:
        raise DataNotFoundError(f"{dataset}: {', '.join(names)} not found in {looked}")
    target.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            if not (target / name).is_file():
                download(f"{base_url.rstrip('/')}/{name}", target / name)
    except OSError as err:
        raise DataNotFoundError(
            f"{dataset}: files not found (looked in {looked}) and the download from {base_url} "
            f"failed ({err}). Put {', '.join(names)} in {target}, or get them online once."
        ) from err
    return {n: target / n for n in names}


def download(url: str, path: Path, timeout: float = 20.0) -> None:
    """Fetch ``url`` to ``path`` atomically (a partial file never looks complete)."""
    log.info("downloading %s", url)
    partial = path.with_suffix(path.suffix + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
        shutil.copyfileobj(response, out)
    partial.replace(path)


def download_archive(url: str, target: Path) -> None:
    """Fetch a .zip/.tar(.gz) from ``url`` and unpack it into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    archive = target / url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
    if not archive.is_file():
        download(url, archive)
    extract_archive(archive, target)


def extract_archive(archive: Path, target: Path) -> None:
    """Unpack a zip or tar file into ``target``, refusing members that would land outside it."""
    log.info("extracting %s", archive)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                _refuse_escape(archive, target, member)
            zf.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf.getnames():
                _refuse_escape(archive, target, member)
            tf.extractall(target, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    else:
        raise DataNotFoundError(f"{archive}: neither a zip nor a tar archive; delete it and retry")


def _refuse_escape(archive: Path, target: Path, member: str) -> None:
    if not (target / member).resolve().is_relative_to(target.resolve()):
        raise DataNotFoundError(f"{archive}: member {member!r} would be written outside {target}")
