"""What the benchmarks share: where the configs are, and how a result table is printed."""

from __future__ import annotations

import platform
from pathlib import Path

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
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


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
