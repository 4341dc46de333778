"""Predict every image below a folder with a trained checkpoint (the interactive classifier's
batch mode): one CSV row per file, broken files kept with their reason instead of stopping."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from PIL import Image

from transferlab.data.images import IMAGE_SUFFIXES, UnreadableImageError, find_images, read_image
from transferlab.errors import ConfigError
from transferlab.inference.predictor import Prediction, Predictor, enlarged
from transferlab.tables import write_csv

log = logging.getLogger(__name__)


def predict_folder(cfg: DictConfig) -> list[dict[str, Any]]:
    """Write ``cfg.output`` (CSV: path, prediction, confidence, top-k, error) for ``cfg.input``."""
    source = Path(str(cfg.input)).expanduser()
    paths = image_paths(source)
    predictor = Predictor.from_checkpoint(
        cfg.ckpt_path,
        threshold=float(cfg.unknown.threshold),
        device=cfg.get("device"),
        overrides=cfg.get("overrides"),
        cam_layer=cfg.cam.get("target_layer"),
    )
    cam_dir = Path(cfg.cam.dir) if cfg.cam.enabled else None
    rows: list[dict[str, Any]] = []
    for start in range(0, len(paths), int(cfg.batch_size)):
        chunk = paths[start : start + int(cfg.batch_size)]
        rows += predict_files(predictor, chunk, int(cfg.top_k), source, cam_dir)
    output = Path(str(cfg.output)).expanduser()
    write_csv(rows, output)
    broken = [r for r in rows if r["error"]]
    log.info(
        "%d images predicted, %d unreadable; CSV: %s", len(rows) - len(broken), len(broken), output
    )
    for row in broken:
        log.warning("skipped %s: %s", row["path"], row["error"])
    return rows


def image_paths(source: Path) -> list[Path]:
    """The image files below a folder (recursively), or the one file given."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ConfigError(f"input={source}: no such file or folder")
    paths = find_images(source)
    if not paths:
        raise ConfigError(
            f"input={source}: no image files below it (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return paths


def predict_files(
    predictor: Predictor, paths: Sequence[Path], top_k: int, root: Path, cam_dir: Path | None
) -> list[dict[str, Any]]:
    """Rows for ``paths`` in order; unreadable files get their reason in ``error``."""
    images, readable, errors = [], [], {}
    for path in paths:
        try:
            images.append(read_image(path))
            readable.append(path)
        except UnreadableImageError as err:
            errors[path] = str(err).split(": ", 1)[-1]
    answers: dict[Path, Prediction] = {}
    if images:
        batch = predictor.preprocess(images)
        predictions = predictor.decide(predictor.probabilities(batch), top_k)
        answers = dict(zip(readable, predictions, strict=True))
        if cam_dir is not None:
            overlays = predictor.cam_overlays(batch, [p.index for p in predictions])
            for path, image in zip(readable, overlays, strict=True):
                save_cam(image, cam_file(cam_dir, path, root))
    return [_row(p, answers.get(p), errors.get(p, ""), top_k) for p in paths]


def cam_file(cam_dir: Path, path: Path, root: Path) -> Path:
    """Where an image's CAM goes: its path below the input, mirrored, plus '.cam.png' (keeps
    a.jpg and a.png apart)."""
    relative = path.relative_to(root) if root.is_dir() else Path(path.name)
    return cam_dir / relative.parent / f"{relative.name}.cam.png"


def save_cam(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(enlarged(image)).save(path)


def _row(path: Path, answer: Prediction | None, error: str, top_k: int) -> dict[str, Any]:
    row: dict[str, Any] = {"path": str(path), "prediction": "", "confidence": ""}
    for k in range(1, top_k + 1):
        row[f"top{k}"], row[f"top{k}_prob"] = "", ""
    if answer is not None:
        row["prediction"], row["confidence"] = answer.label, round(answer.confidence, 6)
        for k, (name, prob) in enumerate(answer.top, start=1):
            row[f"top{k}"], row[f"top{k}_prob"] = name, round(prob, 6)
    row["error"] = error
    return row
