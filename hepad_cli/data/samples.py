"""The one container every dataset hands to the pipeline, what a detector trains on, and the split."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from hepad_cli.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "DataError",
    "Samples",
    "TrainingSet",
    "split_background",
    "assert_background_only",
    "rows_also_in",
]

#: Declared per-event observables that are not detector inputs. ``EVENT_WEIGHT``: the weight of each
#: test event in weighted AUCs (luminosity for CMS lumisections); ``SUBSYSTEM_FLAG_PREFIX`` + name: an
#: expert's per-subsystem flag of each test event (1 = good, 0 = bad), evaluated against, never trained on.
EVENT_WEIGHT = "weight"
SUBSYSTEM_FLAG_PREFIX = "subsystem_"


@dataclass(frozen=True)
class TrainingSet:
    """What a detector trains on: events x (n, ...) and, for weak supervision only, a global label per
    event (1 = good, 0 = anomalous), a weight per event, and named groups of feature columns."""

    x: np.ndarray
    labels: np.ndarray | None = None
    weights: np.ndarray | None = None
    column_groups: dict[str, list[int]] | None = None

    def __post_init__(self) -> None:
        for name in ("labels", "weights"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.x):
                raise DataError(f"training {name} has {len(values)} entries for {len(self.x)} events")


@dataclass
class Samples:
    """Background splits and named signal samples, float32 and C-contiguous, one event per row.

    observables maps a sample name ("background" for the background test split, or a signal name) to
    per-event quantities kept for plots and evaluation, never given to the detector (e.g. {"mass": GeV,
    "pt": GeV}, ``EVENT_WEIGHT``, ``SUBSYSTEM_FLAG_PREFIX``-flags). provenance lists the files read, with
    checksums. preprocessing is the fitted input transform (a scaler fitted on background_train only, or
    None); the pipeline saves it with the model so a finished detector can score new files, with the
    dataset's input_signature (hepad_cli.data.signature).

    Weak supervision (the declared exception to background-only training; None for every other
    dataset): train_labels / val_labels give each training / validation row a global label (1 = good,
    0 = anomalous), train_weights / val_weights a per-row weight, feature_groups names column groups of
    the features, and supervision says in words which labels training used (it goes into auc.json).

    background_val_observables: the observables of the background validation split (what a background-only
    transform of the scores, such as the decorrelation, is fitted on). trained_on: the signal that was
    trained on in the inverse task (None: the usual background).

    warnings: what the dataset's checks found that leaves the result usable (they go into auc.json).
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
    preprocessing: object | None = None
    input_signature: dict = field(default_factory=dict)
    background_val_observables: dict[str, np.ndarray] = field(default_factory=dict)
    trained_on: str | None = None
    warnings: list[str] = field(default_factory=list)

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

    @property
    def has_training_labels(self) -> bool:
        return self.train_labels is not None

    def training_set(self, split: str) -> TrainingSet:
        """The "train" or "val" split as a detector that ``needs_labels`` receives it."""
        return TrainingSet(
            x=getattr(self, f"background_{split}"),
            labels=getattr(self, f"{split}_labels"),
            weights=getattr(self, f"{split}_weights"),
            column_groups=self.feature_groups,
        )

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


def rows_also_in(reference: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row numbers of the events of x that appear verbatim in reference."""
    flat_reference = reference.reshape(len(reference), -1)
    # A random projection fingerprints each row; only rows with equal fingerprints are compared exactly.
    projection = np.random.default_rng(0).normal(size=flat_reference.shape[1])
    reference_prints = flat_reference.astype(np.float64) @ projection
    order = np.argsort(reference_prints)
    sorted_prints = reference_prints[order]
    flat = x.reshape(len(x), -1)
    prints = flat.astype(np.float64) @ projection
    first = np.searchsorted(sorted_prints, prints, side="left")
    last = np.searchsorted(sorted_prints, prints, side="right")
    shared = [
        i
        for i in np.flatnonzero(last > first)
        if np.any(np.all(flat_reference[order[first[i] : last[i]]] == flat[i], axis=1))
    ]
    return np.asarray(shared, dtype=np.int64)


def describe_shared(x: np.ndarray, rows: np.ndarray) -> str:
    """How many rows, how many distinct events among them, and whether they are empty (all-zero)."""
    flat = x.reshape(len(x), -1)[rows]
    distinct = len(np.unique(flat, axis=0))
    empty = int((~flat.any(axis=1)).sum())
    text = f"{len(rows)} event{'s' if len(rows) != 1 else ''} ({distinct} distinct"
    return text + (f", {empty} of them all-zero: empty events)" if empty else ")")


def assert_background_only(training: np.ndarray, signals: dict[str, np.ndarray]) -> None:
    """Fail if any signal event appears verbatim in the training sample (the unsupervised contract)."""
    for name, x in signals.items():
        leaked = rows_also_in(training, x)
        if len(leaked):
            raise DataError(
                f"{describe_shared(x, leaked)} of signal '{name}' (rows {leaked[:5].tolist()} of its test "
                "sample) are also in the background training sample; training must see background only: "
                "check the signal and background files"
            )


def open_hdf5(path, remedy: str, error: type[Exception] = DataError):
    """h5py.File(path, "r"), or ``error`` saying the file is unreadable and what to do about it."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as cause:
        raise error(f"{path} is not a readable HDF5 file ({cause}); {remedy}") from cause
