"""hepad-run: the Hydra entry point. Thin on purpose: compose, then hand over to experiment.run."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("hepad_cli")
# TensorFlow's C++ info and warning lines drown the progress bars; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# One random tag per process keeps two runs started in the same second in different directories
# (hepad_cli.api renews it for every run it starts in one process).
_PROCESS_TAG = secrets.token_hex(3)


def renew_process_tag() -> None:
    """A new tag for the next run directory composed in this process."""
    global _PROCESS_TAG
    _PROCESS_TAG = secrets.token_hex(3)


def _config_help(*, _root_: DictConfig) -> str:
    """`hepad-run --help`: groups, options and every key of the chosen options, from the YAML comments."""
    from hepad_cli.config_help import render_help

    return render_help(_root_)


OmegaConf.register_new_resolver("process_tag", lambda: _PROCESS_TAG, replace=True)
OmegaConf.register_new_resolver("config_help", _config_help, replace=True)

#: Free space a run directory needs to hold at least its record and log.
MIN_FREE_BYTES = 1 << 20
#: Exit status of a run stopped by a signal, as a shell reports it: 128 + the signal number.
EXIT_SIGTERM = 128 + signal.SIGTERM
EXIT_SIGINT = 128 + signal.SIGINT


@contextmanager
def sigterm_stops_the_run() -> Iterator[None]:
    """While a run works, SIGTERM (what a batch system sends before it kills a job) raises Terminated, as
    Ctrl-C raises KeyboardInterrupt: the run then records its failure and removes its partial results."""
    from hepad_cli.errors import Terminated

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def stop(signum, frame):
        # Once is enough: a second SIGTERM must not cut short the recording of the first.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated("terminated by SIGTERM")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def status_line(out_dir: Path) -> str:
    """What status.json says now, read back from the file: the CLI never claims what it did not write."""
    from hepad_cli.provenance import STATUS_FILE, describe_process, read_status

    path = out_dir / STATUS_FILE
    status = read_status(out_dir)
    if status is None:
        return f"no status was recorded: {path} could not be written"
    if status.get("pid") not in (None, os.getpid()):
        return f"nothing was recorded: {path} belongs to another run ({describe_process(status)})"
    if status.get("status") == "failed":
        return f"the run is marked failed in {path}"
    return f"{path} could not be updated (see the log): it still says {status.get('status')!r}"


def run_in_hydra_job(cfg: DictConfig):
    """The run of one composed config in the directory Hydra made for it: the work of hepad-run and of
    hepad_cli.api.run alike. Returns the RunReport."""
    from hydra.core.hydra_config import HydraConfig

    from hepad_cli.experiment import run

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    log.info("run directory: %s", out_dir.resolve())
    with sigterm_stops_the_run():
        return run(cfg, out_dir, list(hydra_cfg.overrides.task))


@hydra.main(version_base="1.3", config_path="pkg://hepad_cli.conf", config_name="config")
def app(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from hepad_cli.errors import Terminated, is_environment_error, user_errors

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        report = run_in_hydra_job(cfg)
    except (KeyboardInterrupt, Terminated) as stop:
        # Stops a sweep too: the batch system or the user wants the whole process gone.
        reason = str(stop) or "interrupted (Ctrl-C)"
        print(f"hepad-run: {reason}; {status_line(out_dir)}", file=sys.stderr)
        raise SystemExit(EXIT_SIGTERM if isinstance(stop, Terminated) else EXIT_SIGINT) from None
    except Exception as error:
        known = isinstance(error, user_errors()) or is_environment_error(error)
        if in_sweep:
            # One failed job must not stop the sweep: its status.json says failed, the summary shows it.
            log.error("job failed: %s: %s", type(error).__name__, error, exc_info=not known)
            print(f"hepad-run: job {hydra_cfg.job.num} failed: {error}", file=sys.stderr)
            return float("nan")  # an optimising sweeper (Optuna) records the trial as failed
        if not known:
            raise
        message = str(error)
        if is_environment_error(error):
            # The OS's own words first: HDF5 and friends bury them in long messages.
            message = (
                f"{os.strerror(error.errno)}: free space or make the directory writable, or point "
                f"paths.output_dir / paths.data_dir elsewhere ({error})"
            )
        log.error("%s", message)
        print(f"hepad-run: error: {message}", file=sys.stderr)
        print(f"hepad-run: {status_line(out_dir)}", file=sys.stderr)
        raise SystemExit(1) from None
    for warning in report.warnings:
        print(f"hepad-run: warning: {warning}", file=sys.stderr)
    print(f"hepad-run: {report.auc_line()}", file=sys.stderr)
    for signal_name, references in report.stronger_references().items():
        cuts = ", ".join(f"{observable} AUC {auc:.3f}" for observable, auc in references.items())
        print(f"hepad-run: {signal_name}: one observable alone separates better: {cuts}", file=sys.stderr)
    print(f"hepad-run: results in {out_dir.resolve()}", file=sys.stderr)
    # The objective an optimising sweeper maximises.
    return report.mean_auc()


def check_output_directory(key: str, directory: str) -> None:
    """Stop with one clear line when ``directory`` cannot become a run directory (a file is in the way,
    it cannot be written, its disk is full), before Hydra tries to create it."""
    path = Path(directory).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is a file, not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    elif shutil.disk_usage(existing).free < MIN_FREE_BYTES:
        problem = f"the disk of {existing} has only {shutil.disk_usage(existing).free // 1024} KiB free"
    if problem:
        print(
            f"hepad-run: error: {key}={directory} cannot be used: {problem}. Choose another directory, "
            f"e.g. {key}=outputs/run1 (or change paths.output_dir)",
            file=sys.stderr,
        )
        raise SystemExit(1)


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a dependency
    _HydraCallback = object


class OutputDirectoryCheck(_HydraCallback):
    """Checks the run (or sweep) directory before Hydra creates it and writes its files there."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        check_output_directory("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        check_output_directory("hydra.sweep.dir", config.hydra.sweep.dir)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
