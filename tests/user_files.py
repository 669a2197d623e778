"""A user's own event files, written by the tests with each format's own library: the same jets as ROOT
(uproot), Parquet (pyarrow), HDF5 (h5py groups and pandas tables) and NumPy files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURES = ["mass", "tau21", "tau32", "pt"]
PARTICLES = ("part_pt", "part_eta", "part_phi", "part_e")


@dataclass
class Jets:
    """n jets: flat features, run/event numbers, and jagged constituents (pt, eta, phi, e) per jet."""

    features: dict[str, np.ndarray]
    run: np.ndarray
    event: np.ndarray
    counts: np.ndarray
    particles: dict[str, np.ndarray]  # flat values of all jets, jet after jet

    def __len__(self) -> int:
        return len(self.counts)

    def padded(self, name: str, width: int) -> np.ndarray:
        """(n, width) zero-padded values of one constituent column, file order."""
        out = np.zeros((len(self), width), np.float32)
        starts = np.cumsum(self.counts) - self.counts
        for i, (start, count) in enumerate(zip(starts, self.counts, strict=True)):
            out[i, :count] = self.particles[name][start : start + count]
        return out


def make_jets(n: int, seed: int, prongs: int = 1, first_event: int = 0) -> Jets:
    """Toy jets: a `prongs`-pronged spray of 5-40 massless particles, pT-unordered, plus jet features."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(5, 40, n)
    total = int(counts.sum())
    prong = rng.integers(0, prongs, total)
    offsets = rng.normal(0, 0.2, (n, prongs, 2)) if prongs > 1 else np.zeros((n, 1, 2))
    jet = np.repeat(np.arange(n), counts)
    eta = np.repeat(rng.uniform(-1.5, 1.5, n), counts) + offsets[jet, prong, 0] + rng.normal(0, 0.05, total)
    phi = rng.uniform(-3, 3, n)[jet] + offsets[jet, prong, 1] + rng.normal(0, 0.05, total)
    pt = rng.exponential(20.0, total)
    particles = {
        "part_pt": pt.astype(np.float32),
        "part_eta": eta.astype(np.float32),
        "part_phi": phi.astype(np.float32),
        "part_e": (pt * np.cosh(eta)).astype(np.float32),
    }
    features = {
        "mass": rng.normal(40 + 60 * (prongs > 1), 10, n).astype(np.float32),
        "tau21": rng.uniform(0, 1, n).astype(np.float32) ** (1 + prongs),
        "tau32": rng.uniform(0, 1, n).astype(np.float32),
        "pt": rng.normal(600, 40, n).astype(np.float32),
    }
    event = np.arange(first_event, first_event + n, dtype=np.int64)
    return Jets(features, np.full(n, 2018, np.int32), event, counts.astype(np.int64), particles)


def _jagged_root(jets: Jets, name: str):
    import awkward as ak

    return ak.unflatten(jets.particles[name], jets.counts)


def write_root(path: Path, jets: Jets, tree: str = "Jets", extra_tree: str | None = None) -> Path:
    """A TTree of flat and jagged branches (uproot); ``extra_tree`` adds a second TTree to the file."""
    import uproot

    with uproot.recreate(path) as f:
        branches = {name: np.float32 for name in FEATURES} | {"run": np.int32, "event": np.int64}
        branches |= {name: "var * float32" for name in PARTICLES}
        f.mktree(tree, branches)
        f[tree].extend(
            jets.features
            | {"run": jets.run, "event": jets.event}
            | {name: _jagged_root(jets, name) for name in PARTICLES}
        )
        if extra_tree is not None:
            f.mktree(extra_tree, {"lumi": np.float64})
            f[extra_tree].extend({"lumi": np.ones(3)})
    return path


def write_parquet(path: Path, jets: Jets) -> Path:
    """A Parquet file with flat columns and list<float> constituent columns (pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    offsets = pa.array(np.concatenate([[0], np.cumsum(jets.counts)]), pa.int32())
    columns = {name: pa.array(values) for name, values in jets.features.items()}
    columns |= {"run": pa.array(jets.run), "event": pa.array(jets.event)}
    columns |= {name: pa.ListArray.from_arrays(offsets, jets.particles[name]) for name in PARTICLES}
    pq.write_table(pa.table(columns), path, row_group_size=max(len(jets) // 3, 1))
    return path


def write_hdf5(path: Path, jets: Jets, width: int = 40) -> Path:
    """An HDF5 group ``jets``: one dataset per column, constituents as (n, width) zero-padded (h5py)."""
    import h5py

    with h5py.File(path, "w") as f:
        group = f.create_group("jets")
        for name, values in jets.features.items():
            group[name] = values
        group["run"], group["event"] = jets.run, jets.event
        for name in PARTICLES:
            group[name] = jets.padded(name, width)
    return path


def write_pandas_hdf5(path: Path, jets: Jets) -> Path:
    """A pandas table (``to_hdf`` table format, the layout pandas users write) of the flat columns."""
    import pandas as pd

    frame = pd.DataFrame(jets.features | {"run": jets.run, "event": jets.event})
    frame.to_hdf(path, key="jets", format="table")
    return path


def write_npz(path: Path, jets: Jets, width: int = 40) -> Path:
    """One array per column (np.savez), constituents zero-padded."""
    arrays = jets.features | {"run": jets.run, "event": jets.event}
    arrays |= {name: jets.padded(name, width) for name in PARTICLES}
    np.savez(path, **arrays)
    return path


WRITERS = {"root": write_root, "parquet": write_parquet, "h5": write_hdf5, "npz": write_npz}
SUFFIXES = {"root": ".root", "parquet": ".parquet", "h5": ".h5", "npz": ".npz"}
