"""bench/full_data.py end to end at tiny sizes: real train.py runs with the TestClock callback,
the JSON rows the bench keeps, and the time-to-accuracy plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, requires_fmnist, run_script


@pytest.mark.slow
@requires_fmnist
def test_full_data_row_records_a_time_to_accuracy_curve(tmp_path: Path):
    results, plot = tmp_path / "results", tmp_path / "plot.png"
    args = ["rows", "--quick", "--only", "small_cnn_scratch", "--results", str(results)]
    run = run_script(
        "bench/full_data.py",
        # 31 steps of ~50 ms: a few clock points before the final one, each a 10k-image test pass
        [
            *args,
            "--plot",
            str(plot),
            "data.train_per_class=200",
            "callbacks.test_clock.every_seconds=0.4",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},  # as documented: PYTHONPATH=. python bench/...
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (row,) = json.loads((results / "full_data.json").read_text())
    assert row["name"] == "small_cnn_scratch" and row["pretrained"] is False
    assert row["splits"]["test"] == 10_000  # the whole official test set
    for key in ("test_acc", "minutes", "images_per_second", "peak_rss_mb", "date", "machine"):
        assert row[key], key
    assert 200 < row["peak_rss_mb"] < 6_000
    curve = row["curve"]
    assert len(curve) >= 2, curve  # points every 0.4 s of training, then the final weights
    seconds = [p["seconds"] for p in curve]
    assert seconds == sorted(seconds) and len(set(seconds)) == len(seconds)
    assert all(0.0 <= p["test_acc"] <= 1.0 for p in curve)
    # the clock's test passes are no training time: results.json's train time (which also leaves
    # validation out) stays within the clock's own seconds, though the passes took longer
    assert sum(p["eval_seconds"] for p in curve[:-1]) > curve[-1]["seconds"]
    assert row["train_minutes"] * 60 <= curve[-1]["seconds"] + 0.6  # train_minutes: 2 decimals
    # One epoch: best.ckpt holds the final weights, so the clock's last point, scored by the
    # callback's own pass, must equal the Trainer's test of best.ckpt.
    assert curve[-1]["test_acc"] == pytest.approx(row["test_acc"], abs=1e-4)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "small_cnn_scratch" in run.stdout and "| row |" in run.stdout
