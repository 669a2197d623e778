"""The Top Quark Tagging reference file layout: write it, and read it in chunks with h5py.

The published files (Zenodo record 2603256) were written by pandas as
``DataFrame.to_hdf(key="table", format="table")``: a PyTables table at ``/table/table`` with the
compound fields ``index`` (int64), ``values_block_0`` (float64, 804 columns:
``E_0, PX_0, PY_0, PZ_0, ..., PZ_199, truthE, truthPX, truthPY, truthPZ``) and
``values_block_1`` (int64, 2 columns: ``ttv``, ``is_signal_new``).

Reading uses h5py on row windows of the compound table, read into one reused buffer, so memory stays
flat and the result does not depend on the pandas version that wrote the file. A table compressed with a
filter that h5py's HDF5 library lacks (pandas' ``complib`` blosc, blosc2 or bzip2, all PyTables filters)
is read through PyTables, which brings its own; a filter neither has is named in the error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
        # No chunk cache: every window is read once, straight into the caller's buffer (one copy fewer).
        handle = h5py.File(path, "r", rdcc_nbytes=0)
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
    """is_signal_new for every row, as stored (normally int64 0/1)."""
    return np.concatenate([np.array(block.is_signal) for block in iter_record_blocks(path)])


#: Registered HDF5 filter ids of the compressors PyTables offers, for files that do not name them.
FILTER_NAMES = {305: "lzo", 307: "bzip2", 32001: "blosc", 32026: "blosc2"}


def _missing_filters(table) -> list[str]:
    """The compression filters of a dataset that h5py's HDF5 library cannot decode, as 'name (id N)'."""
    import h5py

    plist = table.id.get_create_plist()
    missing = []
    for index in range(plist.get_nfilters()):
        code, _, _, name = plist.get_filter(index)
        if not h5py.h5z.filter_avail(code):
            missing.append(
                f"'{name.decode(errors='replace') or FILTER_NAMES.get(code, 'unnamed')}' (id {code})"
            )
    return missing


RowReader = Callable[[int, int, np.ndarray], None]


@contextmanager
def _row_reader(path: Path, table) -> Iterator[RowReader]:
    """read(first, last, buffer): rows first..last-1 into buffer[:last - first], by h5py, or by PyTables
    when the table is compressed with a filter h5py lacks."""
    missing = _missing_filters(table)
    if not missing:
        yield lambda first, last, buffer: table.read_direct(
            buffer, np.s_[first:last], np.s_[0 : last - first]
        )
        return
    import tables

    handle = tables.open_file(str(path), "r")
    try:
        rows = handle.get_node("/" + TABLE_PATH)
        rows.read(0, min(1, rows.nrows))  # decoding fails here when PyTables lacks the filter too
    except Exception as error:  # noqa: BLE001 - PyTables raises several types; each means "cannot decode"
        handle.close()
        raise LayoutError(
            f"{path} is compressed with the HDF5 filter {', '.join(missing)}, which neither h5py nor "
            f"PyTables on this machine can decode ({type(error).__name__}). Fix: rewrite the file with a "
            "filter both have (zlib, blosc, bzip2, or none: ptrepack --complevel=0 on a machine that has it)"
        ) from None
    try:
        yield lambda first, last, buffer: rows.read(first, last, out=buffer[: last - first])
    finally:
        handle.close()


@dataclass(frozen=True)
class RecordBlock:
    """One window of rows as read from the file, in a buffer that the next block overwrites.

    rows: row numbers in the file (int64); records: the compound rows (``index``, ``values_block_0``,
    ``values_block_1``), a view of the reused buffer.
    """

    rows: np.ndarray
    records: np.ndarray

    @property
    def constituents(self) -> np.ndarray:
        """(n, 200, 4) float64 view (E, px, py, pz) in GeV; no copy."""
        floats = self.records["values_block_0"]
        return floats[:, :N_PARTICLE_COLUMNS].reshape(len(floats), MAX_CONSTITUENTS, 4)

    @property
    def is_signal(self) -> np.ndarray:
        return self.records["values_block_1"][:, 1]

    @property
    def truth(self) -> np.ndarray:
        return self.records["values_block_0"][:, N_PARTICLE_COLUMNS:]


def _native(dtype: np.dtype) -> np.dtype:
    """The compound dtype with native byte order (HDF5 converts on read; compiled code needs native)."""
    return np.dtype([(name, dtype[name].base.newbyteorder("="), dtype[name].shape) for name in dtype.names])


def _windows(
    rows: np.ndarray | None, n_rows: int, chunk_size: int
) -> Iterator[tuple[int, int, np.ndarray | None]]:
    """(first, last, selected rows or None for all) of each window of chunk_size file rows to read."""
    # Fixed windows, so a sparse subsample never reads more than one window at once.
    for window_start in range(0, n_rows, chunk_size):
        window_end = min(window_start + chunk_size, n_rows)
        if rows is None:
            yield window_start, window_end, None
            continue
        lo, hi = np.searchsorted(rows, [window_start, window_end])
        if lo < hi:
            selected = rows[lo:hi]
            yield int(selected[0]), int(selected[-1]) + 1, selected


def iter_record_blocks(
    path: str | os.PathLike, rows: np.ndarray | None = None, chunk_size: int = 2_000, prefetch: int = 0
) -> Iterator[RecordBlock]:
    """Yield the selected rows (sorted; all rows when None) in windows of at most chunk_size file rows.

    The fast path: each window is read with one ``read_direct`` into a buffer that later windows reuse
    (no per-window allocation, no HDF5 field conversion), so memory stays flat at
    (1 + prefetch) × chunk_size × 6456 bytes. With ``prefetch`` > 0 a background thread reads up to
    that many windows ahead while the caller works on the current one (h5py releases the GIL while
    it reads). A block is only valid until the next one is requested: copy what you keep.
    """
    handle, table = open_table(path)
    with handle, _row_reader(Path(path), table) as read_rows:
        n_rows = table.shape[0]
        rows = None if rows is None else np.sort(np.asarray(rows, np.int64))
        if rows is not None and rows.size and (rows[0] < 0 or rows[-1] >= n_rows):
            raise LayoutError(f"{path}: requested rows outside [0, {n_rows})")
        dtype = _native(table.dtype)
        buffers = [np.empty(min(chunk_size, max(n_rows, 1)), dtype) for _ in range(1 + prefetch)]

        def read(first: int, last: int, buffer: np.ndarray) -> None:
            try:
                read_rows(first, last, buffer)
            except OSError as error:
                raise LayoutError(
                    f"{path}: rows {first}..{last - 1} cannot be read ({error}); the file is probably "
                    "truncated: delete it and download or generate it again"
                ) from error

        def block(first: int, last: int, selected: np.ndarray | None, buffer: np.ndarray) -> RecordBlock:
            if selected is None:
                return RecordBlock(np.arange(first, last, dtype=np.int64), buffer[: last - first])
            return RecordBlock(selected, buffer[selected - first])

        windows = _windows(rows, n_rows, chunk_size)
        if not prefetch:
            for first, last, selected in windows:
                read(first, last, buffers[0])
                yield block(first, last, selected, buffers[0])
            return
        yield from _prefetched(windows, buffers, read, block)


def _prefetched(windows, buffers, read, block) -> Iterator[RecordBlock]:
    """Read windows in a background thread into a ring of buffers; yield their blocks in order."""
    import queue
    import threading

    free, ready = queue.Queue(), queue.Queue()
    for buffer in buffers:
        free.put(buffer)
    stop = threading.Event()

    def reader() -> None:
        try:
            for window in windows:
                buffer = free.get()
                if stop.is_set():
                    return
                read(window[0], window[1], buffer)
                ready.put((window, buffer))
            ready.put(None)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            ready.put(error)

    thread = threading.Thread(target=reader, name="hepad-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            (first, last, selected), buffer = item
            yield block(first, last, selected, buffer)
            free.put(buffer)  # the caller asked for the next block: this one may be overwritten
    finally:
        stop.set()
        free.put(None)  # wake a reader waiting for a buffer
        thread.join()


def iter_chunks(
    path: str | os.PathLike, rows: np.ndarray | None = None, chunk_size: int = 20_000
) -> Iterator[TopTaggingChunk]:
    """Yield the selected rows (sorted; all rows when None), reading at most chunk_size file rows at once.

    Every chunk owns its arrays (see iter_record_blocks for the buffer-reusing fast path).
    """
    for block in iter_record_blocks(path, rows=rows, chunk_size=chunk_size):
        yield TopTaggingChunk(
            rows=block.rows,
            constituents=np.array(block.constituents),
            is_signal=np.asarray(block.is_signal, dtype=np.int64),
            truth=np.array(block.truth),
        )
