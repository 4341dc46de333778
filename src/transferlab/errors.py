"""The one error type a user sees as a single line and exit code 2, and the guards that show it."""

from __future__ import annotations

import difflib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

MAX_LISTED = 12  # options named in a one-line answer; past this the line ends with "..."


class ConfigError(ValueError):
    """A config, path or data problem; the message names the option or file and the fix."""


def run_or_exit(task: Callable[..., Any], *args: Any) -> Any:
    """An entry point's work: a ConfigError (also inside Hydra's instantiation wrapper) or a
    required option left unset becomes 'error: <message>' on stderr and exit code 2."""
    try:
        return task(*args)
    except (ConfigError, InstantiationException, MissingMandatoryValue) as err:
        message = user_error(err)
        if message is None:
            raise
        exit_with(message)


def main_or_exit(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` entry point. Hydra refuses a typo'd override (an option, a config
    group, a choice) before the task runs, in several lines and exit code 1; here it becomes one
    line naming the closest match, and exit code 2, like every other user error."""
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    # set, Hydra raises what it refuses instead of printing it (a bug keeps its whole trace)
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (ConfigCompositionException, OverrideParseException) as err:
        conf = Path(inspect.getfile(inspect.unwrap(main))).parent / "conf"  # config_path="conf"
        exit_with(override_error(err, conf))
    finally:
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error


def exit_with(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def root_cause(err: BaseException) -> BaseException:
    """The error itself, with Hydra's instantiation wrapper ("Error in call to target ...")
    peeled off."""
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err


def user_error(err: BaseException) -> str | None:
    """The one-line message of an error the user can fix, or None for a bug."""
    err = root_cause(err)
    if isinstance(err, MissingMandatoryValue):
        key = err.full_key or "an option"
        return f"{key} is required: set it on the command line ({key}=...)"
    return str(err) if isinstance(err, ConfigError) else None


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice nearest to a typo'd ``word`` (difflib's ratio), or None when none is close."""
    return next(iter(difflib.get_close_matches(word, list(choices), n=1)), None)


def listed(names: Iterable[str]) -> str:
    names = list(names)
    return ", ".join(names[:MAX_LISTED]) + (", ..." if len(names) > MAX_LISTED else "")


# --- what Hydra refuses while composing ----------------------------------------------------------
def override_error(err: Exception, conf: Path) -> str:
    """One line for an override Hydra refused: the override, what is wrong, the closest match."""
    if isinstance(err, OverrideParseException):
        reason = err.message.splitlines()[0]
        return f"{err.override}: not an override Hydra can read ({reason}); see {GRAMMAR}"
    if isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file:
        group, _, choice = err.missing_cfg_file.rpartition("/")
        name = closest(choice, err.options)
        hint = f" (did you mean {name}?)" if name else ""
        return f"{group}={choice}: no such choice{hint}; choose one of {listed(err.options)}"
    refused = re.search(r"use \+(\S+)", str(err))  # Hydra: "To append to your config use +k=v"
    cause = err.__cause__
    if refused and isinstance(cause, OmegaConfBaseException) and cause.parent_node is not None:
        return unknown_option(refused[1], cause.parent_node._get_root(), conf)
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())


GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def unknown_option(override: str, root: DictConfig, conf: Path) -> str:
    """``a.b.typo=v``: the closest key at the level where the path leaves the config (a config
    group offering ``v`` first, with its choices), else the same name at another level, else the
    keys there."""
    key, _, value = override.partition("=")
    parts = key.split(".")
    node, depth = root, 0
    while depth < len(parts) and isinstance(node, DictConfig) and parts[depth] in list(node):
        node, depth = node._get_node(parts[depth]), depth + 1
    where, missing = ".".join(parts[:depth]), ".".join(parts[: depth + 1])
    keys = (
        [str(k) for k in node if not str(k).startswith("_")] if isinstance(node, DictConfig) else []
    )
    if not keys:  # trainer.max_epochs.x=3
        return f"{key}: {where} takes a value, not options under it; set it with {where}=..."
    if len(parts) == 1:  # modle=resnet18: first a close group that offers that choice
        groups = [
            k
            for k in difflib.get_close_matches(parts[depth], keys)
            if value in group_options(conf, k)
        ]
        if groups:
            return (
                f"{override}: no such option or config group (did you mean {groups[0]}={value}?); "
                f"the choices for {groups[0]}: {listed(group_options(conf, groups[0]))}"
            )
    name = closest(parts[depth], keys)
    if name is not None:
        guess = f"{where}.{name}" if where else name
    else:  # the name at another level: max_epochs=3 for trainer.max_epochs=3
        paths = {path.rpartition(".")[2]: path for path in reversed(list(key_paths(root)))}
        name = closest(parts[depth], paths)
        guess = paths[name] if name is not None else None
    if guess:
        fix = f"fix the name, or add a new key with +{override}"
        return f"{missing}: no such option (did you mean {guess}?); {fix}"
    scope = f"{where} has" if where else "the top level has"
    return f"{missing}: no such option; {scope} {listed(keys)}"


def key_paths(node: DictConfig, prefix: str = "") -> Iterator[str]:
    """Every key path of the composed config (not the hydra node), without resolving values."""
    for key in node:
        path, child = f"{prefix}{key}", node._get_node(key)
        if path == "hydra":
            continue
        yield path
        if isinstance(child, DictConfig):
            yield from key_paths(child, f"{path}.")


def group_options(conf: Path, group: str) -> list[str]:
    """The choices Hydra's own loader finds for ``group`` in ``conf`` ([] if not a group)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(conf.resolve()), version_base="1.3"):
        return GlobalHydra.instance().config_loader().get_group_options(group)
