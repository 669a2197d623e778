"""ADC2021, "LHC physics dataset for unsupervised New Physics detection at 40 MHz" (reference system 3).

Each file holds ``Particles`` (n_events, 19, 4) = (pT [GeV], η, φ [rad], class) for the rows MET, 4 e/γ,
4 μ and 10 jets, zero-padded (class 1..4 = MET, electron, muon, jet). The class column is dropped and
each event flattened to 57 numbers ordered (object, [pT, η, φ]), as in the challenge notebooks.

Background = ``background_for_training.h5`` (13.4M events; Zenodo 5046389), read in chunks and, with
``max_events``, subsampled with the seed without ever holding the whole file; split train/val/test with
the seed. Signals (test only, each its own ROC): A → 4ℓ (5046446), leptoquark (5055454), h → ττ
(5061633), h± → τν (5061688). Every file is fetched with its own checksum setting. ``scaling: standard``
fits a StandardScaler on the background training split only; the notebooks train on the raw values.
Per-event observables kept for the plots: ``met`` and ``ht`` (scalar sum of jet pT), in GeV.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hepad_cli.data.dataset import Dataset, DatasetContent, EventSample, Finding
from hepad_cli.data.download import DataFileError, fetch_file
from hepad_cli.data.samples import open_hdf5
from hepad_cli.errors import DataError
from hepad_cli.validation import check_int

log = logging.getLogger(__name__)

N_OBJECTS = 19
N_COLUMNS = 4  # pT, η, φ, class
JET_ROWS = slice(9, 19)
OBJECT_NAMES = (
    ["MET"]
    + [f"e{i}" for i in range(1, 5)]
    + [f"mu{i}" for i in range(1, 5)]
    + [f"jet{i}" for i in range(1, 11)]
)
FEATURE_NAMES = [f"{obj}_{var}" for obj in OBJECT_NAMES for var in ("pt", "eta", "phi")]
#: |eta| beyond which no LHC detector measures an object (the forward calorimeters end near 5).
ETA_LIMIT = 5.0
#: Slack on |phi| <= pi for float32 rounding.
PHI_SLACK = 1e-3


def write_adc2021_h5(path: str | os.PathLike, particles: np.ndarray) -> None:
    """Write events in the published layout: ``Particles`` (n, 19, 4) float32 plus the name datasets."""
    import h5py

    particles = np.asarray(particles, dtype=np.float32)
    if particles.ndim != 3 or particles.shape[1:] != (N_OBJECTS, N_COLUMNS):
        raise ValueError(f"particles must have shape (n, {N_OBJECTS}, {N_COLUMNS}), got {particles.shape}")
    with h5py.File(path, "w") as f:
        f.create_dataset("Particles", data=particles)
        f.create_dataset("Particles_Names", data=np.array([b"Pt", b"Eta", b"Phi", b"Class"]))
        f.create_dataset(
            "Particles_Classes",
            data=np.array([b"MET_class_1", b"Four_Ele_class_2", b"Four_Mu_class_3", b"Ten_Jet_class_4"]),
        )


def count_events(path: str | os.PathLike) -> int:
    """Number of events in a file, checking the ``Particles`` layout (nothing else is read)."""
    with _open(path) as f:
        return int(_particles(f, path).shape[0])


def _open(path):

    return open_hdf5(path, "delete it to download it again")


def _particles(f, path):
    if "Particles" not in f:
        raise DataError(
            f"{path} has no 'Particles' dataset (keys: {sorted(f.keys())}); expected the ADC2021 layout"
        )
    dataset = f["Particles"]
    if dataset.ndim != 3 or tuple(dataset.shape[1:]) != (N_OBJECTS, N_COLUMNS):
        raise DataError(
            f"{path}: 'Particles' has shape {dataset.shape}, expected (n_events, {N_OBJECTS}, "
            f"{N_COLUMNS}) = (pT, eta, phi, class) for MET, 4 e, 4 mu, 10 jets"
        )
    return dataset


def read_particles(
    path: str | os.PathLike,
    rows: np.ndarray | None = None,
    chunk_size: int = 100_000,
    description: str | None = None,
) -> np.ndarray:
    """(n, 19, 3) float32 of the selected rows (sorted; all when None), class column dropped.

    Reads ``chunk_size`` events at a time: a block is either sliced whole or, when under 1 % of its rows
    are selected, read through an h5py point selection (which slows down superlinearly above that).
    """
    with _open(path) as f:
        dataset = _particles(f, path)
        n_events = dataset.shape[0]
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            if len(rows) and (rows[0] < 0 or rows[-1] >= n_events or np.any(np.diff(rows) <= 0)):
                raise ValueError("rows must be sorted, unique and inside the file")
        total = n_events if rows is None else len(rows)
        out = np.empty((total, N_OBJECTS, 3), dtype=np.float32)
        filled = 0
        with tqdm(
            total=total, desc=description or f"reading {os.path.basename(path)}", unit="event", leave=False
        ) as bar:
            for start in range(0, n_events, chunk_size):
                stop = min(start + chunk_size, n_events)
                if rows is None:
                    block = dataset[start:stop, :, :3]
                else:
                    low, high = np.searchsorted(rows, [start, stop])
                    if low == high:
                        continue
                    selected = rows[low:high]
                    if 100 * len(selected) < stop - start:  # measured: point reads win below ~1 %
                        block = dataset[selected, :, :3]
                    else:
                        block = dataset[start:stop, :, :3][selected - start]
                out[filled : filled + len(block)] = block
                filled += len(block)
                bar.update(len(block))
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out.reshape(len(out), -1))).any(axis=1).sum())
        raise DataError(f"{path}: {bad} events hold NaN or infinite values; the file is damaged")
    return out


def event_observables(particles: np.ndarray) -> dict[str, np.ndarray]:
    """MET and HT (scalar sum of jet pT) in GeV from unscaled (n, 19, 3) events."""
    return {
        "met": particles[:, 0, 0].astype(np.float32),
        "ht": particles[:, JET_ROWS, 0].sum(axis=1).astype(np.float32),
    }


def _check_entry(name: str, entry: object) -> dict:
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("file"), str)
        or not isinstance(entry.get("url"), str)
    ):
        raise DataError(
            f"data.{name} must have a 'file' name, a 'url' and a 'checksum' (or null); got {entry!r}"
        )
    checksum = entry.get("checksum")
    if checksum is not None and not isinstance(checksum, str):
        raise DataError(
            f"data.{name}.checksum must be 'md5:<hex>', 'sha256:<hex>', 'zenodo' or null, got {checksum!r}"
        )
    return {"file": entry["file"], "url": entry["url"], "checksum": checksum}


class ADC2021Events(Dataset):
    """Background = the SM training file; signals = the BSM files configured; 57 features per event."""

    representation = "particles"
    background_name = "sm"

    def __init__(
        self,
        *,
        data_dir: str,
        background: dict,
        signals: dict[str, dict],
        download: bool,
        max_events: int | None,
        max_signal_events: int | None,
        scaling: str | None,
        invert: bool,
        invert_signal: str | None,
        split: dict,
        seed: int,
        chunk_size: int,
    ) -> None:
        super().__init__(split=split, seed=seed, scaling=scaling, invert=invert, invert_signal=invert_signal)
        self.data_dir = data_dir
        self.background = _check_entry("background", background)
        if not isinstance(signals, dict) or not signals:
            raise DataError(f"data.signals must map signal names to files (at least one), got {signals!r}")
        self.signals = {str(name): _check_entry(f"signals.{name}", entry) for name, entry in signals.items()}
        self.download = download
        self.max_events = check_int("data.max_events", max_events, allow_none=True, error=DataError)
        self.max_signal_events = check_int(
            "data.max_signal_events", max_signal_events, allow_none=True, error=DataError
        )
        self.chunk_size = check_int("data.chunk_size", chunk_size, error=DataError)

    def physical_checks(self, name: str, sample: EventSample) -> list[Finding]:
        """Objects as (pT, eta, phi): pT >= 0, |eta| <= 5, phi in [-pi, pi]; padding (pT = 0) at 0, 0."""
        objects = sample.events.reshape(len(sample), N_OBJECTS, 3)
        pt, eta, phi = objects[..., 0], objects[..., 1], objects[..., 2]
        padding = pt == 0
        fix = "the ADC2021 layout is (pT [GeV], eta, phi in [-pi, pi]) per object; fix or convert the file"
        return [
            Finding(
                name, "have an object with negative pT", np.flatnonzero((pt < 0).any(axis=1)), len(pt), fix
            ),
            Finding(
                name,
                "have an object with phi outside [-pi, pi] (a detector learns the convention, not physics)",
                np.flatnonzero((np.abs(phi) > np.pi + PHI_SLACK).any(axis=1)),
                len(pt),
                fix,
            ),
            Finding(
                name,
                f"have an object with |eta| > {ETA_LIMIT:g}, beyond any LHC detector",
                np.flatnonzero((np.abs(eta) > ETA_LIMIT).any(axis=1)),
                len(pt),
                fix,
            ),
            Finding(
                name,
                "have a padded object (pT = 0) with eta or phi not 0",
                np.flatnonzero((padding & ((eta != 0) | (phi != 0))).any(axis=1)),
                len(pt),
                "padding is expected to be all zero; the events are used as they are",
                fatal=False,
            ),
        ]

    def _fetch(self, name: str, entry: dict, data_dir: Path):
        try:
            return fetch_file(
                entry["url"], data_dir / entry["file"], entry["checksum"], allow_download=self.download
            )
        except DataFileError as error:
            raise DataError(f"ADC2021 {name} file: {error}") from error

    def _read(self, name: str, path: Path, limit: int | None, seed_offset: int) -> tuple[EventSample, int]:
        n_events = count_events(path)
        rows = self.subsample_rows(n_events, limit, seed_offset)
        particles = read_particles(path, rows, self.chunk_size, description=f"reading {name}")
        log.info("%s: read %d of %d events from %s", name, len(particles), n_events, path.name)
        flat = particles.reshape(len(particles), -1)
        return EventSample(flat, event_observables(particles)), n_events

    def read(self) -> DatasetContent:
        data_dir = Path(self.data_dir).expanduser().resolve()
        log.info("ADC2021 data directory: %s", data_dir)
        # Fetch (or verify) every file before reading any: a missing signal fails before the long read.
        fetched = {"background": self._fetch("background", self.background, data_dir)}
        fetched |= {
            name: self._fetch(f"signal '{name}'", entry, data_dir) for name, entry in self.signals.items()
        }
        background, n_background = self._read("background", fetched["background"].path, self.max_events, 0)
        provenance = [self._provenance("background", fetched["background"], len(background), n_background)]
        signals = {}
        for i, name in enumerate(self.signals):
            signals[name], n_total = self._read(name, fetched[name].path, self.max_signal_events, 1 + i)
            provenance.append(self._provenance(name, fetched[name], len(signals[name]), n_total))
            if len(signals[name]) == 0:
                raise DataError(f"signal '{name}' ({fetched[name].path}) holds no events")
        return DatasetContent(background, signals, provenance)

    @staticmethod
    def _provenance(name: str, fetched, rows_read: int, n_events: int) -> dict:
        return {
            "path": str(fetched.path),
            "md5": fetched.md5,
            "verified": fetched.verified,
            "expected_checksum": fetched.expected,
            "sample": name,
            "rows_read": int(rows_read),
            "events_in_file": int(n_events),
        }
