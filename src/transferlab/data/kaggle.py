"""Kaggle competitions as a data source: downloaded with the ``kaggle`` package when credentials exist."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from transferlab.data.download import DataNotFoundError, extract_archive

log = logging.getLogger(__name__)


def kaggle_credentials() -> str | None:
    """Where Kaggle credentials were found (a file or an environment variable), else None."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    config_dir = Path(os.environ.get("KAGGLE_CONFIG_DIR", "~/.kaggle")).expanduser()
    for name in ("kaggle.json", "access_token", "access_token.txt"):
        if (config_dir / name).is_file():
            return str(config_dir / name)
    return None


def how_to_get(competition: str, root: Path) -> str:
    """The fix, in one line, for a competition that is neither on disk nor downloadable."""
    return (
        f"accept the rules at https://www.kaggle.com/competitions/{competition}/rules, create an "
        f"API token at https://www.kaggle.com/settings/api and save it as ~/.kaggle/kaggle.json "
        f"(or set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN), then rerun; or unpack "
        f"the competition files yourself so that {root} exists, or point data.root at them"
    )


def download_competition(competition: str, target: Path, root: Path) -> None:
    """Download all files of ``competition`` into ``target`` and unpack every zip among them."""
    source = kaggle_credentials()
    if source is None:
        raise DataNotFoundError(
            f"{root} not found and no Kaggle credentials to download it: "
            f"{how_to_get(competition, root)}"
        )
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError as err:
        raise DataNotFoundError(
            f"{root} not found and the kaggle package is missing: pip install kaggle six ({err})"
        ) from err
    log.info(
        "downloading Kaggle competition %s into %s (credentials: %s)", competition, target, source
    )
    target.mkdir(parents=True, exist_ok=True)
    try:
        api = KaggleApi()
        api.authenticate()
        api.competition_download_files(competition, path=str(target), quiet=False)
    except (Exception, SystemExit) as err:  # the client exits on bad credentials
        raise DataNotFoundError(
            f"Kaggle download of {competition} failed ({type(err).__name__}: {err}): "
            f"{how_to_get(competition, root)}"
        ) from err
    unpack_all(target)


def unpack_all(folder: Path) -> None:
    """Extract every zip below ``folder`` (competitions often nest one zip per split) once."""
    done: set[Path] = set()
    while pending := [z for z in sorted(folder.rglob("*.zip")) if z not in done]:
        for archive in pending:
            extract_archive(archive, archive.parent)
            done.add(archive)
