"""What the benchmarks share: where the configs are, and how a result table is printed."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from transferlab.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def machine() -> str:
    """One line naming the hardware a table was measured on."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() says only 'x86_64')."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_train(
    name: str, overrides: list[str], work: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """``python train.py`` as a user runs it, in ``work/name`` (its log in ``work/name.log``):
    its results.json plus the command's wall seconds and the peak resident memory of its largest
    process (``ru_maxrss`` of the child and the loader workers it reaped, in MB)."""
    run_dir = work / name
    seconds, usage = train_command(name, [*overrides, f"hydra.run.dir={run_dir}"], work, env)
    results = json.loads((run_dir / "results.json").read_text())
    return {**results, "seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def run_sweep(name: str, overrides: list[str], work: Path) -> dict[str, Any]:
    """``python train.py -m ...`` in ``work/name``: one command, whose jobs Hydra's basic launcher
    runs in turn in its process. The command's wall seconds and each job's results.json."""
    sweep_dir = work / name
    seconds, _ = train_command(name, ["-m", *overrides, f"hydra.sweep.dir={sweep_dir}"], work)
    jobs = sorted(sweep_dir.glob("*/results.json"), key=lambda p: int(p.parent.name))
    return {"seconds": round(seconds, 1), "jobs": [json.loads(p.read_text()) for p in jobs]}


def train_command(
    name: str, args: list[str], work: Path, env: dict[str, str] | None = None
) -> tuple[float, Any]:
    """Run ``python train.py <args>`` from ``work``, its output in ``work/name.log``: its wall
    seconds and resource usage; a failure stops the benchmark with the log's tail."""
    started = time.perf_counter()
    with open(work / f"{name}.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *args],
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if (code := os.waitstatus_to_exitcode(status)) != 0:
        tail = (work / f"{name}.log").read_text()[-3000:]
        raise SystemExit(f"{name} failed (exit {code}):\n{tail}")
    return seconds, usage


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A rich table on the terminal plus the same rows as markdown, ready for RESULTS.md."""
    table = Table(title=f"{title}\n{machine()}")
    for column in columns:
        table.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        table.add_row(*row)
    console = Console(width=max(100, 16 * len(columns)))
    console.print(table)
    right = range(1, len(columns))
    console.print(markdown_table(columns, rows, right=right), highlight=False, soft_wrap=True)


def compose_bench(overrides: list[str]) -> DictConfig:
    """conf/train.yaml with the benchmark's overrides, outputs in /tmp, no experiment preset."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        base = [
            "pretrained=false",
            "experiment=none",
            "paths.output_dir=/tmp/transferlab-bench",
            "paths.data_dir=/tmp/transferlab-bench/data",
        ]
        return compose("train", overrides=[*base, *overrides])


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer reads finished steps (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def as_trained(net: torch.nn.Module, cfg: DictConfig, device: torch.device) -> torch.nn.Module:
    """``net`` on ``device`` in train mode and the memory format the config's callbacks give it
    (channels_last by default), so hand-written loops run what train.py runs."""
    net = net.to(device).train()
    targets = {c.get("_target_") for c in (cfg.get("callbacks") or {}).values() if c}
    if "transferlab.training.acceleration.ChannelsLast" in targets:
        net = net.to(memory_format=torch.channels_last)
    return net


def merge_by(key: str, kept: list[dict], rows: list[dict]) -> list[dict]:
    """``rows`` replace the ``kept`` rows with the same ``key``; the others stay, in order, so
    a benchmark can rerun some rows and keep the rest of its results file."""
    new = {r[key] for r in rows}
    return [r for r in kept if r[key] not in new] + rows
