"""The one small interface every detector shares, as scikit-learn estimators share fit/predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.io import atomic_write_json


class Detector:
    """fit(background train, background val) → self; score(x) → one anomaly score per event (higher =
    more anomalous). ``__init__`` only stores its arguments; learned state ends in ``_``.

    Optional: ``encode(x)`` → latent coordinates (n, latent_dim); ``reconstruct(x)`` → same shape as x;
    ``history_`` → per-epoch training curves.
    """

    score_name: ClassVar[str] = "anomaly_score"
    history_: dict[str, list[float]] | None = None

    def fit(self, x_train: np.ndarray, x_val: np.ndarray | None = None) -> Detector:
        raise NotImplementedError

    def score(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def save(self, directory: str | Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: str | Path) -> Detector:
        raise NotImplementedError

    def get_params(self) -> dict:
        return {key: value for key, value in vars(self).items() if not key.endswith("_")}

    def _save_params(self, directory: Path) -> None:
        atomic_write_json(directory / "params.json", {"class": type(self).__qualname__, **self.get_params()})

    @staticmethod
    def _read_params(directory: Path) -> dict:
        params = json.loads((Path(directory) / "params.json").read_text())
        params.pop("class")
        return params


def flatten(x: np.ndarray) -> np.ndarray:
    """(n, ...) → (n, features) without a copy where possible."""
    return x.reshape(len(x), -1)


def check_latent_dim(latent_dim: object, n_features: int | None = None) -> int:
    """latent_dim must be a positive integer, and no larger than the input when the input is known."""
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim <= 0:
        raise ConfigError(f"model.latent_dim must be a positive integer, got {latent_dim!r}")
    if n_features is not None and latent_dim > n_features:
        raise ConfigError(
            f"model.latent_dim={latent_dim} is larger than the input ({n_features} features): "
            "a bottleneck must be smaller than what it compresses"
        )
    return latent_dim
