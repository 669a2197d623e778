"""Errors a user can fix: the CLI prints their message without a traceback and exits non-zero."""

import errno

#: OSError numbers that describe the machine, not a bug: a full disk or quota, a read-only or
#: unwritable directory. The CLI prints them like user errors, without a traceback.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and what would be right."""


class DataError(ValueError):
    """Input data that cannot give a trustworthy result (wrong shape, NaN, empty, leaked signal)."""


class TrainingError(RuntimeError):
    """Training produced no usable model (e.g. the loss became NaN)."""


class Terminated(BaseException):  # noqa: N818 - named like KeyboardInterrupt, its sibling
    """The process was asked to stop (SIGTERM, as a batch system sends before it kills a job).

    A BaseException like KeyboardInterrupt, so only the code that records the run's status sees it.
    """


def is_environment_error(error: BaseException) -> bool:
    """An OSError about the disk or permissions (see ENVIRONMENT_ERRNOS)."""
    return isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS


def user_errors() -> tuple[type[BaseException], ...]:
    """Error types whose message alone tells the user what to fix (imported late: they pull in I/O)."""
    from hepad_cli.data.download import DataFileError
    from hepad_cli.data.generation import GenerationError
    from hepad_cli.data.toptagging_format import LayoutError

    return (ConfigError, DataError, TrainingError, DataFileError, GenerationError, LayoutError)
