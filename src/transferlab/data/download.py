"""Finding dataset files locally, or fetching them from their official source when online.

A download is checked against the md5 its data yaml states before it takes its name. Files found
on disk are trusted as they are: Debian's Fashion-MNIST, for one, is the same data re-gzipped.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from torchvision.datasets.utils import calculate_md5

from transferlab.errors import ConfigError

log = logging.getLogger(__name__)


class DataNotFoundError(ConfigError, FileNotFoundError):
    """The dataset is neither on disk nor downloadable; the message says how to provide it (a
    user error: one line and exit code 2)."""


class ChecksumError(ConfigError):
    """A downloaded file is not the published one (truncated, corrupted or changed upstream)."""


def find_or_download(
    names: Sequence[str],
    search_dirs: Sequence[Path],
    target: Path,
    base_url: str | None,
    dataset: str,
    md5: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Paths of all ``names`` from the first dir holding them all, else download into ``target``
    (each checked against ``md5[name]`` where given)."""
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
                url = f"{base_url.rstrip('/')}/{name}"
                download(url, target / name, (md5 or {}).get(name))
    except OSError as err:
        raise DataNotFoundError(
            f"{dataset}: files not found (looked in {looked}) and the download from {base_url} "
            f"failed ({err}). Put {', '.join(names)} in {target}, or get them online once."
        ) from err
    return {n: target / n for n in names}


def download(url: str, path: Path, md5: str | None = None, timeout: float = 20.0) -> None:
    """Fetch ``url`` to ``path``; a partial or mismatching file never takes that name.

    Our own loop rather than torchvision's download_url, which writes straight to ``path`` (an
    interrupted download looks complete), has no timeout and retries https over plain http.
    """
    log.info("downloading %s", url)
    partial = path.with_suffix(path.suffix + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
        shutil.copyfileobj(response, out)
    check_md5(partial, md5)
    partial.replace(path)


def check_md5(path: Path, md5: str | None) -> None:
    """Raise ChecksumError unless ``path`` has the md5 ``md5`` (None: nothing published)."""
    if md5 is None:
        return
    actual = calculate_md5(path)
    if actual != md5.lower():
        raise ChecksumError(
            f"{path}: md5 {actual}, expected {md5} (a corrupted or changed download); "
            "delete it and retry"
        )


def download_archive(url: str, target: Path, md5: str | None = None) -> None:
    """Fetch a .zip/.tar(.gz) from ``url`` unless it is already there, check it against ``md5``
    and unpack it into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    archive = target / url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
    if archive.is_file():
        check_md5(archive, md5)  # from an earlier run, or put there by hand
    else:
        download(url, archive, md5)
    extract_archive(archive, target)


def extract_archive(archive: Path, target: Path) -> None:
    """Unpack a zip or tar file into ``target``; a member that would land outside it (or, in a
    tar, a link out, a device file) stops the extraction before anything is written.

    Not torchvision's extract_archive: it unpacks tars without a filter.
    """
    log.info("extracting %s", archive)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if not (target / member).resolve().is_relative_to(target.resolve()):
                    raise DataNotFoundError(
                        f"{archive}: member {member!r} would be written outside {target}"
                    )
            zf.extractall(target)
    elif tarfile.is_tarfile(archive):
        if not hasattr(tarfile, "data_filter"):  # Python before 3.10.12 / 3.11.4
            raise DataNotFoundError(
                f"{archive}: this Python ({sys.version.split()[0]}) has no tarfile data filter to "
                f"extract it safely; use Python >= 3.10.12 or >= 3.11.4, or unpack it into {target}"
            )
        with tarfile.open(archive) as tf:
            try:
                for member in tf.getmembers():
                    tarfile.data_filter(member, str(target))
            except tarfile.FilterError as err:
                raise DataNotFoundError(f"{archive}: {err}") from err
            tf.extractall(target, filter="data")
    else:
        raise DataNotFoundError(f"{archive}: neither a zip nor a tar archive; delete it and retry")
