"""How every stage resizes an image; torch-free, so that ONNX serving imports it too.

Evaluation repeats timm's eval transform: shorter side to ``floor(size / crop_pct)`` (the long
side truncated as torchvision truncates it), centre crop (its offset rounded as torchvision
rounds it), resampled by PIL, whose filters widen when shrinking (antialiasing) and whose cubic
is a=-0.5. ``F.interpolate(..., antialias=True)`` implements the same filters on the device.
A plain ``cv2.resize`` aliases when shrinking and uses a=-0.75: it serves augmentation only,
with INTER_AREA for shrinking.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from transferlab.errors import ConfigError

# timm's pretrained configs use only these two; the names are also torch's interpolation modes.
CV2_FLAGS = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def check_interpolation(name: str) -> str:
    """``name`` if every pipeline can resample with it, else a ConfigError naming the choices."""
    if name not in CV2_FLAGS:
        raise ConfigError(f"input.interpolation={name!r}: use one of {', '.join(CV2_FLAGS)}")
    return name


def cv2_interpolation(name: str) -> int:
    """The OpenCV flag for a timm interpolation name (what albumentations' resizes take)."""
    return CV2_FLAGS[check_interpolation(name)]


def resize_side(size: int, crop_pct: float) -> int:
    """Shorter side before the centre crop, as timm computes it (224 at 0.875 -> 256)."""
    return math.floor(size / crop_pct)


def resized_shape(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) with the shorter side ``short``; the long side truncated as torchvision does."""
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def crop_start(length: int, size: int) -> int:
    """First pixel of a centred ``size`` window, rounded as torchvision's CenterCrop rounds."""
    return round((length - size) / 2.0)  # half to even, as Python rounds


def resize_crop(image: np.ndarray, short: int, size: int, interpolation: str) -> np.ndarray:
    """HxW[xC] uint8 -> size x size[xC]: shorter side to ``short``, then the centre crop.

    PIL resamples only the kept window (``box``), with the filters of the full-image resize.
    """
    height, width = image.shape[:2]
    out_h, out_w = resized_shape(height, width, short)
    top, left = crop_start(out_h, size), crop_start(out_w, size)
    sy, sx = height / out_h, width / out_w
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    single = image.ndim == 3 and image.shape[2] == 1  # PIL has no HxWx1 mode
    pil = Image.fromarray(image[..., 0] if single else image)
    out = np.asarray(pil.resize((size, size), PIL_FILTERS[interpolation], box=box))
    return out[..., None] if single else out
