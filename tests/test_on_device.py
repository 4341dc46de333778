"""Device-resident data: the whole array on the device, augmented there, same eval preprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TINY, compose_train, idx_datamodule, requires_fmnist, run_script
from transferlab.data.on_device import DeviceAugment
from transferlab.data.transforms import eval_transform, resolve_input
from transferlab.models.smallcnn import SmallCNN
from transferlab.training.build import build_experiment


def small_cnn_spec(**overrides) -> dict:
    """A resolved input spec (all keys, as a run has them) with ``overrides`` on top."""
    return resolve_input(
        SmallCNN(num_classes=2), {"mean": [0.5] * 3, "std": [0.25] * 3, **overrides}
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"size": 64, "crop_pct": 1.0},  # enlarges 28 -> 64
        {"size": 56, "crop_pct": 0.875, "interpolation": "bicubic"},
        {"size": 20, "crop_pct": 0.9, "test_size": 16, "interpolation": "bicubic"},  # shrinks
        {"size": 24, "crop_pct": 0.95, "interpolation": "bilinear"},  # odd margin: rounded offset
    ],
)
def test_device_eval_matches_the_cpu_eval_transform(overrides: dict):
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    spec = small_cnn_spec(**overrides)
    on_device = DeviceAugment(spec)(torch.from_numpy(images), train=False)
    on_cpu = torch.stack(
        [eval_transform(spec)(image=np.repeat(im, 3, 2))["image"] for im in images]
    )
    size = spec["test_size"]
    assert on_device.shape == on_cpu.shape == (4, 3, size, size)
    # the same filters (PIL's, antialiased) and the same rounding: at most one grey level apart
    assert (on_device - on_cpu).abs().max() < 1.01 / 255 / 0.25


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_device_augment_resamples_with_the_input_interpolation(interpolation: str, monkeypatch):
    modes = []
    for name in ("interpolate", "grid_sample"):
        real = getattr(F, name)

        def spy(*args, _real=real, **kwargs):
            modes.append((kwargs["mode"], kwargs.get("antialias", True)))
            return _real(*args, **kwargs)

        monkeypatch.setattr(F, name, spy)
    images = torch.zeros(2, 28, 28, 1, dtype=torch.uint8)
    augment = DeviceAugment(small_cnn_spec(size=20, crop_pct=0.9, interpolation=interpolation))
    augment(images, train=True)
    assert modes and all(mode == (interpolation, True) for mode in modes)


def test_device_train_augment_is_random_and_seeded():
    images = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    )
    spec = small_cnn_spec(size=32, crop_pct=1.0, mean=[0] * 3, std=[1] * 3, interpolation="bicubic")
    augment = DeviceAugment(spec)
    torch.manual_seed(0)
    a = augment(images, train=True)
    torch.manual_seed(0)
    assert torch.equal(a, augment(images, train=True))
    assert not torch.equal(a, augment(images, train=True))
    assert a.min() >= 0.0 and a.max() <= 1.0  # bicubic overshoot is clipped, as on the CPU


def test_device_batches_cover_the_split_once(idx_dir: Path, tmp_path: Path):
    dm = idx_datamodule(
        idx_dir, tmp_path, "data.on_device=true", "data.batch_size=16", "experiment=none"
    )
    seen = [y for _, labels in dm.val_dataloader() for y in labels.tolist()]
    assert sorted(seen) == sorted(dm.val_set.targets.tolist())
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    assert len(dm.train_dataloader()) == len(dm.train_set) // 16


def test_file_datasets_refuse_on_device(tmp_path: Path):
    from PIL import Image

    for k in ("a", "b"):
        (tmp_path / "imgs" / k).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(tmp_path / "imgs" / k / f"{i}.png")
    cfg = compose_train(
        [
            "data=image_folder",
            f"data.root={tmp_path / 'imgs'}",
            "+data.on_device=true",
            "model=small_cnn",
            "pretrained=false",
            "input.size=16",
        ],
        output_dir=tmp_path,
    )
    dm = build_experiment(cfg).datamodule
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"data\.on_device=true needs an in-memory dataset"):
        dm.train_dataloader()


@pytest.mark.slow
@requires_fmnist
def test_train_py_with_data_on_device(tmp_path: Path):
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py",
        [
            *TINY,
            "model=small_cnn",
            "pretrained=false",
            "data.on_device=true",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "ok" and results["splits"]["train"] == 80
