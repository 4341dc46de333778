"""``hydra/launcher=gpus`` as a user runs it: a real ``train.py -m`` sweep over two GPU ids where
two jobs run at once, and no GPU ever has two jobs on it at the same time.

Without GPUs the ids are fake (CUDA_VISIBLE_DEVICES=0,1, as a 2-GPU machine shows them) and the
jobs train on the CPU; with GPUs the launcher's choice is the same code. Job 0 keeps its GPU
until job 2 has started, so the other worker takes jobs 1 and 2 meanwhile: a GPU picked from the
job number would put job 2 on GPU 0 beside job 0.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pytest

from tests.conftest import TINY, run_script

pytestmark = pytest.mark.slow


def test_concurrent_sweep_jobs_never_share_a_gpu(tmp_path: Path, idx_dir: Path, monkeypatch):
    sweep = tmp_path / "sweep"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    args = ["-m", *TINY, f"data.root={idx_dir}", "data.search_dirs=[]", "model=small_cnn"]
    args += ["pretrained=false", "trainer.limit_train_batches=1", "logger=none"]
    args += ["callbacks.progress_bar=null", "hydra/launcher=gpus", f"hydra.sweep.dir={sweep}"]
    args += ["+callbacks.device._target_=tests.run_probe.DeviceRecord"]
    args += ["+callbacks.device.path=${paths.output_dir}/device.json"]
    args += [f"+callbacks.device.hold_until={sweep}/2/device.json,null,null,null"]
    result = run_script("train.py", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    jobs = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/device.json")}
    assert sorted(jobs) == ["0", "1", "2", "3"]
    assert {job["gpu"] for job in jobs.values()} == {"0", "1"}
    at_once = 0
    for (a, job_a), (b, job_b) in combinations(sorted(jobs.items()), 2):
        overlap = job_a["start"] < job_b["end"] and job_b["start"] < job_a["end"]
        at_once += overlap
        if overlap:
            assert job_a["gpu"] != job_b["gpu"], f"jobs {a} and {b} ran at once on one GPU"
        if job_a["pid"] == job_b["pid"]:  # a worker keeps the GPU it claimed
            assert job_a["gpu"] == job_b["gpu"]
    assert jobs["0"]["end"] > jobs["2"]["start"], "job 2 did not start while job 0 held its GPU"
    assert at_once >= 2  # job 0 beside jobs 1 and 2
    claims = sorted(p.name for p in (sweep / ".gpu_claims").iterdir())
    assert claims == ["gpu-0.lock", "gpu-1.lock"]
