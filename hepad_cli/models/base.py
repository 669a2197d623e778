"""The detector contract: an abstract base every detector implements, as scikit-learn estimators share
fit/predict. docs/design.md walks through adding a detector.

What a detector can do beyond fit/score is declared on its class, and the pipeline asks those
declarations (never ``hasattr``): ``has_latent_space`` (``encode``), ``reconstructs_input``
(``reconstruct``), ``needs_labels`` (weak supervision: ``fit`` takes ``TrainingSet`` objects with labels),
``score_names`` (several named scores, the first is the primary one), ``history_`` (per-epoch curves).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from hepad_cli.data.samples import TrainingSet
from hepad_cli.errors import ConfigError
from hepad_cli.io import atomic_write_json
from hepad_cli.validation import check_int


class Detector(ABC):
    """fit(background train, background val) → self; score(x) → one anomaly score per event (higher =
    more anomalous). ``__init__`` only stores and checks its arguments; learned state ends in ``_``.

    ``fit`` takes event arrays (n, ...) or, for a detector that ``needs_labels``, ``TrainingSet`` objects.
    """

    score_name: ClassVar[str] = "anomaly_score"
    has_latent_space: ClassVar[bool] = False
    reconstructs_input: ClassVar[bool] = False
    needs_labels: ClassVar[bool] = False
    #: ``fit(..., callbacks=[...])`` takes Keras callbacks called every epoch (per-epoch logging).
    takes_epoch_callbacks: ClassVar[bool] = False
    history_: dict[str, list[float]] | None = None
    #: Where the fit ran: Keras backend, accelerators, device (None: plain CPU code).
    compute_: dict | None = None

    @abstractmethod
    def fit(self, train: np.ndarray | TrainingSet, val: np.ndarray | TrainingSet | None = None) -> Detector:
        """Learn from background training events (and validation events, where the detector uses them)."""

    @abstractmethod
    def score(self, x: np.ndarray) -> np.ndarray:
        """(n,) float64 anomaly scores of events x (n, ...)."""

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write the fitted detector into ``directory`` (params.json plus its own files; no pickle)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path) -> Detector:
        """The detector ``save`` wrote, ready to score (safe loading only)."""

    @property
    def score_names(self) -> list[str]:
        """Every score the detector reports; the first is the primary one (``score``)."""
        return [self.score_name]

    def score_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every score of ``score_names`` for events x; detectors with several scores compute them at once."""
        return {self.score_name: self.score(x)}

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Latent coordinates (n, latent_dim), where ``has_latent_space``."""
        raise NotImplementedError(f"{type(self).__name__} has no latent space")

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """The detector's reconstruction of x (same shape), where ``reconstructs_input``."""
        raise NotImplementedError(f"{type(self).__name__} does not reconstruct its input")

    def extra_report(self, samples, scores_by_name: dict, out_dir: Path, settings) -> dict:
        """Detector-specific auc.json entries (and a "figures" list); none by default."""
        return {}

    def get_params(self) -> dict:
        return {key: value for key, value in vars(self).items() if not key.endswith("_")}

    def _save_params(self, directory: Path) -> None:
        atomic_write_json(directory / "params.json", {"class": type(self).__qualname__, **self.get_params()})

    @staticmethod
    def _read_params(directory: Path) -> dict:
        params = json.loads((Path(directory) / "params.json").read_text())
        params.pop("class")
        return params


def unlabelled(train: np.ndarray | TrainingSet) -> np.ndarray:
    """The events of an unsupervised detector's training input (a TrainingSet with labels is refused)."""
    if isinstance(train, TrainingSet):
        if train.labels is not None:
            raise ConfigError("this detector trains on background only and takes no labels")
        return train.x
    return train


def flatten(x: np.ndarray) -> np.ndarray:
    """(n, ...) → (n, features) without a copy where possible."""
    return x.reshape(len(x), -1)


def check_latent_dim(latent_dim: object, n_features: int | None = None) -> int:
    """latent_dim must be a positive integer, and no larger than the input when the input is known."""
    check_int("model.latent_dim", latent_dim)
    if n_features is not None and latent_dim > n_features:
        raise ConfigError(
            f"model.latent_dim={latent_dim} is larger than the input ({n_features} features): "
            "a bottleneck must be smaller than what it compresses"
        )
    return int(latent_dim)
