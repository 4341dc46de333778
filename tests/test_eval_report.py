"""eval.py as a user runs it on a real tiny run: every artefact written, and all of them agree."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from tests.conftest import FMNIST_DIR, TINY, compose_train, run_script
from transferlab.data.idx import read_idx
from transferlab.data.transforms import to_rgb
from transferlab.evaluation.evaluate import loader_probabilities, unknown_threshold
from transferlab.inference.predictor import Predictor
from transferlab.training.build import build_experiment
from transferlab.training.checkpoint import load_run
from transferlab.unknown import UNKNOWN, selective_summary, threshold_for_coverage

pytestmark = pytest.mark.slow
ARTEFACTS = (
    "eval_results.json", "predictions.csv", "per_class.csv", "per_class.md",
    "confusion_matrix.png", "roc.png", "most_confident_wrong.png", "cam_00.png", "cam_01.png",
)  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "out"
    args = [f"ckpt_path={tiny_run}/checkpoints/best.ckpt", f"hydra.run.dir={out}"]
    args += ["cam.num_images=6", "cam.per_grid=4", "report.num_wrong=4"]
    result = run_script("eval.py", args, cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_eval_writes_every_artefact(evaluated: Path):
    for name in ARTEFACTS:
        assert (evaluated / name).is_file(), name
    for png in evaluated.glob("*.png"):
        with Image.open(png) as image:
            assert image.width > 100 and image.height > 100, png.name
    assert not (evaluated / "cam_02.png").exists()  # 6 images, 4 per grid


def test_artefacts_agree_with_eval_results(evaluated: Path):
    results = json.loads((evaluated / "eval_results.json").read_text())
    rows = read_rows(evaluated / "predictions.csv")
    classes = results["classes"]
    matrix = np.array(results["confusion_matrix"])
    assert matrix.sum() == results["num_test"] == len(rows) == 64  # 2 test batches of 32
    accuracy = np.mean([r["label"] == r["prediction"] for r in rows])
    assert accuracy == pytest.approx(results["test"]["test/acc"], abs=1e-6)
    assert np.trace(matrix) == sum(r["label"] == r["prediction"] for r in rows)
    probs = np.array([[float(r[f"prob_{k}"]) for k in classes] for r in rows])
    assert probs.sum(axis=1) == pytest.approx(np.ones(len(rows)), abs=1e-4)
    assert [float(r["confidence"]) for r in rows] == pytest.approx(probs.max(axis=1), abs=1e-6)
    for row in read_rows(evaluated / "per_class.csv"):
        k = classes.index(row["class"])
        recall = matrix[k, k] / matrix[k].sum() if matrix[k].sum() else 0.0
        assert float(row["recall"]) == pytest.approx(recall, abs=1e-5)
        assert int(row["support"]) == matrix[k].sum()
        assert results["per_class"][row["class"]]["f1"] == pytest.approx(float(row["f1"]))
    assert set(results["roc_auc"]) == set(classes)


def test_unknown_rejection_is_reported_consistently(evaluated: Path):
    results = json.loads((evaluated / "eval_results.json").read_text())
    unknown = results["unknown"]
    rows = read_rows(evaluated / "predictions.csv")
    assert unknown["threshold"] == 0.6 and unknown["chosen_on"] == "config"
    kept = [r for r in rows if r["decision"] != UNKNOWN]
    assert all(float(r["confidence"]) > 0.6 for r in kept)
    assert unknown["coverage"] == pytest.approx(len(kept) / len(rows))
    assert unknown["accepted"] + unknown["rejected"] == len(rows)
    confidence = np.array([float(r["confidence"]) for r in rows])
    correct = np.array([r["label"] == r["prediction"] for r in rows])
    assert selective_summary(confidence, correct, 1.0)["coverage"] == 0.0
    assert selective_summary(confidence, correct, 0.0)["coverage"] == 1.0


def test_predictor_rejects_all_at_1_and_none_at_0_and_matches_eval(tiny_run, evaluated):
    images = [to_rgb(x) for x in read_idx(FMNIST_DIR / "t10k-images-idx3-ubyte.gz")[:8]]
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    everything = Predictor.from_checkpoint(ckpt, threshold=0.0, device="cpu").predict(images)
    nothing = Predictor.from_checkpoint(ckpt, threshold=1.0, device="cpu").predict(images)
    assert all(p.label != UNKNOWN for p in everything)
    assert all(p.label == UNKNOWN for p in nothing)
    classes = json.loads((evaluated / "eval_results.json").read_text())["classes"]
    rows = read_rows(evaluated / "predictions.csv")[:8]
    from_eval = np.array([[float(r[f"prob_{k}"]) for k in classes] for r in rows])
    assert np.stack([p.probabilities for p in everything]) == pytest.approx(from_eval, abs=1e-4)


def test_wandb_offline_run_receives_the_figures(evaluated: Path):
    runs = list((evaluated / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "the run's logger was wandb, so eval logs there too"
    media = {p.name.split("_")[0] for p in runs[0].glob("files/media/images/eval/*.png")}
    assert {"confusion", "roc", "most", "cam"} <= media
    assert (runs[0] / "files" / "predictions.csv").is_file()


def test_threshold_for_coverage_keeps_that_share():
    confidence = np.linspace(0.05, 1.0, 200)
    for coverage in (0.5, 0.9, 1.0):
        kept = confidence > threshold_for_coverage(confidence, coverage)
        assert kept.mean() == pytest.approx(coverage, abs=0.01)
    with pytest.raises(ValueError, match=r"unknown\.coverage"):
        threshold_for_coverage(confidence, 0.0)


def test_unknown_threshold_chosen_on_validation_for_a_coverage(tiny_run: Path, idx_dir: Path):
    cfg = compose_train([*TINY, "model=resnet18", f"data.root={idx_dir}", "data.search_dirs=[]"])
    exp = build_experiment(cfg, pretrained=False)
    exp.datamodule.setup()
    net = load_run(tiny_run / "checkpoints" / "best.ckpt").module.net
    settings = OmegaConf.create({"threshold": 0.6, "coverage": 0.5})
    threshold, chosen_on = unknown_threshold(settings, net, exp.datamodule)
    probs, _ = loader_probabilities(net, exp.datamodule.val_dataloader())
    assert chosen_on == "val coverage 0.5"
    assert (probs.max(axis=1) > threshold).mean() == pytest.approx(0.5, abs=0.05)
