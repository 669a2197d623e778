"""A copy of an input file with the scores as new columns (Parquet) or branches (ROOT), so the score goes
straight into the user's analysis. Read and written chunk by chunk; entries that were not scored (the
selection dropped them) get NaN."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hepad_cli.data.columns import FIXED, FLAT, JAGGED, Jagged, RootFile, open_columns
from hepad_cli.errors import DataError
from hepad_cli.io import atomic_path

log = logging.getLogger(__name__)

FORMATS = ("parquet", "root")
SUFFIX = {"parquet": ".parquet", "root": ".root"}


def check_output_format(output_format: str | None) -> None:
    """Fail before any work where the format is unknown or its library is missing."""
    if output_format is None:
        return
    if output_format not in FORMATS:
        raise DataError(f"output.format must be one of {list(FORMATS)} or null, got {output_format!r}")
    if output_format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise DataError("output.format=parquet needs pyarrow: pip install 'hepad[parquet]'") from None


def write_scored_copy(
    source: Path,
    tree: str | None,
    key: str | None,
    scores: dict[str, np.ndarray],
    target: Path,
    output_format: str,
    chunk_size: int,
) -> Path:
    """Copy every numeric column of ``source`` into ``target`` (its format), adding ``scores``
    ({column name: one value per entry of the file}); returns the path written."""
    reader = open_columns(source, tree, key)
    try:
        counters = reader.counters if isinstance(reader, RootFile) else set()
        names = [n for n, kind in reader.kinds.items() if kind in (FLAT, FIXED, JAGGED) and n not in counters]
        skipped = [n for n in reader.kinds if n not in names and n not in counters]
        if skipped:
            log.warning("%s: columns %s are not numeric and are left out of the copy", source, skipped)
        clash = sorted(set(names) & set(scores))
        if clash:
            raise DataError(f"{source} already has columns {clash}: the score columns would replace them")
        tree_name = reader.tree_name if isinstance(reader, RootFile) else "Events"
        with atomic_path(target, suffix=f".partial{SUFFIX[output_format]}") as tmp:
            writer = _ParquetWriter(tmp) if output_format == "parquet" else _RootWriter(tmp, tree_name)
            try:
                for chunk in reader.chunks(names, chunk_size, None):
                    columns = dict(chunk.columns)
                    columns |= {name: values[chunk.entries] for name, values in scores.items()}
                    writer.write(columns)
            finally:
                writer.close()
    finally:
        reader.close()
    return target


class _ParquetWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = None

    def write(self, columns: dict) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = {}
        for name, column in columns.items():
            if isinstance(column, Jagged):
                arrays[name] = pa.ListArray.from_arrays(pa.array(column.offsets, pa.int64()), column.values)
            elif column.ndim == 2:
                arrays[name] = pa.FixedSizeListArray.from_arrays(column.ravel(), column.shape[1])
            else:
                arrays[name] = pa.array(column)
        table = pa.table(arrays)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _RootWriter:
    def __init__(self, path: Path, tree: str) -> None:
        import uproot

        self.file = uproot.recreate(path)
        self.tree_name = tree
        self.tree = None

    def write(self, columns: dict) -> None:
        import awkward as ak

        data = {
            name: ak.unflatten(column.values, column.counts) if isinstance(column, Jagged) else column
            for name, column in columns.items()
        }
        if self.tree is None:
            types = {}
            for name, column in columns.items():
                if isinstance(column, Jagged):
                    types[name] = f"var * {np.dtype(column.values.dtype).name}"
                elif column.ndim == 2:
                    types[name] = (column.dtype, column.shape[1:])
                else:
                    types[name] = column.dtype
            self.tree = self.file.mktree(self.tree_name, types)
        self.tree.extend(data)

    def close(self) -> None:
        self.file.close()
