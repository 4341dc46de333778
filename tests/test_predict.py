"""predict.py on a folder of real, odd and broken files: every file gets a row, none crashes it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_script
from transferlab.errors import ConfigError
from transferlab.inference.predict_folder import image_paths

pytestmark = pytest.mark.slow


def write_odd_folder(folder: Path) -> dict[str, str]:
    """Images a user's folder really holds; returns {relative path: expected error word or ''}."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
    (folder / "nested" / "deeper").mkdir(parents=True)
    (folder / ".thumbs").mkdir()
    Image.fromarray(rgb).save(folder / "photo.jpg")
    Image.fromarray(rgb[:, :, 0]).save(folder / "nested" / "deeper" / "GRAY.PNG")
    Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])).save(folder / "rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 65535, (32, 32))).astype(np.uint16)).save(
        folder / "deep16.png"
    )
    Image.fromarray(rgb).convert("P").save(folder / "nested" / "palette.gif")
    (folder / "empty.jpg").write_bytes(b"")
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (folder / "notes.jpg").write_text("not an image, just renamed\n")
    (folder / "readme.txt").write_text("skipped: not an image suffix\n")
    Image.fromarray(rgb).save(folder / ".thumbs" / "hidden.png")
    return {
        "photo.jpg": "", "nested/deeper/GRAY.PNG": "", "rgba.png": "", "cmyk.jpg": "",
        "deep16.png": "", "nested/palette.gif": "",
        "empty.jpg": "empty", "truncated.jpg": "truncated", "notes.jpg": "not an image",
    }  # fmt: skip


def test_predict_folder_lists_broken_files_and_writes_cams(tiny_run: Path, tmp_path: Path):
    photos = tmp_path / "photos"
    expected = write_odd_folder(photos)
    args = [
        f"ckpt_path={tiny_run}/checkpoints/best.ckpt", f"input={photos}", "output=preds.csv",
        "cam.enabled=true", f"cam.dir={tmp_path / 'cam'}", f"hydra.run.dir={tmp_path / 'out'}",
    ]  # fmt: skip
    result = run_script("predict.py", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "preds.csv", newline="") as f:
        rows = {str(Path(r["path"]).relative_to(photos)): r for r in csv.DictReader(f)}
    assert set(rows) == set(expected)  # recursive; hidden and non-image files skipped
    classes = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"}  # fmt: skip
    for name, error in expected.items():
        row = rows[name]
        if error:
            assert error in row["error"] and row["prediction"] == "", name
            assert name in result.stderr + result.stdout  # listed with its reason
        else:
            assert row["error"] == "" and row["prediction"] in classes | {"unknown"}, name
            tops = [row[f"top{k}"] for k in (1, 2, 3)]
            assert len(set(tops)) == 3 and set(tops) <= classes
            assert float(row["top1_prob"]) == pytest.approx(float(row["confidence"]))
            with Image.open(tmp_path / "cam" / f"{name}.cam.png") as cam:
                assert min(cam.size) >= 224


def test_missing_or_empty_input_names_the_option(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"input=.*no such file"):
        image_paths(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"input=.*no image files"):
        image_paths(tmp_path)
