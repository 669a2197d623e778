"""Input scalers: objects built from the ``data.scaling`` setting, fitted on background training events
only, applied to every sample, and saved beside the model as plain JSON so that a finished detector
scores new files with exactly the transform it was trained with (never re-fitted).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hepad_cli.errors import DataError
from hepad_cli.io import atomic_write_json
from hepad_cli.validation import check_choice

SCALINGS = (None, "standard")
FILE = "preprocessing.json"


class StandardScaler:
    """(x − mean) / scale per feature, as scikit-learn's StandardScaler (scale = std, 1 where std = 0).

    Events of any shape: every entry of the event (its flattened features) has its own mean and scale.
    """

    kind = "standard"

    def __init__(self, mean: np.ndarray | None = None, scale: np.ndarray | None = None, n_fitted: int = 0):
        self.mean_ = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.scale_ = None if scale is None else np.asarray(scale, dtype=np.float64)
        self.n_fitted_ = int(n_fitted)

    def fit(self, train: np.ndarray) -> StandardScaler:
        from sklearn.preprocessing import StandardScaler as SklearnScaler

        scaler = SklearnScaler().fit(train.reshape(len(train), -1).astype(np.float64))
        self.mean_, self.scale_, self.n_fitted_ = scaler.mean_, scaler.scale_, len(train)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        if self.mean_ is None:
            raise DataError("the scaler has not been fitted")
        if flat.shape[1] != len(self.mean_):
            raise DataError(
                f"the scaler was fitted on {len(self.mean_)} features per event, "
                f"got events with {flat.shape[1]}"
            )
        scaled = (flat.astype(np.float64) - self.mean_) / self.scale_
        return scaled.astype(np.float32).reshape(x.shape)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "fitted_on_events": self.n_fitted_,
        }


def build_scaler(kind: str | None, key: str = "data.scaling") -> StandardScaler | None:
    """The scaler a ``data.scaling`` value names (None: raw values)."""
    check_choice(key, kind, SCALINGS, hint="null = raw values", error=DataError)
    return StandardScaler() if kind == "standard" else None


def save_preprocessing(directory: str | Path, scaler: StandardScaler | None) -> None:
    """preprocessing.json: the fitted scaler (or {"kind": null}), always written so its absence means
    the model directory is incomplete."""
    atomic_write_json(Path(directory) / FILE, scaler.to_dict() if scaler is not None else {"kind": None})


def load_preprocessing(directory: str | Path) -> StandardScaler | None:
    path = Path(directory) / FILE
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read the saved input scaler {path}: {error}") from error
    if stored.get("kind") is None:
        return None
    if stored["kind"] != StandardScaler.kind:
        raise DataError(f"{path}: unknown scaler kind {stored['kind']!r}")
    return StandardScaler(stored["mean"], stored["scale"], stored.get("fitted_on_events", 0))
