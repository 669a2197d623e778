"""What a run records about itself: status, versions, host, times, data checksums.

A run directory tells the truth about one run: ``RunRecord`` sets aside the files of an earlier run in
the same directory (refusing one whose process still runs), records the process that works there (host,
pid, its start time, the machine's boot) so a ``running`` status whose process is gone is recognised
(``run_liveness``), and on failure removes the partial results this run wrote before it records the
failure, so result files exist only for a complete run.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import logging
import os
import platform
import secrets
import shutil
import socket
import sys
import traceback
from importlib import metadata
from pathlib import Path

from hepad_cli.errors import ConfigError
from hepad_cli.io import atomic_write_json, overwrite_in_place

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
INFO_FILE = "run_info.json"
#: What a run writes besides its record: they exist only for a complete run.
RESULT_PATTERNS = ("auc.json", "scores.h5", "history.csv", "model", "*.png", "*.pdf", "*.svg", ".*.partial*")
#: Where the files of an earlier run in the same directory are moved.
EARLIER_RUNS = "earlier_runs"

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


def _process_start(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (Linux /proc); None elsewhere."""
    try:
        # The command name (field 2) may hold spaces; the start time is field 22, the 20th after it.
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_identity() -> dict:
    """Host, pid, start time and boot of this process: enough to tell later whether it still runs."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "process_start": _process_start(pid),
        "boot_id": _boot_id(),
    }


def run_liveness(status: dict) -> str:
    """Whether the process that wrote a ``running`` status still runs: "alive", "dead", or "unknown"
    (another machine, or a status without the process recorded)."""
    pid = status.get("pid")
    if not isinstance(pid, int) or status.get("host") != socket.gethostname():
        return "unknown"
    if status.get("boot_id") and status.get("boot_id") != _boot_id():
        return "dead"  # the machine rebooted since
    started = _process_start(pid)
    if started is None:
        return "dead" if not Path(f"/proc/{pid}").exists() and Path("/proc/self").exists() else "unknown"
    return "alive" if status.get("process_start") in (None, started) else "dead"  # else: pid reused


def describe_process(status: dict) -> str:
    return f"pid {status.get('pid')} on {status.get('host')}"


def read_status(directory: Path) -> dict | None:
    """The status.json of a run directory as a dict, or None when missing or unreadable."""
    try:
        status = json.loads((directory / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def record_mismatch(
    status: dict, info: dict, report_run_id: str | None, overrides: list[str] | None = None
) -> str | None:
    """Why status.json, run_info.json, auc.json (its run id) and Hydra's overrides of a complete run do
    not describe one run, or None when they do."""
    run_id = status.get("run_id")
    if report_run_id != run_id or info.get("run_id") != run_id:
        return (
            f"the record does not match: status.json is of run {run_id!r}, auc.json of run "
            f"{report_run_id!r}, run_info.json of run {info.get('run_id')!r}"
        )
    if overrides is not None and info.get("overrides") != overrides:
        return (
            f"the record does not match: run_info.json ran {info.get('overrides')} but "
            f".hydra/overrides.yaml says {overrides}"
        )
    return None


def _result_entries(directory: Path) -> list[Path]:
    return sorted(
        entry
        for entry in directory.iterdir()
        if any(fnmatch.fnmatch(entry.name, pattern) for pattern in RESULT_PATTERNS)
    )


def set_aside_earlier_run(directory: Path) -> Path | None:
    """Move the files of an earlier run in ``directory`` into earlier_runs/<id>/, so nothing there can be
    taken for this run's; refuse a directory whose run is still working. Returns where they went."""
    status = read_status(directory)
    record = [directory / name for name in (STATUS_FILE, INFO_FILE) if (directory / name).exists()]
    results = _result_entries(directory)
    if not record and not {"auc.json", "scores.h5"} & {entry.name for entry in results}:
        return None  # no hepad run was here (figures alone may be anybody's)
    status = status or {}
    if status.get("status") == "running" and run_liveness(status) != "dead":
        alive = run_liveness(status) == "alive"
        raise ConfigError(
            f"the run directory {directory} is in use by a hepad run that "
            f"{'is still working' if alive else 'may still be working'} ({describe_process(status)}, "
            f"last update {status.get('updated')}): choose another directory (hydra.run.dir=...)"
            + ("" if alive else ", or if that run is gone, move its status.json away")
        )
    name = str(status.get("run_id") or dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S"))
    target = directory / EARLIER_RUNS / name
    while target.exists():
        target = target.with_name(target.name + "_")
    target.mkdir(parents=True)
    for entry in [*record, *results]:
        os.replace(entry, target / entry.name)
    log.warning(
        "%s held an earlier run (status %s): its files were moved to %s so that this directory shows "
        "this run only",
        directory,
        status.get("status", "unknown"),
        target,
    )
    return target


class RunRecord:
    """status.json says running / complete / failed (with the error); run_info.json says what ran where.

    Creating the record claims the directory (``set_aside_earlier_run``); ``failed`` removes the partial
    results this run wrote, then records the failure.
    """

    def __init__(self, out_dir: Path, config: dict, overrides: list[str]) -> None:
        self.out_dir = out_dir
        self.run_id = secrets.token_hex(6)
        set_aside_earlier_run(out_dir)
        self._entries_before = {entry.name for entry in out_dir.iterdir()}
        self.info = {
            "run_id": self.run_id,
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
        payload = {"status": status, "run_id": self.run_id, "updated": now(), **process_identity(), **extra}
        atomic_write_json(self.out_dir / STATUS_FILE, payload)

    def _write_info(self) -> None:
        atomic_write_json(self.out_dir / INFO_FILE, self.info)

    def add(self, **entries) -> None:
        self.info.update(entries)
        self._write_info()

    def complete(self) -> None:
        self.info["finished"] = now()
        self.info["memory_mb"] = memory_mb()
        self._write_info()
        self._write_status("complete")

    def remove_partial_results(self) -> None:
        """Delete the result files this run wrote (never those that were there before it started)."""
        for entry in _result_entries(self.out_dir):
            if entry.name in self._entries_before:
                continue
            try:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            except OSError as error:
                log.error("could not remove the partial result %s: %s", entry, error)

    def failed(self, error: BaseException) -> bool:
        """Remove partial results (which also frees space on a full disk), then mark the run failed.

        Returns False when status.json could not be updated; the log says why.
        """
        self.remove_partial_results()
        self.info["finished"] = now()
        message = f"{type(error).__name__}: {error}"
        try:
            self._write_info()
        except OSError as write_error:
            log.error("could not update %s: %s", self.out_dir / INFO_FILE, write_error)
        try:
            self._write_status(
                "failed", error=message, traceback="".join(traceback.format_exception(error))[-4000:]
            )
            return True
        except OSError as write_error:
            first = write_error
        try:
            # No room for a new file: overwrite the old status in place (its blocks are already there).
            status = {"status": "failed", "run_id": self.run_id, "updated": now(), "error": message[:1000]}
            overwrite_in_place(self.out_dir / STATUS_FILE, json.dumps(status))
            return True
        except OSError as write_error:
            log.error(
                "could not mark the run failed in %s (%s; then %s): it still says %r",
                self.out_dir / STATUS_FILE,
                first,
                write_error,
                (read_status(self.out_dir) or {}).get("status"),
            )
            return False
