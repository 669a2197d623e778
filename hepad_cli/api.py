"""hepad from Python, e.g. a notebook: the runs of hepad-run, through the same Hydra machinery.

    from hepad_cli import api

    result = api.run(["model=vae", "trainer.epochs=5"])   # as `hepad-run model=vae trainer.epochs=5`
    result.directory, result.report.signals["top"].auc
    sweep = api.sweep(["model.latent_dim=2,4"])           # as `hepad-run -m model.latent_dim=2,4`
    sweep.directory, [job.status for job in sweep.jobs]

Each call composes the config with the overrides (Hydra, the same config tree), gets a run directory of its
own under ``paths.output_dir`` with ``.hydra/`` and ``hepad.log``, runs Hydra's callbacks, and hands the
config to the function the console script runs (``hepad_cli.run``). A mistake in the overrides or the
data raises the same error the console script prints.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hepad_cli.report import RunReport
from hepad_cli.sweep import JobResult

log = logging.getLogger(__name__)

_CONFIG_PATH = "pkg://hepad_cli.conf"
_CONFIG_NAME = "config"


@dataclass
class RunResult:
    """A complete run: its directory (auc.json, scores.h5, figures, model/) and its report (auc.json)."""

    directory: Path
    report: RunReport

    def __repr__(self) -> str:
        return f"RunResult({self.directory}: {self.report.auc_line()})"


@dataclass
class SweepResult:
    """A finished sweep: its directory (summary.md, summary.csv, plots, one directory per job) and every
    job read back from its files, best mean AUC first as in the summary."""

    directory: Path
    jobs: list[JobResult]

    @property
    def summary(self) -> str:
        """summary.md of the sweep."""
        return (self.directory / "summary.md").read_text()

    def __repr__(self) -> str:
        complete = sum(job.status == "complete" for job in self.jobs)
        return f"SweepResult({self.directory}: {len(self.jobs)} jobs, {complete} complete)"


def _hydra():
    """Hydra set up the way ``@hydra.main`` of hepad-run sets it up."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path, detect_task_name
    from hydra.core.global_hydra import GlobalHydra

    import hepad_cli.run  # noqa: F401 - registers the resolvers the config uses

    if GlobalHydra.instance().is_initialized():
        raise RuntimeError(
            "hepad_cli.api runs hepad-run's Hydra itself: call it outside a hydra.initialize() block"
        )
    module = "hepad_cli.run"
    search_path = create_automatic_config_search_path(None, module, _CONFIG_PATH)
    return Hydra.create_main_hydra2(task_name=detect_task_name(None, module), config_search_path=search_path)


def run(overrides: Sequence[str] = ()) -> RunResult:
    """One run, as ``hepad-run <overrides>``; returns its directory and report."""
    from hydra.core.global_hydra import GlobalHydra

    from hepad_cli.run import renew_process_tag, run_in_hydra_job

    renew_process_tag()
    hydra = _hydra()
    try:
        arguments = [*overrides, "hydra.mode=RUN"]  # as hepad-run adds it
        job = hydra.run(config_name=_CONFIG_NAME, task_function=run_in_hydra_job, overrides=arguments)
    finally:
        GlobalHydra.instance().clear()
    return RunResult(Path(job.hydra_cfg.hydra.runtime.output_dir), job.return_value)


def sweep(overrides: Sequence[str] = ()) -> SweepResult:
    """A sweep, as ``hepad-run -m <overrides>``: one job per combination, a failed job does not stop the
    others, and the summary is written at the end; returns the sweep's directory and jobs."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from hepad_cli.run import app, renew_process_tag
    from hepad_cli.sweep import find_jobs

    renew_process_tag()
    hydra = _hydra()
    try:
        composed = hydra.compose_config(_CONFIG_NAME, list(overrides), run_mode=RunMode.MULTIRUN)
        # The sweep directory, fixed now, so the jobs and this function agree on it.
        directory = Path(str(composed.hydra.sweep.dir)).resolve()
        arguments = [*overrides, f"hydra.sweep.dir='{directory}'", "hydra.mode=MULTIRUN"]
        try:
            hydra.multirun(config_name=_CONFIG_NAME, task_function=app.__wrapped__, overrides=arguments)
        except SystemExit as exit_status:  # the summary callback's verdict: some job did not complete
            if exit_status.code not in (0, None):
                log.warning("sweep %s: not every job completed (see summary.md)", directory)
    finally:
        GlobalHydra.instance().clear()
    jobs = find_jobs(directory)
    jobs.sort(key=lambda job: (job.status != "complete", -job.mean_auc()))
    return SweepResult(directory, jobs)
