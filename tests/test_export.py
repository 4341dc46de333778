"""ONNX export: parity with PyTorch on real test images, metadata inside, torch-free prediction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, requires_fmnist, run_script, tiny_checkpoint

pytestmark = [pytest.mark.slow, requires_fmnist]


@pytest.fixture(scope="module", params=["resnet18", "efficientnet_b0"])
def exported(request, tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp(request.param)
    ckpt = tiny_checkpoint(tmp, request.param)
    out = tmp / "export"
    result = run_script("export.py", [f"ckpt_path={ckpt}", f"hydra.run.dir={out}"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads((out / "export.json").read_text())


def test_onnx_matches_pytorch_on_real_images(exported):
    out, report = exported
    assert report["parity_images"] == 32
    assert report["parity_max_abs_diff"] < 1e-4
    assert (out / "labels.txt").read_text().splitlines()[1] == "Trouser"


def test_metadata_travels_inside_the_onnx_file(exported):
    from transferlab.inference.onnx_model import OnnxClassifier

    out, report = exported
    model = OnnxClassifier(out / "model.onnx")
    assert model.classes[0] == "T-shirt/top" and len(model.classes) == 10
    assert model.temperature == report["temperature"] != 1.0  # train.py fitted it; in the graph
    assert model.input["size"] == 32
    batch = np.zeros((5, 3, 32, 32), np.float32)
    probs = model.predict_batch(batch)  # dynamic batch axis
    assert probs.shape == (5, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_deploy_prediction_runs_without_torch(exported, tmp_path: Path):
    out, _ = exported
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(photos / "a.JPG")
    (photos / "broken.jpg").write_text("not an image")
    csv_path = tmp_path / "preds.csv"
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any torch import now fails
        "from transferlab.inference.onnx_predict import main\n"
        f"raise SystemExit(main([{str(out / 'model.onnx')!r}, {str(photos)!r}, '--output', {str(csv_path)!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "path,prediction,confidence,top3,error"
    assert len(lines) == 3
    assert "broken.jpg" in result.stderr and "not an image" in result.stderr


def test_parity_failure_is_loud(exported):
    import torch

    from transferlab.inference.export import ExportParityError, check_parity

    out, _ = exported
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(ExportParityError, match="do not deploy"):
        check_parity(other, out / "model.onnx", torch.randn(4, 3, 32, 32), 1e-4)


def test_onnx_cli_and_predictor_decide_alike_at_the_threshold(exported, tmp_path: Path):
    """One unknown rule: a confidence exactly at the threshold is 'unknown' for both (> wins)."""
    from transferlab.data.images import read_image
    from transferlab.inference.onnx_model import OnnxClassifier
    from transferlab.inference.onnx_predict import predict_folder
    from transferlab.inference.predictor import Predictor
    from transferlab.unknown import UNKNOWN

    out, report = exported
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(photo)
    onnx_conf = float(OnnxClassifier(out / "model.onnx").predict(read_image(photo)).max())
    [row] = predict_folder(OnnxClassifier(out / "model.onnx"), photo, threshold=onnx_conf)
    assert row["prediction"] == UNKNOWN
    [row] = predict_folder(OnnxClassifier(out / "model.onnx"), photo, threshold=onnx_conf - 1e-6)
    assert row["prediction"] != UNKNOWN
    predictor = Predictor.from_checkpoint(report["checkpoint"], device="cpu")
    probs = predictor.probabilities(predictor.preprocess([read_image(photo)]))
    predictor.threshold = float(probs.max())
    assert predictor.decide(probs)[0].label == UNKNOWN
    predictor.threshold = float(probs.max()) - 1e-6
    assert predictor.decide(probs)[0].label != UNKNOWN
