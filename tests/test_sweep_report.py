"""The sweep report from job folders written the way train.py writes them (.hydra + results.json)."""

from __future__ import annotations

from pathlib import Path
from statistics import mean, stdev

import pytest
import yaml

from transferlab.results import write_json
from transferlab.sweep.report import main, write_report
from transferlab.sweep.runs import load_sweep


def write_job(sweep: Path, num: int, overrides: dict[str, str], results: dict | None) -> None:
    """A job folder as Hydra and train.py leave it; ``results=None``: killed before results.json."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    lines = [f"{k}={v}" for k, v in overrides.items()]
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(lines))
    if results is not None:
        write_json(job / "results.json", results)


def ok_results(model: str, pretrained: bool, seed: int, acc: float, per_class: int | None = None):
    history = [{"epoch": e, "val/acc": acc * (e + 1) / 3} for e in range(3)]
    return {
        "model": model,
        "pretrained": pretrained,
        "seed": seed,
        "status": "ok",
        "train_per_class": per_class,
        "splits": {"train": 54000, "val": 6000, "test": 10000},
        "classes": [str(i) for i in range(10)],
        "test": {"test/acc": acc, "test/f1": acc - 0.01, "test/log_loss": 1.0 - acc},
        "train_seconds": 10.0 * seed,
        "images_per_second": 100.0 + seed,
        "history": history,
    }


@pytest.fixture
def backbone_sweep(tmp_path: Path) -> Path:
    """resnet18 x pretrained x 2 seeds, plus a NaN failure and a job killed mid-run."""
    sweep = tmp_path / "multirun" / "2026-11-23" / "10-00-00"
    accs = {(True, 1): 0.91, (True, 2): 0.93, (False, 1): 0.80, (False, 2): 0.84}
    for num, ((pretrained, seed), acc) in enumerate(accs.items()):
        over = {"model": "resnet18", "pretrained": str(pretrained).lower(), "seed": str(seed)}
        write_job(sweep, num, over, ok_results("resnet18", pretrained, seed, acc))
    nan = {"model": "resnet34", "pretrained": False, "seed": 1, "status": "failed"}
    nan["error"] = "FloatingPointError: loss became nan at global step 3 (epoch 0): lower lr"
    write_job(sweep, 4, {"model": "resnet34", "pretrained": "false", "seed": "1"}, nan)
    write_job(sweep, 5, {"model": "resnet34", "pretrained": "true", "seed": "1"}, None)
    return sweep


def table_row(report: str, *keys: str) -> list[str]:
    start = "| " + " | ".join(keys) + " |"
    line = next(x for x in report.splitlines() if x.startswith(start))
    return [c.strip() for c in line.strip("|").split("|")][len(keys) :]


def test_cells_show_mean_and_std_over_seeds(backbone_sweep: Path):
    report = write_report(backbone_sweep).read_text()
    runs, acc, f1, log_loss, train_s, speed = table_row(report, "resnet18", "true")
    assert runs == "2/2"
    assert acc == f"{mean([0.91, 0.93]):.4f} ± {stdev([0.91, 0.93]):.4f}"
    assert f1 == f"{mean([0.90, 0.92]):.4f} ± {stdev([0.90, 0.92]):.4f}"
    assert log_loss == f"{mean([0.09, 0.07]):.4f} ± {stdev([0.09, 0.07]):.4f}"
    assert train_s == "15.0 ± 7.1" and speed == "101.5 ± 0.7"
    assert table_row(report, "resnet18", "false")[1] == "0.8200 ± 0.0283"


def test_failed_and_unfinished_jobs_are_listed_with_their_error(backbone_sweep: Path):
    report = write_report(backbone_sweep).read_text()
    assert table_row(report, "resnet34", "false")[:2] == ["0/1", "-"]
    failures = report.split("## Failed jobs")[1]
    assert "| 4 | resnet34 | false | 1 | failed | FloatingPointError: loss became nan" in failures
    assert "| 5 | resnet34 | true | 1 | no results.json" in failures


def test_only_swept_keys_become_columns_and_seed_is_averaged(backbone_sweep: Path):
    sweep = load_sweep(backbone_sweep)
    assert sweep.swept == ["model", "pretrained", "seed"] and sweep.cells == ["model", "pretrained"]
    assert len(sweep.runs) == 6 and len(sweep.ok) == 4


def test_learning_curves_and_data_efficiency_plots(tmp_path: Path):
    sweep = tmp_path / "sweep"
    num = 0
    for per_class in (10, 100, None):
        for pretrained in (True, False):
            for seed in (1, 2):
                acc = (0.5 if per_class == 10 else 0.7 if per_class == 100 else 0.9) - 0.2 * (
                    not pretrained
                )
                over = {
                    "data.train_per_class": str(per_class).replace("None", "null"),
                    "pretrained": str(pretrained).lower(),
                    "seed": str(seed),
                }
                results = ok_results("efficientnet_lite0", pretrained, seed, acc, per_class)
                write_job(sweep, num, over, results)
                num += 1
    report = write_report(sweep).read_text()
    assert "![Data efficiency](data_efficiency.png)" in report
    assert "![Learning curves](learning_curves.png)" in report
    for png in ("data_efficiency.png", "learning_curves.png"):
        assert (sweep / png).read_bytes()[:4] == b"\x89PNG"
    assert load_sweep(sweep).ok["images_per_class"].max() == 5400  # 'all': 54000 / 10 classes
    assert table_row(report, "null", "false")[1] == "0.7000 ± 0.0000"  # equal seeds


def test_cli_writes_the_report_and_explains_a_wrong_folder(backbone_sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps headers in a narrow terminal
    assert main([str(backbone_sweep)]) == 0
    out = capsys.readouterr().out
    assert "test acc" in out and "report written to" in out
    assert (backbone_sweep / "report.md").is_file()
    assert main([str(backbone_sweep / "nope")]) == 2
    assert "no such sweep folder" in capsys.readouterr().err
