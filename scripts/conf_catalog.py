"""What conf/ offers, read from its files alone: each group's options (one yaml each), their
leading comments, packages, bases and values. scripts/docs_tables.py renders it as tables."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TOP_LEVEL_KEY = re.compile(r"^[A-Za-z_][\w-]*:")


# --- reading one option (one yaml file of a group) -------------------------------------------------
@dataclass(frozen=True)
class Option:
    group: str  # the folder under conf/, e.g. "model" or "hydra/launcher"
    name: str  # the file's stem: what `group=name` selects
    about: str  # the first paragraph of the file's leading comment
    package: str  # where the file's keys land ("" for _global_), e.g. "model", "module.mixup"
    own: DictConfig  # the keys this file sets, placed at their package
    defaults: tuple  # the file's own defaults list

    def base(self, entry: Any) -> tuple[str, str, str | None] | None:
        """(group, name, package) of a defaults entry that is a config of this group or below
        it (``full``, ``loader/default@_here_``); None for anything else."""
        if not isinstance(entry, str):
            return None
        path, _, at = entry.partition("@")
        sub, _, name = path.rpartition("/")
        group = f"{self.group}/{sub}" if sub else self.group
        if not (CONF / group / f"{name}.yaml").is_file():
            return None
        return group, name, self.package if at == "_here_" else (at or None)

    @property
    def bases(self) -> list[str]:
        return [d for d in self.defaults if self.base(d)]

    @property
    def external(self) -> list[str]:
        """Defaults entries from outside conf/ (Hydra plugins' configs, e.g. ``submitit_slurm``)."""
        names = (d for d in self.defaults if isinstance(d, str) and d != "_self_")
        return [d.split("@")[0].rsplit("/", 1)[-1] for d in names if not self.base(d)]

    @property
    def overrides(self) -> list[str]:
        """``override /group: choice`` entries, as the command-line override they amount to."""
        pairs = (item for d in self.defaults if isinstance(d, dict) for item in d.items())
        return [f"{k.removeprefix('override').strip().lstrip('/')}={_choice(v)}" for k, v in pairs]


def _choice(value: object) -> str:
    """A group choice as typed on the command line: ``[default,early_stopping]`` for a list."""
    return f"[{','.join(map(str, value))}]" if isinstance(value, list) else str(value)


def leading_comment(text: str) -> tuple[str, str | None]:
    """The first paragraph of the comment block that opens a yaml file, and its @package."""
    package, lines, started = None, [], False
    for line in text.splitlines():
        if line.startswith("# @package"):
            package = line.split()[-1]
            continue
        if line.startswith("#"):
            body = line[1:]
            if not body.strip() or body.startswith("  "):  # a blank line or an indented example
                if started:
                    break
                continue
            lines.append(body.strip())
            started = True
        elif started or (TOP_LEVEL_KEY.match(line) and not line.startswith("defaults:")):
            break
    about = " ".join(lines)
    return (about[:-1] + "." if about.endswith(":") else about), package


@cache
def read_option(group: str, name: str, package: str | None = None) -> Option:
    """``conf/<group>/<name>.yaml``; ``package`` overrides its own (``@_here_`` includes)."""
    path = CONF / group / f"{name}.yaml"
    about, declared = leading_comment(path.read_text())
    body = OmegaConf.load(path) or OmegaConf.create()
    defaults = tuple(OmegaConf.to_container(body.pop("defaults")) if "defaults" in body else ())
    where = {None: group.replace("/", "."), "_global_": "", "_group_": group.replace("/", ".")}
    package = package if package is not None else where.get(declared, declared)
    own = body if not package else OmegaConf.create({})
    if package:
        OmegaConf.update(own, package, body, force_add=True)
    return Option(group, name, about, package, own, defaults)


@cache
def merged(group: str, name: str, package: str | None = None) -> DictConfig:
    """Everything the option sets once its bases are applied, in defaults-list order."""
    option = read_option(group, name, package)
    order = list(option.defaults) if "_self_" in option.defaults else [*option.defaults, "_self_"]
    parts = [
        option.own if d == "_self_" else merged(*option.base(d))
        for d in order
        if d == "_self_" or option.base(d)
    ]
    return OmegaConf.merge(*parts) if parts else OmegaConf.create({})


def options(group: str) -> list[Option]:
    return [read_option(group, p.stem) for p in sorted((CONF / group).glob("*.yaml"))]


def groups() -> list[str]:
    """Every folder of conf/ holding choices, as Hydra names the group ("hydra/launcher"); a
    folder whose yamls another group includes as bases (``data/loader``) is part of that one."""
    found = {p.parent.relative_to(CONF).as_posix() for p in CONF.rglob("*.yaml")} - {"."}
    included = {
        base[0]
        for group in found
        for option in options(group)
        for base in map(option.base, option.bases)
        if base[0] != group
    }
    return sorted(found - included)


def flat(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf; lists and empty dicts are leaves."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from flat(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def select(cfg: DictConfig, key: str) -> Any:
    """The value at dotted ``key`` as written (interpolations unresolved), or None."""
    node: Any = OmegaConf.to_container(cfg, resolve=False)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def targets(node: Any) -> list[str]:
    """Every `_target_` under ``node`` (lists included), in order of appearance."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, list):
        return [t for item in node for t in targets(item)]
    if not isinstance(node, dict):
        return []
    own = [str(node["_target_"])] if "_target_" in node else []
    return own + [t for key, value in node.items() if key != "_target_" for t in targets(value)]
