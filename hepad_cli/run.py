"""hepad-run: the Hydra entry point. Thin on purpose: compose, then hand over to experiment.run."""

from __future__ import annotations

import errno
import logging
import os
import secrets
import sys
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


def run_in_hydra_job(cfg: DictConfig):
    """The run of one composed config in the directory Hydra made for it: the work of hepad-run and of
    hepad_cli.api.run alike. Returns the RunReport."""
    from hydra.core.hydra_config import HydraConfig

    from hepad_cli.experiment import run

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    log.info("run directory: %s", out_dir.resolve())
    return run(cfg, out_dir, list(hydra_cfg.overrides.task))


@hydra.main(version_base="1.3", config_path="pkg://hepad_cli.conf", config_name="config")
def app(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from hepad_cli.errors import user_errors

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        report = run_in_hydra_job(cfg)
    except Exception as error:
        known = isinstance(error, user_errors()) or getattr(error, "errno", None) == errno.ENOSPC
        if in_sweep:
            # One failed job must not stop the sweep: its status.json says failed, the summary shows it.
            log.error("job failed: %s: %s", type(error).__name__, error, exc_info=not known)
            print(f"hepad-run: job {hydra_cfg.job.num} failed: {error}", file=sys.stderr)
            return float("nan")  # an optimising sweeper (Optuna) records the trial as failed
        if not known:
            raise
        log.error("%s", error)
        print(f"hepad-run: error: {error}", file=sys.stderr)
        print(f"hepad-run: the run is marked failed in {out_dir / 'status.json'}", file=sys.stderr)
        raise SystemExit(1) from None
    for warning in report.warnings:
        print(f"hepad-run: warning: {warning}", file=sys.stderr)
    aucs = ", ".join(f"{name} AUC {r.auc:.3f}" for name, r in report.signals.items())
    print(f"hepad-run: {aucs}\nhepad-run: results in {out_dir.resolve()}", file=sys.stderr)
    # The objective an optimising sweeper maximises.
    return report.mean_auc()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
