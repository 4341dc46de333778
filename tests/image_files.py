"""Real image files for the data tests: class-coloured JPEG/PNG, every awkward mode, broken files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

# A class is a colour, so that even 1 epoch of a tiny CNN has something to learn.
COLOURS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 200, 40)]


def write_image(path: Path, colour: tuple[int, int, int], size=(40, 30), seed: int = 0) -> Path:
    """A noisy ``colour`` image in the format its suffix names (JPEG for .jpg/.JPG)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-25, 25, size=(size[1], size[0], 3))
    array = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(
        path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None
    )
    return path


def write_class_folders(
    folder: Path, classes: list[str], per_class: int, suffix: str = ".jpg", size=(40, 30)
) -> list[Path]:
    """``folder/<class>/<class>_<i><suffix>`` for each class, coloured by class."""
    return [
        write_image(folder / name / f"{name}_{i}{suffix}", COLOURS[k % 4], size, seed=100 * k + i)
        for k, name in enumerate(classes)
        for i in range(per_class)
    ]


def write_awkward_good_images(folder: Path, colour: tuple[int, int, int]) -> list[Path]:
    """Readable but unusual: CMYK JPEG, RGBA PNG, 16-bit grey PNG, palette PNG, EXIF-rotated JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.new("RGB", (36, 28), colour)
    files = {
        "cmyk.jpg": rgb.convert("CMYK"),
        "rgba.png": rgb.convert("RGBA"),
        "palette.png": rgb.convert("P"),
        "grey16.png": Image.fromarray(np.full((28, 36), 40000, dtype=np.uint16)),
    }
    for name, image in files.items():
        image.save(folder / name)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    rgb.save(folder / "rotated.JPG", exif=exif.tobytes())
    return [folder / n for n in [*files, "rotated.JPG"]]


def write_broken_images(folder: Path) -> list[Path]:
    """Files named as images that cannot be decoded: empty, truncated JPEG, text renamed .jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buffer, format="JPEG")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "notes.jpg").write_text("this is not an image\n")
    return [folder / "empty.jpg", folder / "truncated.jpg", folder / "notes.jpg"]
