"""Writing files so that an interrupted run never leaves one that looks complete."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def fsync_directory(directory: Path) -> None:
    """Make a rename durable (best effort: not every filesystem allows fsync on a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success fsync it and rename it onto ``final``.

    On any exception the temporary file is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.",
        suffix=suffix if suffix is not None else f".partial{final.suffix}",
        dir=final.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should be as readable as any new file
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, final)
        fsync_directory(final.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(final: str | os.PathLike, text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text)


def overwrite_in_place(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` over an existing file's bytes, padded with spaces to its old length.

    The last resort when no new file can be created (a full disk): the old file's blocks are reused, so
    no new space is needed as long as the text is not longer. Not atomic; use ``atomic_write_text``
    everywhere else.
    """
    data = text.encode()
    with open(path, "r+b") as handle:
        old_size = os.fstat(handle.fileno()).st_size
        handle.write(data + b" " * max(old_size - len(data), 0))
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_json(final: str | os.PathLike, payload: Any) -> None:
    atomic_write_text(final, json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
