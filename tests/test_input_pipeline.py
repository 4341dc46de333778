"""Our eval preprocessing (albumentations and torch-free ONNX) equals timm's own on real photos,
and the backbone's interpolation reaches every resize: train, eval, device, ONNX."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import skimage.data
import timm
import torch
from onnx import TensorProto, helper
from PIL import Image
from timm.data import create_transform, resolve_data_config

from tests.conftest import compose_train
from transferlab.data.on_device import DeviceAugment
from transferlab.data.transforms import eval_transform, resolve_input
from transferlab.inference.onnx_model import METADATA_KEY, OnnxClassifier, preprocess
from transferlab.training.build import build_experiment

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket")
# tf_efficientnet_lite0: bicubic at crop 0.875; resnet18.a1: trained at 224/0.95, tested at 288/1.0
MODELS = ("tf_efficientnet_lite0", "resnet18")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: getattr(skimage.data, name)() for name in PHOTOS}


@pytest.fixture(scope="module", params=MODELS)
def net(request) -> torch.nn.Module:
    return timm.create_model(request.param, pretrained=False)  # preprocessing needs no weights


@pytest.mark.parametrize("use_test_size", [True, False])
def test_eval_and_onnx_preprocessing_match_timm(net, photos, use_test_size: bool):
    spec = resolve_input(net)
    if not use_test_size:  # evaluate at the train size, as timm does without use_test_size
        spec = resolve_input(net, {"test_size": spec["size"], "test_crop_pct": spec["crop_pct"]})
    timm_eval = create_transform(**resolve_data_config(model=net, use_test_size=use_test_size))
    ours = eval_transform(spec)
    for name, photo in photos.items():
        expected = timm_eval(Image.fromarray(photo))
        got_eval = ours(image=photo)["image"]
        got_onnx = torch.from_numpy(preprocess(photo, spec))
        assert got_eval.shape == got_onnx.shape == expected.shape, name
        assert (got_eval - expected).abs().mean() <= 0.01, name
        assert (got_onnx - expected).abs().mean() <= 0.01, name


def test_timm_test_size_and_crop_are_used_unless_the_size_is_set():
    resnet = timm.create_model("resnet18", pretrained=False)
    spec = resolve_input(resnet)
    assert (spec["size"], spec["crop_pct"], spec["resize"]) == (224, 0.95, 235)  # timm floors
    assert (spec["test_size"], spec["test_crop_pct"], spec["test_resize"]) == (288, 1.0, 288)
    assert resolve_input(resnet, spec) == spec  # a saved spec reloads unchanged
    small = resolve_input(resnet, {"size": 64, "crop_pct": 1.0})
    assert (small["test_size"], small["test_crop_pct"], small["test_resize"]) == (64, 1.0, 64)
    chosen = resolve_input(resnet, {"size": 64, "test_size": 80, "test_crop_pct": 0.8})
    assert (chosen["test_size"], chosen["test_crop_pct"], chosen["test_resize"]) == (80, 0.8, 100)
    lite = resolve_input(timm.create_model("tf_efficientnet_lite0", pretrained=False))
    assert lite["interpolation"] == "bicubic"
    assert (lite["test_size"], lite["test_crop_pct"], lite["test_resize"]) == (224, 0.875, 256)


@pytest.mark.parametrize("augment", ["none", "light", "standard", "strong"])
def test_the_backbone_interpolation_reaches_the_train_transforms(augment: str, tmp_path: Path):
    cfg = compose_train(
        [
            f"augment={augment}",
            "model=efficientnet_lite0",
            "pretrained=false",
            "input.size=40",
            "input.interpolation=null",
        ],
        output_dir=tmp_path,
    )
    exp = build_experiment(cfg)
    assert exp.input["interpolation"] == "bicubic"  # from timm's pretrained config
    resizers = [t for t in exp.datamodule.train_transform.transforms if hasattr(t, "interpolation")]
    assert resizers, "no resampling step in the train pipeline"
    for step in resizers:
        assert step.interpolation in ("bicubic", cv2.INTER_CUBIC), step
        if hasattr(step, "area_for_downscale"):
            assert step.area_for_downscale == "image", step  # shrinking is antialiased


def test_shrinking_is_antialiased_everywhere():
    """A one-pixel checkerboard shrunk 3.5x is flat grey, not the moire a point sampler makes."""
    board = (np.indices((28, 28)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, 2)
    spec = resolve_input(timm.create_model("resnet18", pretrained=False), {"size": 8})
    spec = {**spec, "mean": [0.0] * 3, "std": [1.0] * 3}
    outputs = {
        "eval": eval_transform(spec)(image=board)["image"],
        "onnx": torch.from_numpy(preprocess(board, spec)),
        "device": DeviceAugment(spec)(torch.from_numpy(board[None]), train=False)[0],
    }
    for where, out in outputs.items():
        assert out.shape == (3, 8, 8), where
        assert (out - 0.5).abs().max() < 0.1, where  # cv2.resize INTER_CUBIC: 0.26 to 0.74


def test_onnx_preprocessing_imports_no_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any torch import now fails
        "import numpy as np\n"
        "from transferlab.inference.onnx_model import preprocess\n"
        f"spec = {json.dumps(resolve_input(timm.create_model('resnet18')))}\n"
        "print(preprocess(np.zeros((50, 70, 3), np.uint8), spec).shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "(3, 288, 288)"


def test_onnx_files_exported_before_test_sizes_evaluate_at_the_train_size(tmp_path: Path):
    """Metadata without test_* (older exports): preprocessing falls back to size/resize."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["probs"], axes=[2, 3], keepdims=0)],
        "mean",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    old = {"size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 0.8}
    old |= {"interpolation": "bilinear", "resize": 40}
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps({"classes": list("abc"), "input": old})
    onnx.save(model, tmp_path / "old.onnx")
    classifier = OnnxClassifier(tmp_path / "old.onnx")
    assert classifier.preprocess(np.zeros((60, 90, 3), np.uint8)).shape == (3, 32, 32)
    assert classifier.predict(np.zeros((60, 90, 3), np.uint8)).shape == (3,)
