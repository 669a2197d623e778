"""A finished run, opened again: its composed config, report, fitted detector and input preprocessing.

Tools that apply a trained detector to new events (scoring, export) start here; nothing is re-fitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hepad_cli.errors import DataError
from hepad_cli.experiment import MODEL_DIR, instantiate_node
from hepad_cli.provenance import read_status, record_mismatch
from hepad_cli.report import RunReport


class RunDirectoryError(DataError):
    """A directory that is not a complete hepad run."""


@dataclass
class FinishedRun:
    directory: Path
    config: DictConfig
    report: RunReport

    @classmethod
    def open(cls, directory: str | Path) -> FinishedRun:
        """The complete run in ``directory``; RunDirectoryError says why a directory does not qualify."""
        directory = Path(directory).expanduser().resolve()
        if not directory.is_dir():
            raise RunDirectoryError(
                f"run_dir={directory} is not a directory: name a run directory under outputs/"
            )
        record = read_status(directory)
        if record is None:
            raise RunDirectoryError(
                f"{directory} has no readable status.json: it is not a hepad run directory"
            )
        status = record.get("status")
        if status != "complete":
            raise RunDirectoryError(
                f"the run in {directory} is {status!r}, not complete: only a complete run has a trained "
                "detector to apply; rerun it or pick another run"
            )
        try:
            # run_info.json holds the config as the run resolved it (paths, environment, seed).
            info = json.loads((directory / "run_info.json").read_text())
            config = info["config"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise RunDirectoryError(f"{directory / 'run_info.json'} is unreadable ({error})") from None
        if not (directory / MODEL_DIR).is_dir():
            raise RunDirectoryError(f"{directory / MODEL_DIR} is missing: the run saved no model")
        report = RunReport.read(directory)
        mismatch = record_mismatch(record, info, report.run_id)
        if mismatch:
            raise RunDirectoryError(f"{directory}: {mismatch}; rerun it or pick another run")
        return cls(directory, OmegaConf.create(config), report)

    @property
    def model_dir(self) -> Path:
        return self.directory / MODEL_DIR

    def detector(self):
        """The fitted detector, loaded (safe loading only) by the class that saved it."""
        from hydra.utils import get_class

        return get_class(self.config.model._target_).load(self.model_dir)

    def preprocessing(self):
        """The input scaler fitted on the run's background training events (None: raw inputs)."""
        from hepad_cli.data.scaling import load_preprocessing

        return load_preprocessing(self.model_dir)

    def dataset(self):
        """The run's dataset, built from its saved config (its files are cached; the split is seeded)."""
        return instantiate_node(self.config.data)
