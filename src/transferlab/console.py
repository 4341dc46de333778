"""What a person sees in the terminal: the config as a tree, the test metrics as a table."""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree

FIRST = ("data", "model", "pretrained", "augment", "optimizer", "scheduler", "trainer")


def print_config_tree(cfg: DictConfig, console: Console | None = None) -> None:
    """One branch per config group, the experiment's main choices first."""
    tree = Tree("config", guide_style="dim")
    keys = [k for k in FIRST if k in cfg] + [k for k in cfg if k not in FIRST]
    for key in keys:
        value = cfg[key]
        text = (
            OmegaConf.to_yaml(value, resolve=False) if isinstance(value, DictConfig) else str(value)
        )
        tree.add(f"[bold]{key}[/]").add(Syntax(text.rstrip() or "null", "yaml", theme="ansi_dark"))
    (console or Console()).print(tree)


def print_metrics_table(
    title: str, metrics: Mapping[str, float], console: Console | None = None
) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    (console or Console()).print(table)
