"""Checkpoint -> ONNX with everything a deployment needs, checked against PyTorch on real images."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from omegaconf import DictConfig
from torch import nn

from transferlab import __version__
from transferlab.inference.onnx_model import METADATA_KEY, OnnxClassifier
from transferlab.training.checkpoint import load_run

log = logging.getLogger(__name__)


class ExportParityError(RuntimeError):
    """onnxruntime and PyTorch disagree beyond the tolerance: the ONNX file must not be shipped."""


def export_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Export ``cfg.ckpt_path`` to ``<output_dir>/model.onnx`` + labels.txt, then check parity."""
    run = load_run(cfg.ckpt_path, cfg.get("overrides"), cfg.paths)
    metadata = {
        "classes": run.classes,
        "input": run.input,
        "backbone": run.cfg.model.name,
        "checkpoint": str(run.ckpt_path),
        "transferlab_version": __version__,
        "temperature": run.temperature,  # divided into the logits inside the graph
    }
    out = Path(cfg.output_dir)
    net = run.module.net
    images = real_test_batch(run.experiment().datamodule, cfg.parity_images)
    # written under a partial name and renamed only once parity holds: a model.onnx is a good one
    staged = export_onnx(net, metadata, out / "model.partial.onnx")
    try:
        diff = check_parity(net, staged, images, cfg.tolerance, run.temperature)
    except ExportParityError:
        staged.unlink(missing_ok=True)
        raise
    onnx_path = staged.replace(out / "model.onnx")
    (out / "labels.txt").write_text("\n".join(run.classes) + "\n")
    report = {"onnx": str(onnx_path), "parity_max_abs_diff": diff, "parity_images": len(images)}
    (out / "export.json").write_text(json.dumps({**report, **metadata}, indent=2) + "\n")
    log.info(
        "exported %s (max |p_onnx - p_torch| = %.2e on %d test images)",
        onnx_path,
        diff,
        len(images),
    )
    return report


def export_onnx(net: nn.Module, metadata: dict[str, Any], path: Path) -> Path:
    """Write net + softmax(logits / T) with a dynamic batch axis; metadata rides in the file's
    properties (T is ``metadata["temperature"]``, 1 when absent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = Temperature(metadata.get("temperature", 1.0))
    model = nn.Sequential(net, scale, nn.Softmax(dim=1)).eval()
    size = metadata["input"].get("test_size", metadata["input"]["size"])
    example = torch.zeros(2, 3, size, size)
    program = torch.onnx.export(
        model,
        (example,),
        input_names=["image"],
        output_names=["probs"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        dynamo=True,
        verbose=False,
    )
    program.save(str(path))
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(proto, str(path))
    return path


class Temperature(nn.Module):
    """Logits / T, as a graph node: the torch-free deployment needs no calibration code."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature


def real_test_batch(datamodule: Any, count: int) -> torch.Tensor:
    """Up to ``count`` preprocessed images from the run's test split (real data, not noise)."""
    datamodule.setup("test")
    dataset = datamodule.test_set  # not the loader's: an on-device loader has no .dataset
    return torch.stack([dataset[i][0] for i in range(min(count, len(dataset)))])


def check_parity(
    net: nn.Module,
    onnx_path: Path,
    images: torch.Tensor,
    tolerance: float,
    temperature: float = 1.0,
) -> float:
    """Max abs difference of class probabilities between onnxruntime and PyTorch; raise if too big."""
    with torch.no_grad():
        expected = (net.eval()(images).float() / temperature).softmax(dim=1).numpy()
    got = OnnxClassifier(onnx_path).predict_batch(images.numpy())
    diff = float(np.abs(got - expected).max())
    if not diff < tolerance:
        raise ExportParityError(
            f"{onnx_path}: onnxruntime and PyTorch probabilities differ by {diff:.2e} "
            f"(tolerance {tolerance:.0e}); do not deploy this file"
        )
    return diff
