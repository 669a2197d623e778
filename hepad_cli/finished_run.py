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
        """The run's samples again (cached on disk; the same seed gives the same split).

        Only from the files the run read, as its run_info.json lists them: a file that is missing (or
        a relative path seen from another directory) is an error, never a new download or generation,
        and a file whose checksum changed since is an error too.
        """
        from hydra.utils import instantiate

        self.check_data_files()
        located = self._located
        recorded = [entry for entry in self._recorded_data() if entry.get("path")]
        data = OmegaConf.to_container(self.config.data, resolve=True)
        if isinstance(data.get("data_dir"), str):
            data["data_dir"] = str(located(data["data_dir"]))
        if "download" in data:
            data["download"] = False
        samples = instantiate(data, _convert_="all").load()
        now = {
            str(located(entry["path"])): entry.get("md5") for entry in samples.provenance if "path" in entry
        }
        changed = [
            entry["path"]
            for entry in recorded
            if entry.get("md5") and now.get(str(located(entry["path"]))) != entry["md5"]
        ]
        if changed:
            raise RunDirectoryError(
                f"{located(changed[0])} is not the file the run read (its checksum differs, or the data "
                "now come from elsewhere): the detector cannot be compared on other data"
            )
        return samples

    def check_data_files(self) -> None:
        """Every data file the run read must still be where it read it."""
        for entry in self._recorded_data():
            if entry.get("path") and not self._located(entry["path"]).is_file():
                raise RunDirectoryError(
                    f"the run read {self._located(entry['path'])}, which is not there any more: hepad-export "
                    "re-reads the run's own data files and never downloads or generates them again"
                )

    def _located(self, path: str) -> Path:
        # Relative data paths were relative to the directory hepad-run ran in.
        return Path(path) if Path(path).is_absolute() else self.run_cwd / path

    @property
    def run_cwd(self) -> Path:
        """The directory hepad-run ran in (Hydra records it), where relative data paths start."""
        try:
            hydra_record = OmegaConf.load(self.directory / ".hydra" / "hydra.yaml")
            return Path(hydra_record.hydra.runtime.cwd)
        except (OSError, AttributeError, ValueError):
            return Path.cwd()

    def _recorded_data(self) -> list[dict]:
        try:
            return list(json.loads((self.directory / "run_info.json").read_text()).get("data", []))
        except (OSError, ValueError):
            return []


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
