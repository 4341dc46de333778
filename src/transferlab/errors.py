"""The one error type a user sees as a single line and exit code 2, and the guard that shows it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    """A config, path or data problem; the message names the option or file and the fix."""


def run_or_exit(task: Callable[..., Any], *args: Any) -> Any:
    """An entry point's work: a ConfigError becomes 'error: <message>' on stderr and exit 2."""
    try:
        return task(*args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
