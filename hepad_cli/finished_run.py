"""Open a finished hepad-run directory: its composed config, its fitted detector and, on demand, its data.

All reading of a run directory by hepad-export goes through ``open_finished_run``, so that one function
is all that changes when run loading moves elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hepad_cli.errors import ConfigError


class RunDirectoryError(ConfigError):
    """The directory is not a complete hepad-run directory; the message says what it is instead."""


@dataclass
class FinishedRun:
    directory: Path
    config: DictConfig
    detector: object

    def load_samples(self):
        """The run's samples again (cached on disk; the same seed gives the same split). Never downloads:
        a data file the run read and that has gone since is an error, not a new download."""
        from hydra.utils import instantiate

        data = OmegaConf.to_container(self.config.data, resolve=True)
        if "download" in data:
            data["download"] = False
        return instantiate(data, _convert_="all").load()


def run_status(run_dir: Path) -> str | None:
    """The status hepad-run recorded ('running', 'complete', 'failed'), or None where there is none."""
    try:
        return json.loads((Path(run_dir) / "status.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def open_finished_run(run_dir: str | Path | None) -> FinishedRun:
    """Config and detector of a complete run; anything else raises RunDirectoryError saying why."""
    from hydra.utils import get_class

    if run_dir is None or str(run_dir).strip() == "":
        raise RunDirectoryError(
            "run_dir is required: the directory of a finished hepad-run, e.g. "
            "hepad-export run_dir=outputs/2026-01-31/12-00-00_ab12cd"
        )
    directory = Path(run_dir)
    if not directory.is_dir():
        raise RunDirectoryError(f"run_dir={run_dir} does not exist: give the directory hepad-run wrote")
    status_file = directory / "status.json"
    if not status_file.is_file():
        jobs = sorted(p.parent.name for p in directory.glob("*/status.json"))
        hint = f" It holds the runs {jobs[:4]}: pick one, e.g. run_dir={directory / jobs[0]}" if jobs else ""
        raise RunDirectoryError(f"run_dir={run_dir} is not a hepad-run directory (no status.json).{hint}")
    status = run_status(directory)
    if status != "complete":
        raise RunDirectoryError(
            f"run_dir={run_dir} has status {status!r}, not 'complete': only a finished run can be exported "
            "(see its status.json and hepad.log; rerun hepad-run)"
        )
    config_file = directory / ".hydra" / "config.yaml"
    if not config_file.is_file() or not (directory / "model").is_dir():
        raise RunDirectoryError(
            f"run_dir={run_dir} lacks .hydra/config.yaml or model/: it is not a whole run"
        )
    config = OmegaConf.load(config_file)
    detector = get_class(config.model._target_).load(directory / "model")
    return FinishedRun(directory, config, detector)
