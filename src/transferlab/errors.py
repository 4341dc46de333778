"""The one error type a user sees as a single line and exit code 2, and the guard that shows it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue


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
