"""Columns of a user's event files, read chunk by chunk with each format's own library.

``open_columns(path, tree=..., key=...)`` picks the reader by extension: ROOT TTrees with uproot (and
awkward), Parquet with pyarrow, HDF5 with h5py (pandas for pandas tables), ``.npy``/``.npz`` with NumPy.
Every reader says which columns it has and of what kind (``FLAT``: one number per entry, ``FIXED``: a
fixed-length array, ``JAGGED``: a variable number of values, e.g. jet constituents) and yields chunks of
entries as NumPy arrays, with the entry number of every row kept, so a score can be traced back to its
entry. A selection string keeps only the entries it is true for: uproot evaluates it for ROOT files
(its own expression language); for the other formats hepad evaluates the same Python operators on the
flat columns with NumPy (``Selection``).
"""

from __future__ import annotations

import ast
import operator
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hepad_cli.errors import DataError

FLAT, FIXED, JAGGED, OTHER = "flat", "fixed-length array", "jagged", "not numeric"
ROOT_SUFFIXES = (".root",)
PARQUET_SUFFIXES = (".parquet", ".pq")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
NUMPY_SUFFIXES = (".npy", ".npz")
SUFFIXES = ROOT_SUFFIXES + PARQUET_SUFFIXES + HDF5_SUFFIXES + NUMPY_SUFFIXES


@dataclass
class Jagged:
    """A variable number of values per entry: counts (n,) and the values of all entries, in order."""

    counts: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])

    def take(self, rows: np.ndarray) -> Jagged:
        """The entries ``rows`` (indices or a boolean mask), values in the same order."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows, dtype=np.int64)
        counts = self.counts[rows]
        starts = self.offsets[:-1][rows]
        # Position of every kept value: its entry's start plus its place within the entry.
        within = np.arange(counts.sum(), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        return Jagged(counts, self.values[np.repeat(starts, counts) + within])

    @classmethod
    def from_fixed(cls, array: np.ndarray) -> Jagged:
        """A (n, m) array as m values per entry (zero padding stays: pT = 0 marks it)."""
        return cls(np.full(len(array), array.shape[1], dtype=np.int64), np.ascontiguousarray(array).ravel())


Column = np.ndarray | Jagged


@dataclass
class Chunk:
    """Consecutive entries of one file: ``entries`` (n,) entry numbers in the file, ``columns`` by name."""

    entries: np.ndarray
    columns: dict[str, Column]

    def __len__(self) -> int:
        return len(self.entries)

    def take(self, rows: np.ndarray) -> Chunk:
        return Chunk(
            self.entries[rows],
            {k: v.take(rows) if isinstance(v, Jagged) else v[rows] for k, v in self.columns.items()},
        )


class ColumnFile(ABC):
    """One input file: its columns and their kinds, its number of entries, and chunked reads."""

    format: str

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    @abstractmethod
    def kinds(self) -> dict[str, str]:
        """{column name: FLAT | FIXED | JAGGED | OTHER}, in the file's order."""

    @property
    @abstractmethod
    def n_entries(self) -> int: ...

    @abstractmethod
    def chunks(self, names: list[str], step: int, selection: str | None) -> Iterator[Chunk]:
        """Chunks of at most ``step`` entries holding the columns ``names``; entries failing the
        selection are dropped (their entry numbers are skipped)."""

    def check_selection(self, selection: str) -> None:
        """Fail now if the selection cannot be evaluated on this file (unknown column, syntax)."""
        flat = [name for name, kind in self.kinds.items() if kind == FLAT]
        missing = sorted(Selection.parse(selection).names - set(flat))
        if missing:
            raise DataError(
                f"data.selection={selection!r} uses {missing}, which {self.path} has no flat column of; "
                f"its flat columns: {flat}"
            )

    def _selected(self, chunk: Chunk, selection: str | None) -> Chunk:
        if selection is None:
            return chunk
        return chunk.take(Selection.parse(selection).mask(len(chunk), chunk.columns, self.path))

    def close(self) -> None:  # noqa: B027 - readers without a handle have nothing to release
        """Release the file handle (readers that hold one)."""


def open_columns(path: str | Path, tree: str | None = None, key: str | None = None) -> ColumnFile:
    """The reader for ``path`` by its extension; DataError when the file cannot be opened as such."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in ROOT_SUFFIXES:
        return RootFile(path, tree)
    if suffix in PARQUET_SUFFIXES:
        return ParquetFile(path)
    if suffix in HDF5_SUFFIXES:
        return HDF5File(path, key)
    if suffix in NUMPY_SUFFIXES:
        return NumpyFile(path)
    raise DataError(
        f"{path}: unknown file type {suffix or '(no extension)'!r}; hepad reads {', '.join(SUFFIXES)}"
    )


# ----------------------------------------------------------------------------------------------------
# ROOT (uproot, awkward)


class RootFile(ColumnFile):
    format = "ROOT"

    def __init__(self, path: Path, tree: str | None) -> None:
        import uproot

        super().__init__(path)
        # Baskets decompress on every core (zlib and LZ4 release the GIL): 2x on two cores. The executor
        # is the file's own and is shut down with it.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = uproot.ThreadPoolExecutor(max_workers=cores)
        try:
            self._file = uproot.open(path, decompression_executor=threads)
        except Exception as error:  # uproot raises several types for files that are not ROOT
            threads.shutdown()
            raise DataError(f"{path} is not a readable ROOT file ({type(error).__name__}: {error})") from None
        trees = self._file.keys(filter_classname="TTree", cycle=False)
        if tree is None:
            if len(trees) != 1:
                raise DataError(
                    f"{path} holds {len(trees)} TTrees {sorted(trees)}: name one with data.tree=<name>"
                )
            tree = trees[0]
        elif tree not in trees:
            raise DataError(f"{path} has no TTree {tree!r}; its TTrees: {sorted(trees)}. Fix data.tree")
        self.tree_name = tree
        self._tree = self._file[tree]

    @property
    def kinds(self) -> dict[str, str]:
        from uproot.interpretation.jagged import AsJagged
        from uproot.interpretation.numerical import AsDtype

        kinds = {}
        for branch in self._tree.branches:
            interpretation = branch.interpretation
            if isinstance(interpretation, AsJagged) and isinstance(interpretation.content, AsDtype):
                kinds[branch.name] = JAGGED
            elif isinstance(interpretation, AsDtype) and interpretation.to_dtype.kind in "biuf":
                kinds[branch.name] = FLAT if interpretation.inner_shape == () else FIXED
            else:
                kinds[branch.name] = OTHER
        return kinds

    @property
    def n_entries(self) -> int:
        return int(self._tree.num_entries)

    @property
    def counters(self) -> set[str]:
        """Branches that only count the values of jagged branches (written again by any ROOT writer)."""
        return {
            b.count_branch.name for b in self._tree.branches if getattr(b, "count_branch", None) is not None
        }

    def check_selection(self, selection: str) -> None:
        try:
            self._tree.arrays([selection], entry_stop=1, library="np")
        except Exception as error:
            raise DataError(
                f"data.selection={selection!r} cannot be evaluated on {self.path}:{self.tree_name} "
                f"({type(error).__name__}: {str(error).splitlines()[0]}); its branches: {self._tree.keys()}"
            ) from None

    def chunks(self, names: list[str], step: int, selection: str | None) -> Iterator[Chunk]:
        import awkward as ak

        expressions = list(names) + ([selection] if selection is not None else [])
        for arrays, report in self._tree.iterate(expressions, step_size=step, library="ak", report=True):
            entries = np.arange(report.tree_entry_start, report.tree_entry_stop, dtype=np.int64)
            columns = {}
            for name in names:
                array = arrays[name]
                if array.ndim > 1 and isinstance(array.layout, ak.contents.ListOffsetArray):
                    columns[name] = Jagged(ak.to_numpy(ak.num(array)), ak.to_numpy(ak.flatten(array)))
                else:
                    columns[name] = ak.to_numpy(array)
            chunk = Chunk(entries, columns)
            if selection is not None:
                chunk = chunk.take(np.asarray(ak.to_numpy(arrays[selection]), dtype=bool))
            yield chunk

    def close(self) -> None:
        self._file.close()


# ----------------------------------------------------------------------------------------------------
# Parquet (pyarrow)


def _require_pyarrow(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow, which is not installed; "
            "install it with: pip install 'hepad[parquet]'"
        ) from None
    return pq


class ParquetFile(ColumnFile):
    format = "Parquet"

    def __init__(self, path: Path) -> None:
        pq = _require_pyarrow(path)
        super().__init__(path)
        try:
            self._file = pq.ParquetFile(path)
        except Exception as error:
            raise DataError(f"{path} is not a readable Parquet file ({error})") from None

    @property
    def kinds(self) -> dict[str, str]:
        import pyarrow as pa

        def numeric(t) -> bool:
            return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)

        kinds = {}
        for field in self._file.schema_arrow:
            t = field.type
            if numeric(t):
                kinds[field.name] = FLAT
            elif pa.types.is_fixed_size_list(t) and numeric(t.value_type):
                kinds[field.name] = FIXED
            elif (pa.types.is_list(t) or pa.types.is_large_list(t)) and numeric(t.value_type):
                kinds[field.name] = JAGGED
            else:
                kinds[field.name] = OTHER
        return kinds

    @property
    def n_entries(self) -> int:
        return int(self._file.metadata.num_rows)

    def chunks(self, names: list[str], step: int, selection: str | None) -> Iterator[Chunk]:
        import pyarrow as pa

        wanted = list(dict.fromkeys([*names, *(Selection.parse(selection).names if selection else [])]))
        start = 0
        for batch in self._file.iter_batches(batch_size=step, columns=wanted):
            columns = {}
            for name in wanted:
                array = batch.column(name)
                if pa.types.is_fixed_size_list(array.type):
                    width = array.type.list_size
                    columns[name] = array.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
                elif pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
                    columns[name] = Jagged(
                        array.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64),
                        array.flatten().to_numpy(zero_copy_only=False),
                    )
                else:
                    columns[name] = array.to_numpy(zero_copy_only=False)
            entries = np.arange(start, start + batch.num_rows, dtype=np.int64)
            start += batch.num_rows
            yield self._selected(Chunk(entries, columns), selection)


# ----------------------------------------------------------------------------------------------------
# HDF5 (h5py; pandas for pandas tables)


class HDF5File(ColumnFile):
    """``key`` names a group whose datasets are the columns (null: the top level), a compound dataset
    whose fields are the columns, a single dataset (one column, named after it), or a pandas table."""

    format = "HDF5"

    def __init__(self, path: Path, key: str | None) -> None:
        import h5py

        from hepad_cli.data.samples import open_hdf5

        super().__init__(path)
        self._file = open_hdf5(path, "point data.background / data.signals at HDF5 files")
        node = self._file if key is None else self._file.get(key)
        if node is None:
            raise DataError(f"{path} has no group or dataset {key!r} (top level: {sorted(self._file)})")
        if key is None and len(node) == 1 and _is_pandas(next(iter(node.values()))):
            node = next(iter(node.values()))  # a pandas file with one table: that table
        self._pandas_key = node.name if _is_pandas(node) else None
        self._datasets: dict[str, h5py.Dataset] = {}
        self._compound = None
        if self._pandas_key is not None:
            import pandas as pd

            with pd.HDFStore(path, "r") as store:
                empty = store.select(self._pandas_key, start=0, stop=0)
                storer = store.get_storer(self._pandas_key)
                self._n = int(storer.nrows if getattr(storer, "nrows", None) is not None else storer.shape[0])
            self._kinds = {
                str(c): FLAT if np.dtype(empty[c].dtype).kind in "biuf" else OTHER for c in empty.columns
            }
            return
        if isinstance(node, h5py.Dataset) and node.dtype.names:
            self._compound = node
            self._kinds = {
                name: _h5_kind(node.dtype[name], node.dtype[name].shape) for name in node.dtype.names
            }
            self._n = int(node.shape[0])
            return
        members = {Path(node.name).name: node} if isinstance(node, h5py.Dataset) else dict(node.items())
        self._datasets = {n: d for n, d in members.items() if isinstance(d, h5py.Dataset) and d.ndim >= 1}
        if not self._datasets:
            raise DataError(
                f"{path}:{node.name} holds no datasets to read columns from (members: {sorted(node)})"
            )
        lengths = {n: d.shape[0] for n, d in self._datasets.items()}
        self._n = max(lengths.values())
        self._kinds = {
            n: _h5_kind(d.dtype, d.shape[1:]) if lengths[n] == self._n else OTHER
            for n, d in self._datasets.items()
        }

    @property
    def kinds(self) -> dict[str, str]:
        return self._kinds

    @property
    def n_entries(self) -> int:
        return self._n

    def _window(self, names: list[str], start: int, stop: int) -> dict[str, Column]:
        import h5py

        if self._pandas_key is not None:
            import pandas as pd

            frame = pd.read_hdf(self.path, self._pandas_key, start=start, stop=stop, columns=names)
            return {name: frame[name].to_numpy() for name in names}
        if self._compound is not None:
            block = self._compound[start:stop]
            return {name: np.ascontiguousarray(block[name]) for name in names}
        columns = {}
        for name in names:
            dataset = self._datasets[name]
            if h5py.check_vlen_dtype(dataset.dtype) is not None:
                rows = dataset[start:stop]
                counts = np.fromiter((len(r) for r in rows), np.int64, len(rows))
                values = np.concatenate(rows) if len(rows) else np.zeros(0)
                columns[name] = Jagged(counts, values)
            else:
                columns[name] = dataset[start:stop]
        return columns

    def chunks(self, names: list[str], step: int, selection: str | None) -> Iterator[Chunk]:
        wanted = list(dict.fromkeys([*names, *(Selection.parse(selection).names if selection else [])]))
        for start in range(0, self._n, step):
            stop = min(start + step, self._n)
            chunk = Chunk(np.arange(start, stop, dtype=np.int64), self._window(wanted, start, stop))
            yield self._selected(chunk, selection)

    def close(self) -> None:
        self._file.close()


def _is_pandas(node) -> bool:
    return "pandas_type" in node.attrs


def _h5_kind(dtype: np.dtype, inner_shape: tuple[int, ...]) -> str:
    import h5py

    vlen = h5py.check_vlen_dtype(dtype)
    if vlen is not None:
        return JAGGED if np.dtype(vlen).kind in "biuf" and not inner_shape else OTHER
    if np.dtype(dtype).kind not in "biuf":
        return OTHER
    return {0: FLAT, 1: FIXED}.get(len(inner_shape), OTHER)


# ----------------------------------------------------------------------------------------------------
# NumPy


class NumpyFile(ColumnFile):
    """``.npy``: a structured array (its fields are the columns) or one array (a column named after the
    file); memory-mapped, so it is read window by window. ``.npz``: each array is a column."""

    format = "NumPy"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            if path.suffix.lower() == ".npy":
                array = np.load(path, mmap_mode="r", allow_pickle=False)
                if array.dtype.names:
                    self._arrays = {name: array[name] for name in array.dtype.names}
                else:
                    self._arrays = {path.stem: array}
            else:
                with np.load(path, allow_pickle=False) as archive:
                    self._arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError) as error:
            raise DataError(f"{path} is not a readable NumPy file without pickles ({error})") from None
        lengths = {len(a) for a in self._arrays.values() if a.ndim >= 1}
        if len(lengths) != 1:
            raise DataError(f"{path}: its arrays have different lengths {sorted(lengths)}; one entry per row")
        self._n = lengths.pop()

    @property
    def kinds(self) -> dict[str, str]:
        return {
            name: {1: FLAT, 2: FIXED}.get(a.ndim, OTHER) if a.dtype.kind in "biuf" else OTHER
            for name, a in self._arrays.items()
        }

    @property
    def n_entries(self) -> int:
        return self._n

    def chunks(self, names: list[str], step: int, selection: str | None) -> Iterator[Chunk]:
        wanted = list(dict.fromkeys([*names, *(Selection.parse(selection).names if selection else [])]))
        for start in range(0, self._n, step):
            stop = min(start + step, self._n)
            columns = {name: np.asarray(self._arrays[name][start:stop]) for name in wanted}
            yield self._selected(Chunk(np.arange(start, stop, dtype=np.int64), columns), selection)


# ----------------------------------------------------------------------------------------------------
# Selections for the formats without their own expression language


_COMPARE = {
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.BitAnd: np.logical_and,
    ast.BitOr: np.logical_or,
}
_FUNCTIONS = {"abs": np.abs, "sqrt": np.sqrt, "log": np.log, "exp": np.exp}


@dataclass(frozen=True)
class Selection:
    """A selection string: comparisons of flat columns and numbers, combined with ``&``, ``|``, ``~``
    (or ``and``, ``or``, ``not``), arithmetic ``+ - * /`` and abs, sqrt, log, exp: ``(pt > 500) & (abs(eta)
    < 2)``. Parsed with Python's ``ast`` and evaluated with NumPy; nothing else is allowed (no eval)."""

    text: str
    tree: ast.Expression

    @classmethod
    def parse(cls, text: str) -> Selection:
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as error:
            raise DataError(f"data.selection={text!r} is not a valid expression ({error.msg})") from None
        for node in ast.walk(tree):
            allowed = (
                ast.Expression,
                ast.BoolOp,
                ast.And,
                ast.Or,
                ast.UnaryOp,
                ast.Not,
                ast.Invert,
                ast.USub,
                ast.BinOp,
                ast.Compare,
                ast.Name,
                ast.Load,
                ast.Constant,
                ast.Call,
                *_COMPARE,
                *_BINARY,
            )
            bad_call = isinstance(node, ast.Call) and (
                not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords
            )
            bad_constant = isinstance(node, ast.Constant) and not isinstance(node.value, int | float)
            if not isinstance(node, allowed) or bad_call or bad_constant:
                raise DataError(
                    f"data.selection={text!r}: {ast.unparse(node)!r} is not allowed; use comparisons of "
                    "columns with numbers, & | ~, + - * /, and abs/sqrt/log/exp"
                )
        return cls(text, tree)

    @property
    def names(self) -> set[str]:
        functions = {id(n.func) for n in ast.walk(self.tree) if isinstance(n, ast.Call)}
        return {n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name) and id(n) not in functions}

    def mask(self, n: int, columns: dict[str, Column], path: Path) -> np.ndarray:
        """Boolean (n,) of the n entries of ``columns`` that the selection keeps."""
        result = np.asarray(self._evaluate(self.tree.body, columns, path))
        if result.dtype != bool:
            raise DataError(f"data.selection={self.text!r} gives numbers, not true/false, on {path}")
        return np.broadcast_to(result, (n,)) if result.ndim == 0 else result

    def _evaluate(self, node: ast.AST, columns: dict[str, Column], path: Path):
        evaluate = self._evaluate
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            value = columns[node.id]
            if isinstance(value, Jagged) or np.ndim(value) != 1:
                raise DataError(f"data.selection={self.text!r}: {node.id!r} in {path} is not a flat column")
            return value
        if isinstance(node, ast.Call):
            return _FUNCTIONS[node.func.id](*(evaluate(a, columns, path) for a in node.args))
        if isinstance(node, ast.UnaryOp):
            value = evaluate(node.operand, columns, path)
            return -value if isinstance(node.op, ast.USub) else np.logical_not(value)
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](
                evaluate(node.left, columns, path), evaluate(node.right, columns, path)
            )
        if isinstance(node, ast.BoolOp):
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            values = [evaluate(v, columns, path) for v in node.values]
            result = values[0]
            for value in values[1:]:
                result = combine(result, value)
            return result
        # Compare, possibly chained: a < b < c is (a < b) & (b < c).
        left = evaluate(node.left, columns, path)
        result = True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = evaluate(right_node, columns, path)
            result = np.logical_and(result, _COMPARE[type(op)](left, right))
            left = right
        return result
