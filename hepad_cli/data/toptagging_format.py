"""The Top Quark Tagging reference file layout: write it, and read it in chunks with h5py.

The published files (Zenodo record 2603256) were written by pandas as
``DataFrame.to_hdf(key="table", format="table")``: a PyTables table at ``/table/table`` with the
compound fields ``index`` (int64), ``values_block_0`` (float64, 804 columns:
``E_0, PX_0, PY_0, PZ_0, ..., PZ_199, truthE, truthPX, truthPY, truthPZ``) and
``values_block_1`` (int64, 2 columns: ``ttv``, ``is_signal_new``).

Reading uses h5py on one field at a time and in row slices, so memory stays flat and the result does
not depend on the pandas version that wrote the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_CONSTITUENTS = 200
N_PARTICLE_COLUMNS = 4 * MAX_CONSTITUENTS  # E, PX, PY, PZ per constituent
N_FLOAT_COLUMNS = N_PARTICLE_COLUMNS + 4  # + truthE, truthPX, truthPY, truthPZ
TABLE_PATH = "table/table"
TTV_CODES = {"train": 0, "test": 1, "val": 2}


class LayoutError(ValueError):
    """A file is not in the Top Quark Tagging layout."""


def column_names() -> tuple[list[str], list[str]]:
    """Column names of values_block_0 (floats) and values_block_1 (integers), in file order."""
    floats = [f"{q}_{i}" for i in range(MAX_CONSTITUENTS) for q in ("E", "PX", "PY", "PZ")]
    floats += ["truthE", "truthPX", "truthPY", "truthPZ"]
    return floats, ["ttv", "is_signal_new"]


def write_toptagging_h5(
    path: str | os.PathLike,
    constituents: np.ndarray,
    is_signal: np.ndarray,
    truth: np.ndarray | None = None,
    ttv: int = TTV_CODES["val"],
    append: bool = False,
) -> None:
    """Write jets the way the published files were written (pandas ``to_hdf``, table format).

    constituents: (n_jets, 200, 4) as (E, px, py, pz) in GeV, pT-ordered and zero-padded.
    is_signal: (n_jets,) 0/1.  truth: (n_jets, 4) parent four-vector (E, px, py, pz), zeros for QCD.
    With ``append=True`` rows are added to an existing file (used to write large files in chunks).
    """
    import pandas as pd

    constituents = np.asarray(constituents, dtype=np.float64)
    n_jets = constituents.shape[0]
    if constituents.shape[1:] != (MAX_CONSTITUENTS, 4):
        raise LayoutError(
            f"constituents must have shape (n, {MAX_CONSTITUENTS}, 4), got {constituents.shape}"
        )
    truth = np.zeros((n_jets, 4)) if truth is None else np.asarray(truth, dtype=np.float64)
    floats = np.concatenate([constituents.reshape(n_jets, -1), truth], axis=1)
    ints = np.stack([np.full(n_jets, ttv, dtype=np.int64), np.asarray(is_signal, dtype=np.int64)], axis=1)
    float_names, int_names = column_names()
    frame = pd.concat(
        [pd.DataFrame(floats, columns=float_names), pd.DataFrame(ints, columns=int_names)], axis=1
    )
    if append:
        start = 0
        if Path(path).exists():
            import h5py

            with h5py.File(path, "r") as f:
                start = f[TABLE_PATH].shape[0]
        frame.index = pd.RangeIndex(start, start + n_jets)
    frame.to_hdf(path, key="table", format="table", mode="a" if append else "w", append=append)


@dataclass(frozen=True)
class TopTaggingChunk:
    """One slice of rows. constituents: (n, 200, 4) float64 (E, px, py, pz) in GeV."""

    rows: np.ndarray  # row numbers in the file, int64
    constituents: np.ndarray
    is_signal: np.ndarray  # int64 0/1
    truth: np.ndarray  # (n, 4) float64


def open_table(path: str | os.PathLike):
    """Open a file and return (h5py.File, the compound dataset), checking the layout."""
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise LayoutError(
            f"{path} is not a readable HDF5 file ({error}); it may be truncated or not HDF5 at all. "
            "Delete it and download or generate it again."
        ) from error
    if TABLE_PATH not in handle:
        keys = list(handle.keys())
        handle.close()
        raise LayoutError(
            f"{path} has no dataset '/{TABLE_PATH}' (top-level keys: {keys}); expected the Top Quark "
            "Tagging layout written by pandas to_hdf(key='table', format='table')."
        )
    table = handle[TABLE_PATH]
    names = table.dtype.names or ()
    for field, width in (("values_block_0", N_FLOAT_COLUMNS), ("values_block_1", 2)):
        if field not in names or table.dtype[field].shape != (width,):
            shape = table.dtype[field].shape if field in names else None
            handle.close()
            raise LayoutError(
                f"{path}: field '{field}' should hold {width} columns, found {shape}; "
                "this is not a Top Quark Tagging file."
            )
    return handle, table


def count_jets(path: str | os.PathLike) -> int:
    handle, table = open_table(path)
    with handle:
        return int(table.shape[0])


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """is_signal_new for every row (int64); reads 16 bytes per jet."""
    handle, table = open_table(path)
    with handle:
        return np.asarray(table.fields("values_block_1")[:][:, 1], dtype=np.int64)


def iter_chunks(
    path: str | os.PathLike, rows: np.ndarray | None = None, chunk_size: int = 20_000
) -> Iterator[TopTaggingChunk]:
    """Yield the selected rows (sorted; all rows when None), reading at most chunk_size file rows at once."""
    handle, table = open_table(path)
    with handle:
        n_rows = table.shape[0]
        rows = np.arange(n_rows, dtype=np.int64) if rows is None else np.sort(np.asarray(rows, np.int64))
        if rows.size and (rows[0] < 0 or rows[-1] >= n_rows):
            raise LayoutError(f"{path}: requested rows outside [0, {n_rows})")
        # Walk the file in fixed windows so a sparse subsample never reads more than one window at once.
        for window_start in range(0, n_rows, chunk_size):
            window_end = min(window_start + chunk_size, n_rows)
            lo, hi = np.searchsorted(rows, [window_start, window_end])
            if lo == hi:
                continue
            selected = rows[lo:hi]
            first, last = int(selected[0]), int(selected[-1]) + 1
            local = selected - first
            try:
                floats = table.fields("values_block_0")[first:last][local]
                ints = table.fields("values_block_1")[first:last][local]
            except OSError as error:
                raise LayoutError(
                    f"{path}: rows {first}..{last - 1} cannot be read ({error}); the file is probably "
                    "truncated: delete it and download or generate it again"
                ) from error
            yield TopTaggingChunk(
                rows=selected,
                constituents=floats[:, :N_PARTICLE_COLUMNS].reshape(-1, MAX_CONSTITUENTS, 4),
                is_signal=np.asarray(ints[:, 1], dtype=np.int64),
                truth=floats[:, N_PARTICLE_COLUMNS:],
            )
