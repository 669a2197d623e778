"""A dataset and a detector added from outside hepad: one module plus one YAML file each.

docs/design.md walks through this file; tests/test_extension.py runs it end to end with ``hepad-run``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hepad_cli.data.dataset import Dataset, DatasetContent, EventSample
from hepad_cli.errors import DataError
from hepad_cli.io import atomic_path
from hepad_cli.models.base import Detector, flatten, unlabelled
from hepad_cli.validation import check_int, check_number


class GaussianBlobs(Dataset):
    """Background: correlated Gaussian features; signal "shifted": the same, shifted by ``shift``.

    ``read`` is all a dataset implements: the base subsamples, splits, scales and builds Samples.
    """

    def __init__(self, *, data_dir, n_background, n_signal, n_features, shift, split, seed, scaling):
        super().__init__(split=split, seed=seed, scaling=scaling)
        self.data_dir = data_dir
        self.n_background = check_int("data.n_background", n_background, error=DataError)
        self.n_signal = check_int("data.n_signal", n_signal, error=DataError)
        self.n_features = check_int("data.n_features", n_features, minimum=2, error=DataError)
        self.shift = check_number("data.shift", shift, error=DataError)

    def read(self) -> DatasetContent:
        rng = np.random.default_rng(1234)  # the sample itself is fixed; ``seed`` drives the split
        mixing = rng.normal(size=(self.n_features, self.n_features)) / np.sqrt(self.n_features)
        background = rng.normal(size=(self.n_background, self.n_features)) @ mixing
        signal = rng.normal(size=(self.n_signal, self.n_features)) @ mixing + self.shift
        # Observables ride along for plots and checks; they are never detector inputs.
        return DatasetContent(
            background=EventSample(background, {"norm": np.linalg.norm(background, axis=1)}),
            signals={"shifted": EventSample(signal, {"norm": np.linalg.norm(signal, axis=1)})},
            provenance=[{"path": "generated in memory", "md5": None, "verified": True}],
        )


class MahalanobisDistance(Detector):
    """Score = squared Mahalanobis distance from the background mean (a Gaussian's log-likelihood)."""

    score_name = "mahalanobis_distance"

    def __init__(self, shrinkage: float = 1e-6, seed: int = 0) -> None:
        self.shrinkage = check_number("model.shrinkage", shrinkage, low=0)
        self.seed = seed

    def fit(self, train, val=None) -> MahalanobisDistance:
        x = flatten(unlabelled(train)).astype(np.float64)
        covariance = np.cov(x, rowvar=False) + self.shrinkage * np.eye(x.shape[1])
        self.mean_ = x.mean(axis=0)
        self.precision_ = np.linalg.inv(covariance)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        centred = flatten(x).astype(np.float64) - self.mean_
        return np.einsum("ij,jk,ik->i", centred, self.precision_, centred)

    def save(self, directory) -> None:
        directory = Path(directory)
        self._save_params(directory)
        with atomic_path(directory / "mahalanobis.npz", suffix=".partial.npz") as tmp:
            np.savez(tmp, mean=self.mean_, precision=self.precision_)

    @classmethod
    def load(cls, directory) -> MahalanobisDistance:
        detector = cls(**cls._read_params(Path(directory)))
        with np.load(Path(directory) / "mahalanobis.npz", allow_pickle=False) as stored:
            detector.mean_, detector.precision_ = stored["mean"], stored["precision"]
        return detector
