"""Errors a user can fix: the CLI prints their message without a traceback and exits non-zero."""


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and what would be right."""


class DataError(ValueError):
    """Input data that cannot give a trustworthy result (wrong shape, NaN, empty, leaked signal)."""


class TrainingError(RuntimeError):
    """Training produced no usable model (e.g. the loss became NaN)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Error types whose message alone tells the user what to fix (imported late: they pull in I/O)."""
    from hepad_cli.data.download import DataFileError
    from hepad_cli.data.generation import GenerationError
    from hepad_cli.data.toptagging_format import LayoutError

    return (ConfigError, DataError, TrainingError, DataFileError, GenerationError, LayoutError)
