"""Checks of config values, each raising an error that names the key, the value and what would be right.

Every constructor validates its settings with these, so a mistake fails before any data or training work.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from hepad_cli.errors import ConfigError


def _fail(error: type[Exception], key: str, wanted: str, value: Any, hint: str) -> None:
    raise error(f"{key} must be {wanted}, got {value!r}{f' ({hint})' if hint else ''}")


def is_integer(value: Any) -> bool:
    """An int (NumPy integers too), but not a bool."""
    import numpy as np

    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    import numpy as np

    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def check_int(
    key: str,
    value: Any,
    minimum: int = 1,
    allow_none: bool = False,
    hint: str = "",
    error: type[Exception] = ConfigError,
    maximum: int | None = None,
) -> int | None:
    """An integer in [minimum, maximum] (a positive integer by default), or None where allowed."""
    if allow_none and value is None:
        return None
    if not is_integer(value) or value < minimum or (maximum is not None and value > maximum):
        if maximum is not None:
            wanted = f"an integer in [{minimum}, {maximum}]"
        else:
            wanted = {1: "a positive integer", 0: "a non-negative integer"}.get(
                minimum, f"an integer >= {minimum}"
            )
        _fail(error, key, wanted + (" or null" if allow_none else ""), value, hint)
    return int(value)


#: The largest seed every consumer accepts (NumPy's legacy RandomState, scikit-learn, Keras): 2**32 - 1.
SEED_MAX = 2**32 - 1


def check_seed(key: str, value: Any, error: type[Exception] = ConfigError) -> int:
    """A seed every random-number consumer accepts; null is refused, so no run is silently unseeded."""
    return check_int(
        key, value, minimum=0, maximum=SEED_MAX, hint="e.g. 42; null is not allowed", error=error
    )


def available_memory_bytes() -> int | None:
    """Memory the kernel says a new allocation can get without swapping (MemAvailable), or None."""
    try:
        for line in open("/proc/meminfo").read().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits_in_memory(
    key: str, value: Any, needed_bytes: float, what: str, error: type[Exception] = ConfigError
) -> None:
    """Refuse a setting whose arrays would not fit into the memory available now, with the figures."""
    available = available_memory_bytes()
    if available is not None and needed_bytes > available:
        raise error(
            f"{key}={value!r} needs about {needed_bytes / 2**30:.1f} GiB for {what}, but only "
            f"{available / 2**30:.1f} GiB of memory is available: choose a smaller {key}"
        )


def check_number(
    key: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
    hint: str = "",
    error: type[Exception] = ConfigError,
) -> float | None:
    """A finite number in the interval given by low/high (open ends where *_open), or None where allowed."""
    if allow_none and value is None:
        return None
    ok = is_number(value) and math.isfinite(float(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low == 0 and high is None:
            wanted = "a positive number" if low_open else "a non-negative number"
        elif low is None and high is None:
            wanted = "a finite number"
        else:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            lower, upper = "-inf" if low is None else low, "inf" if high is None else high
            wanted = f"a number in {left}{lower}, {upper}{right}"
        _fail(error, key, wanted + (" or null" if allow_none else ""), value, hint)
    return float(value)


def check_int_list(
    key: str, value: Any, allow_empty: bool = True, hint: str = "", error: type[Exception] = ConfigError
) -> list[int]:
    """A list of positive integers (layer sizes)."""
    if (
        not isinstance(value, list | tuple)
        or (not allow_empty and not value)
        or not all(is_integer(v) and v > 0 for v in value)
    ):
        _fail(error, key, "a list of positive integers", value, hint or "e.g. [10]")
    return [int(v) for v in value]


def check_bool(key: str, value: Any, error: type[Exception] = ConfigError) -> bool:
    if not isinstance(value, bool):
        _fail(error, key, "true or false", value, "")
    return value


def check_choice(
    key: str, value: Any, options: Iterable[Any], hint: str = "", error: type[Exception] = ConfigError
) -> Any:
    options = list(options)
    if value not in options:
        _fail(error, key, f"one of {options}", value, hint)
    return value
