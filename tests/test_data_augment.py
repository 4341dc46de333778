"""Every augment pipeline, composed from its yaml, turns real images of odd sizes into model inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import compose_train
from tests.image_files import write_awkward_good_images, write_image
from transferlab.data.images import find_images, read_image
from transferlab.training.build import build_experiment

ODD_SIZES = [(1, 1), (7, 300), (301, 17), (46, 66), (600, 866), (33, 33)]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[np.ndarray]:
    folder = tmp_path_factory.mktemp("odd")
    for w, h in ODD_SIZES:
        write_image(folder / f"{w}x{h}.jpg", (180, 90, 30), size=(w, h))
    write_awkward_good_images(folder / "modes", (30, 90, 180))
    return [read_image(p) for p in find_images(folder)]


@pytest.mark.parametrize("augment", ["none", "light", "standard", "strong"])
def test_pipeline_gives_model_sized_tensors(augment: str, images, tmp_path: Path):
    cfg = compose_train(
        [f"augment={augment}", "model=small_cnn", "pretrained=false", "input.size=40"],
        output_dir=tmp_path,
    )
    dm = build_experiment(cfg).datamodule
    for image in images:
        for transform in (dm.train_transform, dm.eval_transform):
            out = transform(image=image)["image"]
            assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
            assert tuple(out.shape) == (3, 40, 40) and torch.isfinite(out).all()


def test_eval_resizes_then_centre_crops_by_crop_pct(tmp_path: Path):
    cfg = compose_train(
        ["model=small_cnn", "pretrained=false", "input.size=224", "input.crop_pct=0.875"],
        output_dir=tmp_path,
    )
    exp = build_experiment(cfg)
    assert exp.input["resize"] == 256
    stripes = np.zeros((300, 600, 3), dtype=np.uint8)
    stripes[:, :150] = 255  # the left quarter is white; a 256 -> 224 centre crop keeps none of it
    out = exp.datamodule.eval_transform(image=stripes)["image"]
    assert tuple(out.shape) == (3, 224, 224)
    assert out[0].max() < 0  # normalised black everywhere: the white quarter was cropped away
