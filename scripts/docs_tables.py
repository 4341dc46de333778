"""The docs' tables of choices, generated from conf/ so that they cannot drift from it.

A page marks a region with ``<!-- generated: NAME -->`` ... ``<!-- /generated -->``. NAME is
``groups`` (every config group, its choices and the code they build) or a group folder of conf/
(``model``, ``hydra/launcher``, ...): one row per yaml file, described by the file's own leading
comment and the values it sets. Nothing here names an option: a new yaml is a new row.

    python scripts/docs_tables.py           # rewrite the regions in README.md and docs/*.md
    python scripts/docs_tables.py --check   # exit 1 naming each page whose tables are stale
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conf_catalog import CONF, ROOT, Option, flat, groups, merged, options, select, targets
from omegaconf import OmegaConf

from transferlab.tables import markdown_table

ENTRY = "train"  # the entry config whose defaults list names each group's default choice
REGION = re.compile(
    r"(?P<open><!-- generated: (?P<name>[\w/.]+) -->\n)(?P<body>.*?)(?P<close><!-- /generated -->)",
    re.S,
)


def pages(root: Path = ROOT) -> list[Path]:
    """The pages that may hold generated regions: the README and every page of docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


# --- how values are shown -------------------------------------------------------------------------
def show(value: Any) -> str:
    """A value as it is written in a command-line override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def code(text: str) -> str:
    return f"`{text}`" if text else ""


# --- columns: each maps an option to one cell ------------------------------------------------------
Column = Callable[[Option], str]


def prose(text: str) -> str:
    """A comment as markdown text: outside `code`, < and * are shown, not read as markup."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("*", r"\*").replace("<", "&lt;")
    return "`".join(parts)


def about(option: Option) -> str:
    return prose(option.about)


def value(key: str) -> Column:
    """The value at ``key`` (relative to the group's package) once bases are applied."""
    return lambda o: code(
        show(select(merged(o.group, o.name), f"{o.group.replace('/', '.')}.{key}"))
    )


def target(option: Option) -> str:
    """The class or function the option builds: its first `_target_`."""
    found = targets(merged(option.group, option.name))
    return code(found[0]) if found else ""


def settings(*skip: str) -> Column:
    """The keys this file sets itself (not its bases), as overrides: ``finetune.lr_decay=0.5``."""

    def cell(option: Option) -> str:
        hidden = {"_target_", "_partial_", *skip}
        pairs = [(k, v) for k, v in flat(option.own) if k and k.rsplit(".", 1)[-1] not in hidden]
        return ", ".join(code(f"{k}={show(v)}") for k, v in pairs)

    return cell


def builds_on(option: Option) -> str:
    return ", ".join(code(b) for b in [*option.bases, *option.external])


def members(option: Option) -> str:
    """The named entries of a dict-of-objects group (callbacks, loggers): ``name`` (Class)."""
    node = select(merged(option.group, option.name), option.group)
    if not isinstance(node, dict):
        return code(show(node))
    shown = []
    for key, entry in node.items():
        kind = (
            entry.get("_target_", "").rsplit(".", 1)[-1] if isinstance(entry, dict) else show(entry)
        )
        shown.append(f"{code(key)} ({kind})" if kind else code(key))
    return ", ".join(shown)


def pipeline(key: str) -> Column:
    """The classes of a list of `_target_` nodes, in order (an augmentation pipeline)."""

    def cell(option: Option) -> str:
        steps = select(merged(option.group, option.name), f"{option.group}.{key}") or []
        return " → ".join(step.get("_target_", "?").rsplit(".", 1)[-1] for step in steps)

    return cell


def swept(option: Option) -> str:
    params = select(merged(option.group, option.name), "hydra.sweeper.params") or {}
    return ", ".join(code(f"{k}={show(v)}") for k, v in params.items())


def preset(option: Option) -> str:
    """What an experiment changes besides its sweep: group overrides and values."""
    values = [(k, v) for k, v in flat(option.own) if k and not k.startswith("hydra.")]
    return ", ".join([*map(code, option.overrides), *(code(f"{k}={show(v)}") for k, v in values)])


def source(option: Option) -> str:
    cfg = merged(option.group, option.name)
    found = [
        select(cfg, f"{option.group}.{k}") for k in ("url", "kaggle_competition", "search_dirs")
    ]
    return "<br>".join(code(show(v)) for v in found if v not in (None, [], ""))


# --- tables: one per group, the groups overview, and the keys of an entry config ----------------------------------------------------------------------------------------
def option_table(group: str, columns: dict[str, Column]) -> str:
    rows = [[code(o.name), *(fn(o) for fn in columns.values())] for o in options(group)]
    return markdown_table([f"`{group}=`", *columns], rows)


def default_choices() -> dict[str, str]:
    """Each group's default in the entry config's defaults list (``model: efficientnet_lite0``)."""
    entry = OmegaConf.to_container(OmegaConf.load(CONF / f"{ENTRY}.yaml").get("defaults", []))
    return {k: str(v) for d in entry if isinstance(d, dict) for k, v in d.items()}


def groups_table() -> str:
    defaults, rows = default_choices(), []
    for group in groups():
        names = [o.name for o in options(group)]
        shown = [f"**{n}**" if n == defaults.get(group) else n for n in names]
        modules = sorted({t.rsplit(".", 1)[0] for n in names for t in targets(merged(group, n))})
        rows.append([code(group), ", ".join(shown), ", ".join(map(code, modules))])
    return markdown_table(
        ["group", f"choices (**{ENTRY}.py's default**)", "builds (`_target_` modules)"], rows
    )


def key_notes(text: str) -> dict[str, str]:
    """Each key's comment in a yaml text: its inline comment, else the comment lines above it."""
    notes: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        match = re.match(r"^(\s*)([\w.-]+):(.*)$", line)
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        if not match:
            above = []
            continue
        indent, key, rest = len(match[1]), match[2], match[3]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([*(k for _, k in stack), key])
        inline = rest.split(" #", 1)[1].strip() if " #" in rest else ""
        notes[dotted] = inline or " ".join(a for a in above if not a.startswith("@package"))
        above = []
        stack.append((indent, key))
    return notes


def entry_table(filename: str) -> str:
    """The keys an entry config (conf/train.yaml, conf/eval.yaml ...) sets, with its comments."""
    path = CONF / filename
    body = OmegaConf.load(path)
    body.pop("defaults", None)
    notes, shown, rows = key_notes(path.read_text()), set(), []
    for key, val in flat(body):
        # A block's comment (above `input:`) goes with the first key under it.
        parents = [".".join(key.split(".")[:i]) for i in range(key.count(".") + 1, 0, -1)]
        note = next((notes[p] for p in parents if notes.get(p) and p not in shown), "")
        shown.update(parents)
        hidden = any(part.startswith("_") for part in key.split("."))
        if hidden or re.fullmatch(r"\$\{\w+\}", str(val)):
            continue  # Hydra's keys, and wiring (`net: ${model}`) that the group tables show
        rows.append([code(f"{key}={show(val)}"), prose(note)])
    return markdown_table(["key=default", "what"], rows)


COLUMNS: dict[str, dict[str, Column]] = {
    "model": {"timm name": value("name"), "about": about, "settings": settings("name")},
    "data": {
        "format (DataModule)": target,
        "root": value("root"),
        "source": source,
        "about": about,
    },
    "augment": {"train pipeline": pipeline("train"), "about": about, "on device": value("device")},
    "finetune": {"about": about, "knobs": settings()},
    "experiment": {"about": about, "sweeps": swept, "sets": preset},
    "hydra/launcher": {"builds on": builds_on, "about": about, "settings": settings()},
    "callbacks": {"callbacks": members, "about": about},
    "logger": {"loggers": members, "about": about},
}
GENERIC: dict[str, Column] = {
    "builds": target,
    "about": about,
    "builds on": builds_on,
    "settings": settings(),
}


def render(name: str) -> str:
    """The table a ``<!-- generated: NAME -->`` region holds."""
    if name == "groups":
        return groups_table()
    if name.endswith(".yaml") and (CONF / name).is_file():
        return entry_table(name)
    if not (CONF / name).is_dir():
        raise SystemExit(f"docs_tables: <!-- generated: {name} --> names no conf/{name}/")
    columns = COLUMNS.get(name, GENERIC)
    filled = {h: fn for h, fn in columns.items() if any(fn(o) for o in options(name))}
    return option_table(name, filled)


def rewrite(text: str) -> str:
    def fill(match: re.Match) -> str:
        return f"{match['open']}\n{render(match['name'])}\n\n{match['close']}"

    return REGION.sub(fill, text)


def stale_pages(paths: list[Path]) -> list[Path]:
    return [p for p in paths if rewrite(p.read_text()) != p.read_text()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale pages (exit 1)")
    args = parser.parse_args(argv)
    stale = stale_pages(pages())
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run: python scripts/docs_tables.py)")
        return 1 if stale else 0
    for path in stale:
        path.write_text(rewrite(path.read_text()))
        print(f"rewrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
