"""Does Grad-CAM point at the garment? Share of CAM mass inside the garment mask on Fashion-MNIST.

    python docs/cam_garment_mass.py <run>/checkpoints/best.ckpt [--images 100]

For the first ``--images`` correctly classified test images: CAM for the true class, garment mask
= pixels > 0 of the original 28x28 image, taken through the run's own resize/crop (nearest) to
the CAM's size. Prints the mean share of CAM mass on the mask next to the mask's share of the
area (what a CAM that ignored the garment would score), writes docs/cam_fashion_mnist_<size>px.png/.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from omegaconf import OmegaConf

from transferlab.data.idx import read_idx
from transferlab.data.transforms import to_rgb
from transferlab.evaluation import figures
from transferlab.inference.predictor import Predictor

FMNIST = Path("/usr/share/datasets/fashion-mnist")
DOCS = Path(__file__).resolve().parent


def garment_masks(images: np.ndarray, spec: dict) -> np.ndarray:
    """Pixels > 0 of each 28x28 image, through the eval resize and centre crop (nearest)."""
    geometry = A.Compose(
        [
            A.SmallestMaxSize(max_size=spec["resize"], interpolation=cv2.INTER_NEAREST),
            A.CenterCrop(spec["size"], spec["size"]),
        ]
    )
    return np.stack([geometry(image=(x > 0).astype(np.uint8))["image"] for x in images]) > 0


def measure(predictor: Predictor, images: np.ndarray, labels: np.ndarray, wanted: int) -> dict:
    """CAMs (for the true class), masks and mass shares of the first ``wanted`` correctly
    classified images, plus overlays of the first 16 for the figure."""
    picked, cams, inputs = [], [], []
    for start in range(0, len(images), 64):
        batch = predictor.preprocess([to_rgb(x) for x in images[start : start + 64]])
        hit = np.flatnonzero(predictor.probabilities(batch).argmax(1) == labels[start : start + 64])
        hit = hit[: wanted - len(picked)]
        cams.append(predictor.cam(batch[hit], labels[start + hit]))
        inputs.append(batch[hit])
        picked += [int(i) for i in start + hit]
        if len(picked) >= wanted:
            break
    cam = np.concatenate(cams)
    mask = garment_masks(images[picked], predictor.input_spec)
    share = (cam * mask).sum(axis=(1, 2)) / np.maximum(cam.sum(axis=(1, 2)), 1e-12)
    overlays = predictor.cam_overlays(torch.cat(inputs)[:16], labels[picked[:16]])
    return {"indices": picked, "share": share, "area": mask.mean(axis=(1, 2)), "overlays": overlays}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt_path", type=Path)
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    predictor = Predictor.from_checkpoint(args.ckpt_path, device="cpu")
    images = read_idx(FMNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(FMNIST / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    found = measure(predictor, images, labels, args.images)
    share, area = found["share"], found["area"]
    summary = {
        "checkpoint": str(args.ckpt_path),
        "images": len(share),
        "cam_mass_on_garment": round(float(share.mean()), 4),
        "garment_area_share": round(float(area.mean()), 4),
        "images_with_most_mass_on_garment": round(float((share > 0.5).mean()), 4),
        "input": predictor.input_spec,
        "train_overrides": _train_overrides(args.ckpt_path),
    }
    captions = [
        f"{predictor.classes[labels[i]]}\nmass on garment {s:.2f}"
        for i, s in zip(found["indices"], share, strict=False)
    ]
    stem = DOCS / f"cam_fashion_mnist_{predictor.input_spec['size']}px"
    figures.image_grid(
        found["overlays"], captions[: len(found["overlays"])], stem.with_suffix(".png")
    )
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "input"}, indent=2))


def _train_overrides(ckpt_path: Path) -> list[str]:
    """How the run was trained (its command-line overrides), so the number can be reproduced."""
    path = ckpt_path.parent.parent / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []


if __name__ == "__main__":
    main()
