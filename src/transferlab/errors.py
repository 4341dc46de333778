"""The one error type a user sees as a single line and exit code 2 (before anything is built)."""


class ConfigError(ValueError):
    """A config, path or data problem; the message names the option or file and the fix."""
