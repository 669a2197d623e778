"""Errors a user can fix: the CLI prints their message without a traceback and exits non-zero."""

from hepad_cli.data.samples import DataError


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and what would be right."""


class TrainingError(RuntimeError):
    """Training produced no usable model (e.g. the loss became NaN)."""


USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DataError, TrainingError)
