"""What every figure of the benchmark suite shares: timing side by side, subprocess peak memory, results."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent


@dataclass
class Settings:
    """How big and how often: ``smoke`` shrinks every figure to seconds; ``repeats`` ≥ 5 in full mode."""

    smoke: bool
    repeats: int
    cache_dir: Path
    work_dir: Path
    run_repeats: int = 2

    def size(self, full: int, smoke: int) -> int:
        return smoke if self.smoke else full

    @property
    def heavy_repeats(self) -> int:
        """Repeats of the figures that take seconds per run even at smoke sizes (one in smoke mode)."""
        return 1 if self.smoke else self.repeats


@dataclass
class Side:
    """One side of a figure: what was run and the samples measured (seconds, or the figure's unit)."""

    label: str
    samples: list[float] = field(default_factory=list)
    unit: str = "s"
    per_sample: float = 1.0  # items per sample: rate = per_sample / median time

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def rate(self) -> float:
        return self.per_sample / self.median

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "median": self.median,
            "samples": self.samples,
            "repeats": len(self.samples),
            "items_per_sample": self.per_sample,
            "rate_per_s": self.rate if self.unit == "s" else None,
        }


@dataclass
class Figure:
    """One row of the table. ``ratio`` is ours over the baseline in the figure's own sense (speed-up,
    or latency over the floor); ``met`` compares it with the target."""

    name: str
    what: str
    baseline: Side | None
    ours: Side
    ratio: float | None
    target: str
    met: bool | None
    baseline_text: str
    ours_text: str
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "what": self.what,
            "baseline": None if self.baseline is None else self.baseline.as_dict(),
            "ours": self.ours.as_dict(),
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
            "baseline_text": self.baseline_text,
            "ours_text": self.ours_text,
            "notes": self.notes,
            **self.extra,
        }


class Seconds(float):
    """Returned by a side that measures itself (e.g. without its set-up): used instead of the call time."""


def side_by_side(
    repeats: int, sides: dict[str, Callable[[], object]], warmup: bool = True
) -> dict[str, list[float]]:
    """Run each side once per repeat, alternating their order, and return the seconds of each run.

    The call is timed, unless the side returns Seconds (its own measurement). Alternating the order
    spreads the machine's drift (other people's jobs) evenly over the sides.
    """
    if warmup:
        for run in sides.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            measured = sides[name]()
            times[name].append(
                float(measured) if isinstance(measured, Seconds) else time.perf_counter() - start
            )
    return times


def fmt_rate(rate: float, unit: str) -> str:
    for scale, prefix in ((1e6, "M"), (1e3, "k")):
        if rate >= scale:
            return f"{rate / scale:.3g}{prefix} {unit}/s"
    return f"{rate:.3g} {unit}/s"


def fmt_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def run_child(args: list[str], timeout: float = 3600, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python <args>`` in a fresh process; it prints one JSON line last. Adds its peak RSS (bytes).

    The peak RSS comes from the kernel's accounting of the finished child (getrusage RUSAGE_CHILDREN
    is per parent, so the child reports its own ru_maxrss in its JSON line instead).
    """
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(BENCH_DIR), **(env or {})}
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=environment, cwd=REPO
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def child_report(**values: Any) -> None:
    """Print the child's result line, with its own peak RSS in bytes (Linux reports KiB)."""
    import resource

    values["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(values))


def mem_available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0
