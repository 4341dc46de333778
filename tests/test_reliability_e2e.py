"""Runs survive kill -9, interrupted sweeps, NaN losses and a broken W&B: train.py as a user runs
it, in real subprocesses on tiny real IDX files."""

from __future__ import annotations

import http.server
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, TINY, compose_train, run_script
from transferlab.training.run import train

pytestmark = pytest.mark.slow


def tiny(idx_dir: Path, *extra: str) -> list[str]:
    """TINY on the idx_dir fixture with the scratch CNN: seconds per run."""
    data = [f"data.root={idx_dir}", "data.search_dirs=[]", "data.num_workers=0"]
    return [
        *TINY,
        *data,
        "model=small_cnn",
        "pretrained=false",
        "callbacks.progress_bar=null",
        *extra,
    ]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_when(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """SIGKILL ``proc`` as soon as ``path`` exists; fail if it ended by itself first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"{path} never appeared: the run ended with {proc.returncode}"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout}s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_killed_run_continues_from_its_mid_epoch_checkpoint(tmp_path: Path, idx_dir, monkeypatch):
    run_dir = tmp_path / "run"
    # 180 training images in batches of 4: 45 steps an epoch, last.ckpt every 3 steps
    args = tiny(idx_dir, "data.train_per_class=null", "data.batch_size=4", "trainer.max_epochs=2")
    args += ["callbacks.last_checkpoint.every_n_train_steps=3", "logger=wandb"]
    command = [*args, f"hydra.run.dir={run_dir}", "resume=true"]  # one command for both attempts
    monkeypatch.setenv("WANDB_MODE", "offline")

    kill_when(run_dir / "checkpoints" / "last.ckpt", start(command, tmp_path))
    killed_at = load(run_dir / "checkpoints" / "last.ckpt")
    assert killed_at["epoch"] == 0 and 0 < killed_at["global_step"] < 45, "not mid-epoch"
    assert not (run_dir / "results.json").exists()

    rerun = run_script("train.py", command, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    output = rerun.stdout + rerun.stderr
    assert f"Restoring states from the checkpoint path at {run_dir}/checkpoints/last.ckpt" in output
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "ok" and results["epochs"] == 2
    assert [row["epoch"] for row in results["history"]] == [0, 1]
    assert load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 90  # no step twice

    run_id = (run_dir / "wandb" / "run_id").read_text().strip()
    attempts = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2 and all(p.name.endswith(f"-{run_id}") for p in attempts)

    reference = train(compose_train(args, output_dir=tmp_path / "uninterrupted"))
    assert results.keys() == reference.keys()
    assert [row.keys() for row in results["history"]] == [r.keys() for r in reference["history"]]


def test_restarted_sweep_skips_the_jobs_that_finished(tmp_path: Path, idx_dir: Path):
    sweep = tmp_path / "sweep"
    command = ["-m", "seed=1,2", *tiny(idx_dir), f"hydra.sweep.dir={sweep}", "skip_done=true"]
    kill_when(sweep / "0" / "results.json", start(command, tmp_path))
    assert not (sweep / "1" / "results.json").exists(), "job 1 finished before the kill"
    first = (sweep / "0" / "results.json").read_text()
    first_mtime = (sweep / "0" / "results.json").stat().st_mtime_ns

    restart = run_script("train.py", command, cwd=tmp_path)
    assert restart.returncode == 0, restart.stderr[-3000:]
    output = restart.stdout + restart.stderr
    assert f"{sweep}/0 already holds an ok results.json: not training again" in output
    assert f"{sweep}/1 already holds" not in output
    assert (sweep / "0" / "results.json").read_text() == first
    assert (sweep / "0" / "results.json").stat().st_mtime_ns == first_mtime
    assert json.loads((sweep / "1" / "results.json").read_text())["status"] == "ok"


def test_nan_loss_stops_naming_the_step_and_keeps_good_checkpoints(tmp_path: Path, idx_dir: Path):
    run_dir = tmp_path / "run"
    # lr x 1e36 after epoch 0: one step of epoch 1 and the next loss overflows
    args = tiny(idx_dir, "trainer.max_epochs=2", "scheduler=exponential", "scheduler.gamma=1e36")
    args += ["callbacks.last_checkpoint.every_n_train_steps=1", f"hydra.run.dir={run_dir}"]
    result = run_script("train.py", args, cwd=tmp_path)
    assert result.returncode != 0
    stopped = re.search(
        r"(loss became (nan|inf)|weights became non-finite) (at|by) global step (\d+)",
        result.stderr,
    )
    assert stopped, result.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and stopped.group(0) in results["error"]
    assert results["last_checkpoint"] == str(run_dir / "checkpoints" / "last.ckpt")
    for name in ("last.ckpt", "best.ckpt"):
        checkpoint = load(run_dir / "checkpoints" / name)
        assert checkpoint["global_step"] < int(stopped.group(4))  # not the weights that failed
        assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values()), name


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_wandb_with_bad_key_falls_back_and_says_so_once(
    tmp_path: Path, idx_dir: Path, monkeypatch
):
    run_dir = tmp_path / "run"
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    result = run_script(
        "train.py", tiny(idx_dir, "logger=wandb", f"hydra.run.dir={run_dir}"), tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir / "results.json").read_text())["status"] == "ok"
    assert (result.stdout + result.stderr).count("W&B offline") == 1
    assert list((run_dir / "wandb").glob("offline-run-*/*.wandb"))


class RejectingWandb(http.server.BaseHTTPRequestHandler):
    """A W&B server that refuses every API key, like api.wandb.ai with a revoked one."""

    def do_POST(self) -> None:
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errors": [{"message": "invalid api key"}]}')

    do_GET = do_POST

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(params=["own", "shared"])
def wandb_service(request, monkeypatch):
    """The W&B service train.py talks to: its own, or one shared by several processes
    (`wandb beta core start`, named by WANDB_SERVICE), which outlives a failed run."""
    monkeypatch.delenv("WANDB_SERVICE", raising=False)  # not one an earlier test started
    if request.param == "own":
        yield request.param
        return
    wandb_cli = [sys.executable, "-m", "wandb", "beta", "core"]
    start = subprocess.run(
        [*wandb_cli, "start", "--idle-timeout", "2m"], capture_output=True, text=True, check=True
    )
    token = start.stdout.strip().splitlines()[-1]
    monkeypatch.setenv("WANDB_SERVICE", token)
    yield request.param
    subprocess.run([*wandb_cli, "stop"], capture_output=True, check=False)


def test_wandb_rejecting_the_key_falls_back_offline_and_says_so_once(
    tmp_path: Path, idx_dir: Path, monkeypatch, wandb_service: str
):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RejectingWandb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_dir = tmp_path / "run"
    try:
        result = run_script(
            "train.py", tiny(idx_dir, "logger=wandb", f"hydra.run.dir={run_dir}"), tmp_path
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir / "results.json").read_text())["status"] == "ok"
    output = result.stdout + result.stderr
    assert output.count("W&B online failed") == 1 and "invalid api key" in output
    assert "W&B offline" not in output and "W&B offline failed" not in output
    run_id = (run_dir / "wandb" / "run_id").read_text().strip()
    assert list((run_dir / "wandb").glob(f"offline-run-*-{run_id}/*.wandb"))
