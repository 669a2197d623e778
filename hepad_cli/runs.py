"""A finished run, opened again: its composed config, report, fitted detector and input preprocessing.

Tools that apply a trained detector to new events (scoring, export) start here; nothing is re-fitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from hepad_cli.errors import DataError
from hepad_cli.experiment import MODEL_DIR, instantiate_node
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
        try:
            status = json.loads((directory / "status.json").read_text()).get("status")
        except (OSError, ValueError):
            raise RunDirectoryError(
                f"{directory} has no readable status.json: it is not a hepad run directory"
            ) from None
        if status != "complete":
            raise RunDirectoryError(
                f"the run in {directory} is {status!r}, not complete: only a complete run has a trained "
                "detector to apply; rerun it or pick another run"
            )
        try:
            # run_info.json holds the config as the run resolved it (paths, environment, seed).
            config = json.loads((directory / "run_info.json").read_text())["config"]
        except (OSError, ValueError, KeyError) as error:
            raise RunDirectoryError(f"{directory / 'run_info.json'} is unreadable ({error})") from None
        if not (directory / MODEL_DIR).is_dir():
            raise RunDirectoryError(f"{directory / MODEL_DIR} is missing: the run saved no model")
        return cls(directory, OmegaConf.create(config), RunReport.read(directory))

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

    def input_signature(self) -> dict:
        """What the detector's events looked like (hepad_cli.data.signature)."""
        from hepad_cli.data.signature import load_signature

        return load_signature(self.model_dir)

    def scorer(self) -> SavedScorer:
        return SavedScorer(self.detector(), self.preprocessing())


@dataclass
class SavedScorer:
    """A finished run's detector with everything it saved beside it, applied to new events: the one
    place where the saved transforms run (the input scaler before the detector; a transform of the
    scores would follow it in ``score``). Nothing is fitted."""

    detector: object
    preprocessing: object | None

    def prepare(self, events: np.ndarray) -> np.ndarray:
        """Raw events as the detector saw them in training (the saved scaler applied)."""
        return events if self.preprocessing is None else self.preprocessing.transform(events)

    def score(self, prepared: dict[str, np.ndarray]):
        """Every score of the detector for prepared events {sample: events} (experiment.Scored)."""
        from hepad_cli.experiment import score

        return score(self.detector, prepared)
