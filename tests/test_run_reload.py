"""One way to reload a run: the right file named for every prediction, other versions refused."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, run_script
from tests.image_files import COLOURS, write_class_folders, write_image
from transferlab import __version__
from transferlab.tables import printable

pytestmark = pytest.mark.slow
CLASSES = ["red", "green", "blue"]


def folder_run(tmp: Path, layout: str) -> Path:
    """A tiny real small_cnn run on class folders: one split (val and test carved from train),
    or train|val|test folders, where test/red/ also holds a file whose name is not UTF-8."""
    root = tmp / "photos"
    if layout == "one_folder":
        write_class_folders(root, CLASSES, per_class=10)
    else:
        for split, n in (("train", 8), ("val", 3), ("test", 4)):
            write_class_folders(root / split, CLASSES, per_class=n)
        write_image(root / "test" / "red" / os.fsdecode(b"odd\xff.png"), COLOURS[0])
    run_dir = tmp / "run"
    args = [*TINY, "data=image_folder", f"data.root={root}", "model=small_cnn", "pretrained=false"]
    args += ["data.train_per_class=null", "trainer.limit_test_batches=null"]
    result = run_script("train.py", [*args, f"hydra.run.dir={run_dir}"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.parametrize("layout", ["one_folder", "split_folders"])
def test_predictions_csv_names_the_right_file_for_every_row(tmp_path: Path, layout: str):
    run_dir = folder_run(tmp_path, layout)
    out = tmp_path / "eval"
    args = [
        f"ckpt_path={run_dir}/checkpoints/best.ckpt",
        f"hydra.run.dir={out}",
        "cam.num_images=0",
    ]
    result = run_script("eval.py", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    tested = [printable(i) for i in json.loads((run_dir / "split.json").read_text())["test"]]
    assert sorted(r["image"] for r in rows) == sorted(tested)  # the split it tested, each once
    for row in rows:
        assert Path(row["image"]).parent.name == row["label"], row  # the file of that sample
        if "\\x" not in row["image"]:
            assert (tmp_path / "photos" / row["image"]).is_file()
    if layout == "split_folders":  # a name that is not UTF-8 is written with its byte escaped
        assert "test/red/odd\\xff.png" in {r["image"] for r in rows}
        args = [f"ckpt_path={run_dir}/checkpoints/best.ckpt", f"input={tmp_path / 'photos'}"]
        result = run_script("predict.py", [*args, f"hydra.run.dir={tmp_path / 'p'}"], tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "odd\\xff.png" in (tmp_path / "p" / "predictions.csv").read_text()


def test_a_checkpoint_of_another_version_is_refused_in_one_line(tmp_path: Path):
    run_dir = folder_run(tmp_path, "one_folder")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["transferlab_version"] == __version__
    best = run_dir / "checkpoints" / "best.ckpt"
    assert torch.load(best, weights_only=True)["transferlab_version"] == __version__
    old = tmp_path / "old_run"
    shutil.copytree(run_dir, old)
    checkpoint = torch.load(old / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["transferlab_version"] = "0.1.0"
    torch.save(checkpoint, old / "checkpoints" / "best.ckpt")
    for script in ("eval.py", "predict.py", "export.py"):
        args = [f"ckpt_path={old}/checkpoints/best.ckpt", f"hydra.run.dir={tmp_path / script}"]
        args += [f"input={tmp_path / 'photos'}"] if script == "predict.py" else []
        result = run_script(script, args, cwd=tmp_path)
        assert result.returncode == 2, (script, result.stderr[-2000:])
        assert result.stderr.strip().splitlines() == [
            f"error: {old}/checkpoints/best.ckpt: written by transferlab 0.1.0, this is "
            f"{__version__}; retrain the run, or load it with that version "
            "(pip install transferlab==0.1.0)"
        ], script
