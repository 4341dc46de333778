"""Sweeps through a real scheduler: the one-node SLURM cluster of scripts/slurm_up.sh, Hydra's
submitit launcher submitting train.py jobs as a SLURM job array, real training in each job.

One 2 x 2 sweep serves every test. (efficientnet_lite0, scratch), among the first to start, is
cancelled with scancel once it has written last.ckpt; (small_cnn, pretrained) fails while
building the model (no ImageNet weights: a bad option value). Then the same sweep is rerun with
resume=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, real_part_missing, requires_fmnist

pytestmark = [pytest.mark.slurm, pytest.mark.slow, requires_fmnist]

SLURM_DIR = Path(os.environ.get("TRANSFERLAB_SLURM_DIR", "/tmp/transferlab-slurm"))
GRID = ["model=efficientnet_lite0,small_cnn", "pretrained=false,true"]
# The test cluster's node has no GPUs and a few CPUs: one CPU and 1 GB a job.
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=30",  # minutes: a busy 2-core machine took 8 for one job
]
# 3 epochs and last.ckpt after every step: the cancelled job is still training when scancel
# reaches it, and has a checkpoint to resume from.
BUDGET = [*TINY, "trainer.max_epochs=3", "callbacks.last_checkpoint.every_n_train_steps=1"]
CANCELLED, OK, FAILS = "0", ("1", "2"), "3"  # job numbers: Hydra's order of the grid


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    """The environment of a process that talks to the cluster (SLURM_CONF), once it answers."""
    conf = os.environ.get("SLURM_CONF") or str(SLURM_DIR / "slurm.conf")
    if not shutil.which("sbatch") or not Path(conf).is_file():
        real_part_missing(f"no SLURM cluster ({conf}); start one with bash scripts/slurm_up.sh")
    env = {**os.environ, "SLURM_CONF": conf, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    nodes = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
    if nodes.returncode != 0 or not {"idle", "mix", "alloc"} & set(nodes.stdout.split()):
        reason = nodes.stderr.strip() or f"no node up (states: {nodes.stdout.split()})"
        real_part_missing(f"SLURM ({conf}) does not answer: {reason}; run bash scripts/slurm_up.sh")
    return env


def sweep(sweep_dir: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.Popen, Path]:
    """Start ``train.py -m`` on the grid through the SLURM launcher, in the background."""
    args = ["-m", *GRID, *BUDGET, *LAUNCHER, f"hydra.sweep.dir={sweep_dir}", *extra]
    log = sweep_dir.parent / f"{sweep_dir.name}{'-'.join(['', *extra])}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *args],
            cwd=sweep_dir.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def finish(proc: subprocess.Popen, log: Path, env: dict[str, str], timeout: float = 600) -> None:
    """Wait for the sweep to end; one that hangs, or a test that fails first, ends it and its jobs."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the sweep did not end in {timeout} s:\n{log.read_text()[-3000:]}")
    finally:
        stop(proc, env)
    assert proc.returncode == 0, log.read_text()[-3000:]


def stop(proc: subprocess.Popen, env: dict[str, str]) -> None:
    """End a sweep that is still running, and its SLURM jobs (named train, after train.py)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        subprocess.run(["scancel", "--full", "--name=train"], env=env, check=False)


def results_of(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/results.json")}


def slurm_state(job_id: str, env: dict[str, str], timeout: float = 120) -> str:
    """The job's final state as slurmctld remembers it (for MinJobAge, an hour, after its end).
    A job whose result submitit already read may still be exiting: wait for it to end."""
    deadline = time.monotonic() + timeout
    while True:
        shown = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True)
        state = re.search(r"JobState=(\w+)", shown.stdout.decode())[1]
        if state not in ("PENDING", "RUNNING", "COMPLETING") or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def cancel_when_training(sweep_dir: Path, job: str, env: dict[str, str], timeout: float = 300):
    """scancel the sweep's job ``job`` once its last.ckpt exists (it has trained a step)."""
    deadline = time.monotonic() + timeout
    while not (sweep_dir / job / "checkpoints" / "last.ckpt").is_file():
        assert time.monotonic() < deadline, f"job {job} wrote no last.ckpt in {timeout} s"
        time.sleep(0.1)
    (array_task,) = [p.name for p in (sweep_dir / ".submitit").glob(f"*_{job}")]
    subprocess.run(["scancel", array_task], env=env, check=True)
    return array_task


@pytest.fixture(scope="module")
def first(tmp_path_factory, slurm_env) -> dict:
    """The sweep with one job failing and one cancelled: its results and report as they were."""
    sweep_dir = tmp_path_factory.mktemp("slurm") / "sweep"
    sweep_dir.mkdir()
    proc, log = sweep(sweep_dir, slurm_env)
    try:
        cancelled = cancel_when_training(sweep_dir, CANCELLED, slurm_env)
    except BaseException:
        stop(proc, slurm_env)
        raise
    finish(proc, log, slurm_env)
    return {
        "dir": sweep_dir,
        "results": results_of(sweep_dir),
        "report": (sweep_dir / "report.md").read_text(),
        "cancelled": cancelled,
    }


def test_four_jobs_run_as_slurm_jobs_and_the_report_is_written(first, slurm_env):
    results = first["results"]
    assert sorted(results) == ["0", "1", "2", "3"], first["report"]
    ids = {num: r["cluster_job"]["job_id"] for num, r in results.items()}
    assert all(r["cluster_job"]["cluster"] == "slurm" for r in results.values())
    (array,) = {i.split("_")[0] for i in ids.values()}  # one job array, a task per job
    assert ids == {n: f"{array}_{n}" for n in "0123"}
    states = {num: slurm_state(job_id, slurm_env) for num, job_id in ids.items()}
    assert states == {"0": "CANCELLED", "1": "COMPLETED", "2": "COMPLETED", "3": "COMPLETED"}
    assert first["cancelled"] == ids[CANCELLED]
    assert [results[n]["status"] for n in OK] == ["ok", "ok"]  # the others went on
    assert "4 jobs, 2 ok, 2 failed or unfinished" in first["report"]


def test_failed_and_cancelled_jobs_are_listed_with_reason_and_log_links(first):
    results, report = first["results"], first["report"]
    assert results[FAILS]["error"].startswith("WeightsNotFoundError: no ImageNet weights")
    assert results[CANCELLED]["error"].startswith("Terminated: SIGTERM while training")
    assert results[CANCELLED]["last_checkpoint"].endswith("last.ckpt")
    failed = report.split("## Failed jobs")[1]
    rows = dict(re.findall(r"^\| (\d+) \|(.*)$", failed, re.M))  # job number -> rest of the row
    assert sorted(rows) == sorted([CANCELLED, FAILS])
    assert "WeightsNotFoundError" in rows[FAILS] and "SIGTERM while training" in rows[CANCELLED]
    links = dict(re.findall(r"\[(stdout|stderr)\]\(([^)]+)\)", rows[FAILS]))
    assert set(links) == {"stdout", "stderr"}
    stderr = (first["dir"] / links["stderr"]).read_text()  # the link resolves from report.md
    assert "error: no ImageNet weights for 'transferlab_smallcnn'" in stderr
    assert "Starting with JobEnvironment" in (first["dir"] / links["stdout"]).read_text()


def test_rerun_with_resume_runs_only_what_did_not_finish(first, slurm_env):
    sweep_dir = first["dir"]
    finished = {n: (sweep_dir / n / "results.json").read_bytes() for n in OK}
    finish(*sweep(sweep_dir, slurm_env, "resume=true"), slurm_env)
    results = results_of(sweep_dir)
    assert {n: (sweep_dir / n / "results.json").read_bytes() for n in OK} == finished
    resumed = results[CANCELLED]
    assert resumed["status"] == "ok" and resumed["epochs"] == 3
    assert resumed["cluster_job"]["job_id"] != first["results"][CANCELLED]["cluster_job"]["job_id"]
    log = (sweep_dir / CANCELLED / "train.log").read_text()
    assert f"resuming from {sweep_dir / CANCELLED / 'checkpoints' / 'last.ckpt'}" in log
    assert results[FAILS]["status"] == "failed"  # still a bad option value
    assert "4 jobs, 3 ok, 1 failed or unfinished" in (sweep_dir / "report.md").read_text()
