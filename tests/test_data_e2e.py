"""A messy real folder end to end: train.py trains to the end past broken files; inspect reports it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import TINY, run_script
from tests.image_files import write_awkward_good_images, write_broken_images, write_class_folders

pytestmark = pytest.mark.slow


@pytest.fixture
def messy_folder(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Two classes of JPEG/PNG, every awkward-but-good mode, and three broken files."""
    root = tmp_path / "photos"
    write_class_folders(root, ["bell", "ripped"], 12)
    write_class_folders(root, ["ripped"], 4, suffix=".PNG")
    write_awkward_good_images(root / "bell", (220, 40, 40))
    return root, write_broken_images(root / "ripped")


def test_folder_with_broken_files_trains_to_the_end_and_names_each_once(
    tmp_path: Path, messy_folder
):
    root, broken = messy_folder
    run_dir = tmp_path / "run"
    args = [
        *TINY,
        "data=image_folder",
        f"data.root={root}",
        "model=small_cnn",
        "pretrained=false",
        "augment=standard",
        "data.num_workers=2",
        "trainer.max_epochs=2",
        f"hydra.run.dir={run_dir}",
    ]
    result = run_script("train.py", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "ok" and results["epochs"] == 2
    assert results["classes"] == ["bell", "ripped"] and results["splits"]["unreadable"] == 3
    output = result.stdout + result.stderr
    for path in broken:
        assert output.count(str(path)) == 1, path
    assert (run_dir / "train.log").read_text().count(str(broken[0])) == 1


def test_inspect_writes_report_and_sample_grid(tmp_path: Path, messy_folder):
    root, broken = messy_folder
    out = tmp_path / "inspect"
    args = [
        "data=image_folder",
        f"data.root={root}",
        "model=small_cnn",
        "input.size=32",
        "samples_per_class=3",
        f"hydra.run.dir={out}",
    ]
    result = run_script("inspect_data.py", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (out / "data_report.md").read_text()
    assert "| bell | 14 | 3 |" in report and "| ripped | 13 | 3 |" in report
    assert "CMYK" in report and "I;16" in report and "40x30" in report
    assert all(str(p) in report for p in broken)
    with Image.open(out / "samples.png") as grid:
        assert grid.width >= 2 * 3 * 64 and grid.height == 3 * 64  # header + 2 class rows
    assert "Image modes" in result.stdout and "empty file" in result.stdout
