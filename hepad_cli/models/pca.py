"""PCA reconstruction error: the linear baseline of the top-jet image notebook."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.io import atomic_path
from hepad_cli.models.base import Detector, check_latent_dim, flatten, unlabelled


class PCAReconstruction(Detector):
    """Score = mean squared difference between an event and its projection on ``latent_dim`` components."""

    score_name = "reconstruction_mse"
    has_latent_space = True
    reconstructs_input = True

    def __init__(self, latent_dim: int = 2, seed: int = 0) -> None:
        self.latent_dim = latent_dim
        self.seed = seed
        check_latent_dim(latent_dim)

    def fit(self, train: np.ndarray, val: np.ndarray | None = None) -> PCAReconstruction:
        from sklearn.decomposition import PCA

        x_train = unlabelled(train)
        flat = flatten(x_train).astype(np.float64)
        check_latent_dim(self.latent_dim, flat.shape[1])
        if self.latent_dim > len(flat):
            raise ConfigError(f"model.latent_dim={self.latent_dim} exceeds the {len(flat)} training events")
        pca = PCA(n_components=self.latent_dim, svd_solver="full", random_state=self.seed).fit(flat)
        self.event_shape_ = tuple(x_train.shape[1:])
        self.mean_ = pca.mean_.astype(np.float64)
        self.components_ = pca.components_.astype(np.float64)
        self.explained_variance_ratio_ = pca.explained_variance_ratio_
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        return (flatten(x) - self.mean_) @ self.components_.T

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        flat = self.encode(x) @ self.components_ + self.mean_
        return flat.reshape((len(x), *self.event_shape_)).astype(np.float32)

    def score(self, x: np.ndarray) -> np.ndarray:
        flat = flatten(x).astype(np.float64)
        residual = flat - ((flat - self.mean_) @ self.components_.T @ self.components_ + self.mean_)
        return np.mean(residual**2, axis=1)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self._save_params(directory)
        with atomic_path(directory / "pca.npz", suffix=".partial.npz") as tmp:
            np.savez(
                tmp,
                mean=self.mean_,
                components=self.components_,
                explained_variance_ratio=self.explained_variance_ratio_,
                event_shape=np.array(self.event_shape_),
            )

    @classmethod
    def load(cls, directory: str | Path) -> PCAReconstruction:
        detector = cls(**cls._read_params(Path(directory)))
        with np.load(Path(directory) / "pca.npz", allow_pickle=False) as stored:
            detector.mean_ = stored["mean"]
            detector.components_ = stored["components"]
            detector.explained_variance_ratio_ = stored["explained_variance_ratio"]
            detector.event_shape_ = tuple(int(v) for v in stored["event_shape"])
        return detector
