"""What a run records about itself: status, versions, host, times, data checksums."""

from __future__ import annotations

import datetime as dt
import platform
import socket
import sys
import traceback
from importlib import metadata
from pathlib import Path

from hepad_cli.io import atomic_write_json

PACKAGES = (
    "hepad",
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "jax",
    "jaxlib",
    "torch",
    "numpy",
    "h5py",
    "scikit-learn",
    "hydra-core",
    "omegaconf",
    "matplotlib",
    "mplhep",
    "pythia8mc",
    "pandas",
    "tables",
    "pooch",
)


def package_versions() -> dict[str, str | None]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def memory_mb() -> dict[str, float | None]:
    """Resident memory of this process now and at its peak (Linux /proc; None elsewhere)."""
    import resource

    current = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    except OSError:
        pass
    return {"rss_now": current, "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


class RunRecord:
    """status.json says running / complete / failed (with the error); run_info.json says what ran where."""

    def __init__(self, out_dir: Path, config: dict, overrides: list[str]) -> None:
        self.out_dir = out_dir
        self.info = {
            "started": now(),
            "finished": None,
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "command": sys.argv,
            "overrides": overrides,
            "versions": package_versions(),
            "config": config,
            "data": [],
            "timing_s": {},
        }
        self._write_status("running")
        self._write_info()

    def _write_status(self, status: str, **extra) -> None:
        atomic_write_json(self.out_dir / "status.json", {"status": status, "updated": now(), **extra})

    def _write_info(self) -> None:
        atomic_write_json(self.out_dir / "run_info.json", self.info)

    def add(self, **entries) -> None:
        self.info.update(entries)
        self._write_info()

    def complete(self) -> None:
        self.info["finished"] = now()
        self.info["memory_mb"] = memory_mb()
        self._write_info()
        self._write_status("complete")

    def failed(self, error: BaseException) -> None:
        self.info["finished"] = now()
        self._write_info()
        self._write_status(
            "failed",
            error=f"{type(error).__name__}: {error}",
            traceback="".join(traceback.format_exception(error))[-4000:],
        )
