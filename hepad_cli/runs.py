"""A finished run, opened again: its config, report, fitted detector, input preprocessing and its data.

Tools that apply a trained detector (scoring new files, firmware export) start here; nothing is re-fitted,
and a run's data are re-read only from the files it read (never downloaded or generated again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from hepad_cli.errors import DataError
from hepad_cli.experiment import MODEL_DIR, instantiate_node
from hepad_cli.provenance import read_status, record_mismatch
from hepad_cli.report import RunReport


class RunDirectoryError(DataError):
    """The directory is not a complete hepad-run directory; the message says what it is instead."""


def run_status(run_dir: str | Path) -> str | None:
    """The status hepad-run recorded ('running', 'complete', 'failed'), or None where there is none."""
    record = read_status(Path(run_dir))
    return None if record is None else record.get("status")


@dataclass
class FinishedRun:
    directory: Path
    config: DictConfig
    report: RunReport
    info: dict = field(repr=False)

    @classmethod
    def open(cls, run_dir: str | Path | None) -> FinishedRun:
        """The complete run in ``run_dir``; RunDirectoryError says why a directory does not qualify."""
        if run_dir is None or str(run_dir).strip() == "":
            raise RunDirectoryError(
                "run_dir is required: the directory of a finished hepad-run, e.g. "
                "run_dir=outputs/2026-01-31/12-00-00_ab12cd"
            )
        directory = Path(run_dir).expanduser()
        if not directory.is_dir():
            raise RunDirectoryError(f"run_dir={run_dir} does not exist: give the directory hepad-run wrote")
        record = read_status(directory)
        if record is None:
            jobs = sorted(p.parent.name for p in directory.glob("*/status.json"))
            hint = (
                f" It holds the runs {jobs[:4]}: pick one, e.g. run_dir={directory / jobs[0]}" if jobs else ""
            )
            raise RunDirectoryError(
                f"run_dir={run_dir} is not a hepad-run directory (no readable status.json).{hint}"
            )
        status = record.get("status")
        if status != "complete":
            raise RunDirectoryError(
                f"run_dir={run_dir} has status {status!r}, not 'complete': only a finished run has a trained "
                "detector to apply (see its status.json and hepad.log; rerun hepad-run)"
            )
        try:
            # run_info.json holds the config as the run resolved it (paths, environment, seed).
            info = json.loads((directory / "run_info.json").read_text())
            config = OmegaConf.create(info["config"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise RunDirectoryError(f"{directory / 'run_info.json'} is unreadable ({error})") from None
        if not (directory / MODEL_DIR).is_dir():
            raise RunDirectoryError(f"run_dir={run_dir} lacks {MODEL_DIR}/: the run saved no model")
        report = RunReport.read(directory)
        mismatch = record_mismatch(record, info, report.run_id)
        if mismatch:
            raise RunDirectoryError(f"{directory}: {mismatch}; rerun it or pick another run")
        return cls(directory, config, report, info)

    @property
    def model_dir(self) -> Path:
        return self.directory / MODEL_DIR

    @cached_property
    def detector(self):
        """The fitted detector, loaded (safe loading only) by the class that saved it."""
        from hydra.utils import get_class

        return get_class(self.config.model._target_).load(self.model_dir)

    def preprocessing(self):
        """The input scaler fitted on the run's background training events (None: raw inputs)."""
        from hepad_cli.data.scaling import load_preprocessing

        return load_preprocessing(self.model_dir)

    @property
    def run_cwd(self) -> Path:
        """The directory hepad-run ran in (Hydra records it), where relative data paths start."""
        try:
            return Path(OmegaConf.load(self.directory / ".hydra" / "hydra.yaml").hydra.runtime.cwd)
        except (OSError, AttributeError, ValueError):
            return Path.cwd()

    def located(self, path: str | Path) -> Path:
        """A path of the run's record, made absolute from the directory the run ran in."""
        return Path(path) if Path(path).is_absolute() else self.run_cwd / path

    def check_data_files(self) -> None:
        """Every data file the run read must still be where it read it."""
        for entry in self.info.get("data", []):
            if entry.get("path") and not self.located(entry["path"]).is_file():
                raise RunDirectoryError(
                    f"the run read {self.located(entry['path'])}, which is not there any more: a finished "
                    "run's data are re-read from its own files, never downloaded or generated again"
                )

    def load_samples(self):
        """The run's samples again, from the files it read (the same seed gives the same split).

        A file that is missing or whose checksum changed since is an error, never a new download or
        generation.
        """
        self.check_data_files()
        data = OmegaConf.to_container(self.config.data, resolve=True)
        if isinstance(data.get("data_dir"), str):
            data["data_dir"] = str(self.located(data["data_dir"]))
        if "download" in data:
            data["download"] = False
        samples = instantiate_node(OmegaConf.create(data)).load()
        now = {str(self.located(e["path"])): e.get("md5") for e in samples.provenance if "path" in e}
        changed = [
            entry["path"]
            for entry in self.info.get("data", [])
            if entry.get("md5") and now.get(str(self.located(entry["path"]))) != entry["md5"]
        ]
        if changed:
            raise RunDirectoryError(
                f"{self.located(changed[0])} is not the file the run read (its checksum differs, or the data "
                "now come from elsewhere): the detector cannot be compared on other data"
            )
        return samples

    def input_signature(self) -> dict:
        """What the detector's events looked like (hepad_cli.data.signature)."""
        from hepad_cli.data.signature import load_signature

        return load_signature(self.model_dir)

    def decorrelation(self):
        """The score's decorrelation transform fitted on background (None: the run has none)."""
        from hepad_cli.evaluation import decorrelation

        return decorrelation.load(self.model_dir)

    def scorer(self) -> SavedScorer:
        return SavedScorer(self.detector, self.preprocessing(), self.decorrelation())


@dataclass
class SavedScorer:
    """A finished run's detector with everything it saved beside it, applied to new events: the one
    place where the saved transforms run (the input scaler before the detector, the decorrelation of the
    primary score after it). Nothing is fitted."""

    detector: object
    preprocessing: object | None
    decorrelation: object | None = None

    def prepare(self, events: np.ndarray) -> np.ndarray:
        """Raw events as the detector saw them in training (the saved scaler applied)."""
        return events if self.preprocessing is None else self.preprocessing.transform(events)

    def score(self, prepared: dict[str, np.ndarray], observables: dict[str, dict] | None = None):
        """Every score of the detector for prepared events {sample: events} (experiment.Scored), and the
        decorrelated primary score where the run has one (it needs the sample's observable)."""
        from hepad_cli.experiment import score

        scored = score(self.detector, prepared)
        if self.decorrelation is not None:
            scored.decorrelated = {
                sample: self.decorrelation.apply(
                    scored.primary_scores[sample],
                    _observable(observables, sample, self.decorrelation.observable),
                )
                for sample in prepared
            }
        return scored


def _observable(observables: dict[str, dict] | None, sample: str, name: str) -> np.ndarray:
    values = (observables or {}).get(sample, {}).get(name)
    if values is None:
        raise RunDirectoryError(
            f"the run's decorrelated score is flat in {name!r}, which these events do not carry: score "
            "inputs that give it (e.g. constituents for the jet mass)"
        )
    return values
