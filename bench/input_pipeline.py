"""Eval preprocessing against timm's own: mean |ours - timm| of the normalised tensors.

timm's reference is ``create_transform(**resolve_data_config(model=net, use_test_size=...))``
on scikit-image's photos. "cv2 bilinear" is the pipeline before ``data/resampling.py`` (OpenCV
bilinear resize to ``round(size / crop_pct)``, floor-centred crop), which knew no test size.

    PYTHONPATH=. python bench/input_pipeline.py
"""

from __future__ import annotations

import cv2
import numpy as np
import skimage.data
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

from bench.common import print_table
from transferlab.data.transforms import eval_transform, resolve_input
from transferlab.inference.onnx_model import preprocess

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket")
MODELS = ("tf_efficientnet_lite0", "resnet18")


def cv2_bilinear(image: np.ndarray, size: int, crop_pct: float, spec: dict) -> np.ndarray:
    """The earlier eval/ONNX preprocessing, kept here as the baseline."""
    h, w = image.shape[:2]
    scale = round(size / crop_pct) / min(h, w)
    image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    crop = image[top : top + size, left : left + size].astype(np.float32) / 255.0
    mean, std = np.asarray(spec["mean"], np.float32), np.asarray(spec["std"], np.float32)
    return ((crop - mean) / std).transpose(2, 0, 1)


def mad(got: np.ndarray | torch.Tensor, expected: torch.Tensor) -> str:
    got = torch.as_tensor(got)
    return f"{(got - expected).abs().mean():.5f}" if got.shape == expected.shape else "n/a"


def rows() -> list[list[str]]:
    photos = {name: getattr(skimage.data, name)() for name in PHOTOS}
    table = []
    for name in MODELS:
        net = timm.create_model(name, pretrained=False)
        refs = [resolve_data_config(model=net, use_test_size=test) for test in (False, True)]
        for ref in refs[:1] if refs[0] == refs[1] else refs:  # lite0 has no test size
            timm_eval = create_transform(**ref)
            size, crop_pct = ref["input_size"][-1], ref["crop_pct"]
            spec = resolve_input(net, {"test_size": size, "test_crop_pct": crop_pct})
            ours = eval_transform(spec)
            train = resolve_input(net)  # the old pipeline always ran at the train size
            for photo_name, photo in photos.items():
                expected = timm_eval(Image.fromarray(photo))
                table.append(
                    [
                        f"{name} {photo_name}",
                        f"{size}/{crop_pct} {ref['interpolation']}",
                        mad(cv2_bilinear(photo, train["size"], train["crop_pct"], train), expected),
                        mad(ours(image=photo)["image"], expected),
                        mad(preprocess(photo, spec), expected),
                    ]
                )
    return table


if __name__ == "__main__":
    print_table(
        "Eval preprocessing vs timm's: mean abs difference of normalised tensors",
        ["model photo", "timm eval", "cv2 bilinear (before)", "eval (after)", "ONNX (after)"],
        rows(),
    )
