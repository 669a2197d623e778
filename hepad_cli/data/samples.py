"""The one container every dataset hands to the pipeline, and the background split."""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Input data that cannot give a trustworthy result (wrong shape, NaN, empty, leaked signal)."""


@dataclass
class Samples:
    """Background splits and named signal samples, float32 and C-contiguous, one event per row.

    observables maps a sample name ("background_test" or a signal name) to per-event quantities kept
    for plots (e.g. {"mass": GeV, "pt": GeV}). provenance lists the files read, with checksums.

    Weak supervision (the declared exception to background-only training; None for every other
    dataset): train_labels / val_labels give each training / validation row a global label (1 = good,
    0 = anomalous), train_weights / val_weights a per-row weight, feature_groups names column groups of
    the features, and supervision says in words which labels training used (it goes into auc.json).
    """

    background_train: np.ndarray
    background_val: np.ndarray
    background_test: np.ndarray
    signals: dict[str, np.ndarray]
    observables: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    provenance: list[dict] = field(default_factory=list)
    representation: str = "features"
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    train_weights: np.ndarray | None = None
    val_weights: np.ndarray | None = None
    feature_groups: dict[str, list[int]] | None = None
    supervision: str | None = None

    def __post_init__(self) -> None:
        self.background_train = _as_events("background_train", self.background_train)
        self.background_val = _as_events("background_val", self.background_val)
        self.background_test = _as_events("background_test", self.background_test)
        if not self.signals:
            raise DataError("no signal sample was given: an anomaly-detection run needs at least one")
        self.signals = {name: _as_events(f"signal '{name}'", x) for name, x in self.signals.items()}
        shape = self.background_train.shape[1:]
        for name, x in self.named_test_samples().items():
            if x.shape[1:] != shape:
                raise DataError(f"{name} has event shape {x.shape[1:]}, background_train has {shape}")
        for split in ("train", "val"):
            rows = len(getattr(self, f"background_{split}"))
            for name in (f"{split}_labels", f"{split}_weights"):
                values = getattr(self, name)
                if values is not None and len(values) != rows:
                    raise DataError(f"{name} has {len(values)} entries for {rows} background_{split} rows")

    def fit_extras(self, detector=None) -> dict:
        """Keyword arguments for ``detector.fit`` beyond (train, val): {} for unsupervised data.

        Labelled training data given to a detector whose ``fit`` takes no ``y_train`` is an error, never
        silently treated as background; other extras are passed only where ``fit`` accepts them.
        """
        extras = {
            "y_train": self.train_labels,
            "y_val": self.val_labels,
            "w_train": self.train_weights,
            "w_val": self.val_weights,
            "feature_groups": self.feature_groups,
        }
        extras = {key: value for key, value in extras.items() if value is not None}
        if detector is None or not extras:
            return extras
        accepted = inspect.signature(detector.fit).parameters
        if "y_train" in extras and "y_train" not in accepted:
            raise DataError(
                f"the training sample holds labelled good and bad events ({self.supervision}), but "
                f"{type(detector).__name__} trains unsupervised on background only: choose a detector that "
                "takes labels, or background-only training data (for cms_dqm: data.training=good_only)"
            )
        return {key: value for key, value in extras.items() if key in accepted}

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.background_train.shape[1:])

    def named_test_samples(self) -> dict[str, np.ndarray]:
        """Everything that is scored: the background test split first, then each signal."""
        return {"background": self.background_test, **self.signals}

    def counts(self) -> dict[str, int]:
        return {
            "background_train": len(self.background_train),
            "background_val": len(self.background_val),
            "background_test": len(self.background_test),
            **{f"signal_{name}": len(x) for name, x in self.signals.items()},
        }


def _as_events(name: str, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"{name} is empty or has no feature axis (shape {x.shape})")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x.reshape(len(x), -1))).any(axis=1).sum())
        raise DataError(f"{name} holds {bad} events with NaN or infinite values; clean the input file")
    return x


def split_background(n_events: int, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Seeded random split of ``n_events`` row numbers into train/val/test by the given fractions."""
    names = ("train", "val", "test")
    values = np.array([float(fractions[name]) for name in names])
    if (values <= 0).any() or not np.isclose(values.sum(), 1.0):
        raise DataError(f"split fractions must be positive and sum to 1, got {dict(fractions)}")
    counts = np.floor(values * n_events).astype(int)
    counts[0] += n_events - counts.sum()
    if (counts < 2).any():
        raise DataError(
            f"background of {n_events} events is too small to split into train/val/test {dict(fractions)}: "
            "each part needs at least 2 events; use more events (data.n_background / data.max_jets)"
        )
    order = np.random.default_rng(seed).permutation(n_events)
    bounds = np.cumsum(counts)[:-1]
    return dict(zip(names, np.split(order, bounds), strict=True))


def assert_background_only(training: np.ndarray, signals: dict[str, np.ndarray]) -> None:
    """Fail if any signal event appears verbatim in the training sample (the unsupervised contract)."""
    flat_train = training.reshape(len(training), -1)
    # A random projection fingerprints each row; only rows with equal fingerprints are compared exactly.
    projection = np.random.default_rng(0).normal(size=flat_train.shape[1])
    train_prints = flat_train.astype(np.float64) @ projection
    order = np.argsort(train_prints)
    sorted_prints = train_prints[order]
    for name, x in signals.items():
        flat = x.reshape(len(x), -1)
        prints = flat.astype(np.float64) @ projection
        first = np.searchsorted(sorted_prints, prints, side="left")
        last = np.searchsorted(sorted_prints, prints, side="right")
        leaked = 0
        for i in np.flatnonzero(last > first):
            same_print = flat_train[order[first[i] : last[i]]]
            leaked += bool(np.any(np.all(same_print == flat[i], axis=1)))
        if leaked:
            raise DataError(
                f"{leaked} events of signal '{name}' are also in the background training sample; "
                "training must see background only: check the signal and background files"
            )


def standard_scale(train: np.ndarray, *others: np.ndarray) -> tuple[list[np.ndarray], dict]:
    """StandardScaler fitted on ``train`` only (features on the last axes), applied to train and others.

    Returns the scaled arrays (float32) and the scaler's mean and scale, for the log and provenance.
    """
    from sklearn.preprocessing import StandardScaler

    shape = train.shape[1:]
    scaler = StandardScaler().fit(train.reshape(len(train), -1).astype(np.float64))
    scaled = [
        scaler.transform(x.reshape(len(x), -1).astype(np.float64)).astype(np.float32).reshape(len(x), *shape)
        for x in (train, *others)
    ]
    return scaled, {
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "fitted_on_events": len(train),
    }


def scale_background_and_signals(
    parts: dict[str, np.ndarray], signals: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """standard_scale fitted on parts["train"]; returns the scaled splits, signals and the scaler."""
    names = list(signals)
    scaled, scaler = standard_scale(parts["train"], parts["val"], parts["test"], *(signals[n] for n in names))
    return (
        dict(zip(("train", "val", "test"), scaled[:3], strict=True)),
        dict(zip(names, scaled[3:], strict=True)),
        scaler,
    )


def open_hdf5(path, remedy: str, error: type[Exception] = DataError):
    """h5py.File(path, "r"), or ``error`` saying the file is unreadable and what to do about it."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as cause:
        raise error(f"{path} is not a readable HDF5 file ({cause}); {remedy}") from cause
