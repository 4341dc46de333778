"""Reading real-world image files: EXIF orientation, any mode to RGB, bombs refused, bad files named.

Every path enters through ``read_image``; ``find_images`` and ``check_images`` let a DataModule or
the predictor list unreadable files once, up front, instead of crashing in a loader worker.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from transferlab.errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
log = logging.getLogger(__name__)
MAX_PIXELS = 64_000_000  # ~8000x8000; past this a file is treated as a decompression bomb


class UnreadableImageError(ValueError):
    """A file that cannot be used as an image; the message is '<path>: <reason>'."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES  # upper-case extensions count too


def permission_denied(err: PermissionError) -> ConfigError:
    """The one line for a file or folder this user may not read."""
    path = err.filename or "?"
    return ConfigError(f"permission denied: {path}; let this user read it: chmod -R a+rX {path}")


def find_images(folder: Path) -> list[Path]:
    """Image files below ``folder``, recursively, sorted, hidden files skipped.

    Symlinked sub-folders are followed, each real folder once: a link back up (a loop) or to a
    folder already listed is skipped with a warning. A folder that cannot be read is a one-line
    user error, since its images would otherwise go missing without a word.
    """
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def refuse(err: OSError) -> None:
        raise permission_denied(err) if isinstance(err, PermissionError) else err

    for top, dirs, files in os.walk(folder, onerror=refuse, followlinks=True):
        stat = os.stat(top)
        if (stat.st_dev, stat.st_ino) in seen:
            log.warning("%s: links to a folder already listed (a loop?); not listed twice", top)
            dirs.clear()
            continue
        seen.add((stat.st_dev, stat.st_ino))
        # real folders before links, so a linked copy is the one skipped
        dirs[:] = sorted(
            (d for d in dirs if not d.startswith(".")),
            key=lambda d: (os.path.islink(os.path.join(top, d)), d),
        )
        names = (f for f in files if not f.startswith(".") and is_image_file(Path(f)))
        found += [p for f in names if (p := Path(top, f)).is_file()]  # not a dangling link
    return sorted(found)


def read_image(path: Path | str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` to an HxWx3 uint8 RGB array, upright as the camera meant it."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise UnreadableImageError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > max_pixels:
                    raise UnreadableImageError(
                        f"{path}: {image.width}x{image.height} pixels exceeds the limit of "
                        f"{max_pixels} (possible decompression bomb)"
                    )
                image = ImageOps.exif_transpose(image)
                return to_rgb_array(image)
    except UnreadableImageError:
        raise
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as err:
        raise UnreadableImageError(f"{path}: {_reason(err)}") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise UnreadableImageError(f"{path}: {_reason(err)}") from err


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any PIL mode (L, P, RGBA, CMYK, I;16, F) as RGB uint8; transparency over white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() if array.size else 0
        # 16-bit data keeps its brightness (65535 -> 255); wider ranges are stretched to fit
        scale = 1.0 if peak <= 255 else 255.0 / 65535 if peak <= 65535 else 255.0 / peak
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def check_images(paths: Iterable[Path]) -> dict[Path, str]:
    """Fully decode each file; return {path: reason} for the ones that cannot be used."""
    bad: dict[Path, str] = {}
    for path in paths:
        try:
            read_image(path)
        except UnreadableImageError as err:
            bad[Path(path)] = str(err).split(": ", 1)[-1]
    return bad


def _reason(err: BaseException) -> str:
    if isinstance(err, UnidentifiedImageError):
        return "not an image (or a format Pillow cannot decode)"
    if isinstance(err, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "refused as a possible decompression bomb"
    text = str(err) or type(err).__name__
    if "truncated" in text.lower() or "image file is" in text.lower():
        return f"truncated file ({text})"
    return text
