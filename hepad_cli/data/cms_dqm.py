"""CMS 2010B data-quality lumisections, per-channel features and global labels (reference system 4).

The three files of the reference notebook, which no public server offers (the user copies them into
``data_dir``):

- ``merged.pickle``: a pandas DataFrame, one row per lumisection. Feature columns are named
  ``<stream>_<channel>_<var>_<q1..q5>_<stat>`` (and ``<stream>_<channel>_P{x,y,z}_<stat>`` for the summed
  momentum of a channel); besides them ``_run``, ``_luminosityBlock``, ``_instantLumi_<stream>``,
  ``<stream>_nEvents``, ``<stream>_nonZeroWeights`` and ``<stream>_instantLumi_<stat>``. Streams are
  minibias, muons and photons; channels muons, photons, PF (particle flow) and calo.
- ``labels.npy``: the global label of each row, 1 = good, 0 = bad.
- ``subsystem_labels.pickled``: ``{subsystem: 0/1 per row}`` (1 = good), the experts' per-subsystem flags.

Unpickling can run arbitrary code, so the two pickles are read only with ``trust_pickle=True``; that run
converts them once into ``converted_file`` (HDF5 written with h5py: numbers and names, no code) and every
later run reads the HDF5 file instead. The pickles were written by Python 2 (pandas 0.x), so they are read
with ``encoding="latin1"`` (and pandas' compatibility unpickler for renamed pandas classes).

What a run gets, as in the notebook: the columns grouped into channels by name (``channels``: muons of the
muon stream, photons of the photon stream, PF and calo of the minibias stream; the muon and photon
channels also get their stream's instantaneous luminosity), lumisections whose luminosity
(max over ``lumi_columns``) is not positive dropped, per-row weights = luminosity / total luminosity of
the row's class (good and bad then weigh the same), a split stratified by the global label, and features
standardised with mean and scale fitted on the training rows only.

``training: weak`` (the notebook) puts good and bad lumisections into the training and validation
samples with their global labels and weights (weak supervision: ``Samples.train_labels``); the subsystem
labels are never trained on, only kept per test lumisection for the channel × subsystem evaluation.
``training: good_only`` trains on good lumisections only, without labels, for any unsupervised detector.
Test samples: ``background`` = good lumisections, ``bad`` = bad ones.
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path

import numpy as np

from hepad_cli.data.dataset import TRAINING_MODES, Dataset, DatasetContent, EventSample
from hepad_cli.data.download import file_md5, md5_sidecar, sidecar_mismatch, write_md5_sidecar
from hepad_cli.data.samples import EVENT_WEIGHT, SUBSYSTEM_FLAG_PREFIX, open_hdf5
from hepad_cli.errors import DataError
from hepad_cli.io import atomic_path
from hepad_cli.validation import check_bool

log = logging.getLogger(__name__)

FEATURES_FILE = "merged.pickle"
LABELS_FILE = "labels.npy"
SUBSYSTEMS_FILE = "subsystem_labels.pickled"
PICKLES = (FEATURES_FILE, SUBSYSTEMS_FILE)
FORMAT = "hepad-cms-dqm-1"
EXPECTED = (
    f"{FEATURES_FILE} (pandas DataFrame, one row per lumisection), {LABELS_FILE} (1 = good, 0 = bad per "
    f"row) and {SUBSYSTEMS_FILE} ({{subsystem: 0/1 per row}})"
)

SUPERVISION = (
    "weak: global good/bad lumisection labels (labels.npy) weighted by luminosity; "
    "subsystem labels are used for evaluation only"
)


# --- reading the pickles (only when trusted) -------------------------------------------------------


def load_trusted_pickle(path: Path):
    """Unpickle a file the user said they trust; Python 2 pickles need ``encoding="latin1"``."""
    with open(path, "rb") as handle:
        try:
            return pickle.Unpickler(handle, encoding="latin1").load()
        except (ImportError, AttributeError, TypeError):
            # Pickles of old pandas versions name classes that have moved; pandas maps them.
            from pandas.compat.pickle_compat import Unpickler

            handle.seek(0)
            return Unpickler(handle, encoding="latin1").load()


def _subsystem_table(obj, n_rows: int, path: Path) -> dict[str, np.ndarray]:
    """{subsystem: 0/1 int8 per row} from a dict of arrays or a DataFrame of columns."""
    if hasattr(obj, "columns") and hasattr(obj, "__getitem__"):
        obj = {str(name): obj[name] for name in obj.columns}
    if not isinstance(obj, dict) or not obj:
        raise DataError(
            f"{path} holds a {type(obj).__name__}; expected a non-empty dict "
            "{subsystem: 0/1 per lumisection}"
        )
    table = {}
    for name, values in obj.items():
        name = name.decode("latin1") if isinstance(name, bytes) else str(name)
        values = np.asarray(values).reshape(-1)
        if len(values) != n_rows or not np.isin(values, (0, 1)).all():
            raise DataError(
                f"{path}: subsystem {name!r} has {len(values)} values (need {n_rows}, one per row of "
                f"{FEATURES_FILE}, each 0 or 1)"
            )
        table[name] = values.astype(np.int8)
    return table


def _global_labels(path: Path, n_rows: int) -> np.ndarray:
    try:
        labels = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise DataError(f"{path} is not a plain numeric .npy array ({error})") from error
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != n_rows or not np.isin(labels, (0, 1)).all():
        raise DataError(
            f"{path} has {len(labels)} labels (need {n_rows}, one per row of {FEATURES_FILE}, "
            "1 = good, 0 = bad)"
        )
    return labels.astype(np.int8)


def read_pickled_sources(data_dir: Path) -> dict:
    """Columns, values (float64), global labels and subsystem labels from the three original files."""
    frame = load_trusted_pickle(data_dir / FEATURES_FILE)
    if not hasattr(frame, "columns") or not hasattr(frame, "to_numpy"):
        raise DataError(f"{data_dir / FEATURES_FILE} holds a {type(frame).__name__}, not a pandas DataFrame")
    columns = [c.decode("latin1") if isinstance(c, bytes) else str(c) for c in frame.columns]
    try:
        values = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        numeric = frame.select_dtypes("number").columns
        other = [str(c) for c in frame.columns if c not in numeric][:10]
        raise DataError(f"{data_dir / FEATURES_FILE}: non-numeric columns {other} ({error})") from error
    n_rows = len(values)
    labels = _global_labels(data_dir / LABELS_FILE, n_rows)
    subsystems = _subsystem_table(
        load_trusted_pickle(data_dir / SUBSYSTEMS_FILE), n_rows, data_dir / SUBSYSTEMS_FILE
    )
    return {"columns": columns, "values": values, "labels": labels, "subsystems": subsystems}


# --- the safe converted file -------------------------------------------------------------------------


def _source_stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def write_converted(path: Path, tables: dict, sources: dict[str, dict]) -> None:
    """Write the tables as plain HDF5 (atomically): values, columns, labels, subsystem names and labels."""
    import json

    import h5py

    names = list(tables["subsystems"])
    with atomic_path(path, suffix=".partial.h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("values", data=tables["values"])
        f.create_dataset("columns", data=np.array(tables["columns"], dtype=h5py.string_dtype()))
        f.create_dataset("labels", data=tables["labels"])
        f.create_dataset("subsystem_names", data=np.array(names, dtype=h5py.string_dtype()))
        f.create_dataset(
            "subsystem_labels",
            data=np.stack([tables["subsystems"][n] for n in names], axis=1).astype(np.int8),
        )
        f.attrs["format"] = FORMAT
        f.attrs["sources"] = json.dumps(sources)


def read_converted(path: Path) -> tuple[dict, dict]:
    """(tables, recorded sources) from a file written by :func:`write_converted`."""
    import json

    with open_hdf5(path, "delete it to convert again") as f:
        if f.attrs.get("format") != FORMAT:
            raise DataError(f"{path} is not a hepad CMS data-quality file (format {f.attrs.get('format')!r})")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["subsystem_names"][:]]
        subsystem_labels = f["subsystem_labels"][:]
        tables = {
            "values": f["values"][:],
            "columns": [c.decode() if isinstance(c, bytes) else str(c) for c in f["columns"][:]],
            "labels": f["labels"][:].astype(np.int8),
            "subsystems": {name: subsystem_labels[:, i] for i, name in enumerate(names)},
        }
        sources = json.loads(f.attrs["sources"])
    return tables, sources


# --- columns, luminosity, weights, split ---------------------------------------------------------------


def channel_columns(columns: list[str], channels: dict[str, dict]) -> dict[str, list[str]]:
    """{channel: sorted column names} by the ``<stream>_<objects>_`` prefix, plus each channel's extras."""
    present = set(columns)
    grouped = {}
    for name, spec in channels.items():
        prefix = f"{spec['stream']}_{spec['objects']}_"
        chosen = sorted(c for c in columns if c.startswith(prefix))
        if not chosen:
            prefixes = sorted({"_".join(c.split("_")[:2]) for c in columns if not c.startswith("_")})
            raise DataError(
                f"channel {name!r}: no column starts with {prefix!r}; "
                f"column prefixes in the file: {prefixes[:30]}"
            )
        missing = [c for c in spec.get("extra_columns", []) if c not in present]
        if missing:
            raise DataError(f"channel {name!r}: extra columns {missing} are not in the file")
        grouped[name] = chosen + [c for c in spec.get("extra_columns", []) if c not in chosen]
    return grouped


def luminosity_weights(lumi: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """lumi / total lumi of the row's class (the notebook's weights: each class sums to one)."""
    totals = {label: lumi[labels == label].sum() for label in (0, 1)}
    return np.where(labels == 1, lumi / max(totals[1], 1e-300), lumi / max(totals[0], 1e-300))


def _observable_name(subsystem: str) -> str:
    return SUBSYSTEM_FLAG_PREFIX + re.sub(r"[^0-9A-Za-z_.-]", "_", subsystem)


# --- the dataset -------------------------------------------------------------------------------------


class CMSDataQuality(Dataset):
    """Lumisections of CMS 2010B: channel features, luminosity weights, global and subsystem labels."""

    def __init__(
        self,
        *,
        data_dir: str,
        trust_pickle: bool,
        converted_file: str,
        channels: dict[str, dict],
        lumi_columns: list[str],
        training: str,
        split: dict,
        seed: int,
        scaling: str | None,
    ) -> None:
        super().__init__(split=split, seed=seed, scaling=scaling)
        self.data_dir = data_dir
        self.trust_pickle = check_bool("data.trust_pickle", trust_pickle, error=DataError)
        self.converted_file = converted_file
        self.channels = {str(k): dict(v) for k, v in (channels or {}).items()}
        self.lumi_columns = list(lumi_columns)
        if training not in TRAINING_MODES:
            raise DataError(
                f"data.training must be 'weak' (global good/bad labels, the notebook) or 'good_only' "
                f"(unsupervised on good lumisections), got {training!r}"
            )
        self.training = training
        if not self.channels:
            raise DataError("data.channels must name at least one channel")
        for name, spec in self.channels.items():
            extra = spec.get("extra_columns", [])
            if (
                not isinstance(spec.get("stream"), str)
                or not isinstance(spec.get("objects"), str)
                or not isinstance(extra, list | tuple)
                or set(spec) - {"stream", "objects", "extra_columns"}
            ):
                raise DataError(
                    f"data.channels.{name} must have 'stream' and 'objects' (column prefix "
                    f"<stream>_<objects>_) and optionally a list 'extra_columns'; got {spec!r}"
                )
        if not self.lumi_columns:
            raise DataError("data.lumi_columns must name the instantaneous-luminosity columns")

    # -- files --

    def _tables(self, data_dir: Path) -> tuple[dict, list[dict]]:
        """The tables, from the converted file when it is there and current, else from trusted pickles."""
        converted = data_dir / self.converted_file
        sources = {name: data_dir / name for name in (*PICKLES, LABELS_FILE)}
        present = {name: path for name, path in sources.items() if path.is_file()}
        damage = sidecar_mismatch(converted) if converted.is_file() else None
        if damage and not self.trust_pickle:
            raise DataError(
                f"{converted} {damage}. Fix: delete it and rerun with data.trust_pickle=true to convert the "
                "pickles again"
            )
        if damage:
            log.warning("%s %s: converting the pickles again", converted, damage)
        if converted.is_file() and not damage:
            tables, recorded = read_converted(converted)
            changed = [
                name
                for name, path in present.items()
                if name in recorded
                and _source_stamp(path) != {k: recorded[name][k] for k in ("size", "mtime_ns")}
            ]
            if not changed:
                log.info("reading %s (converted from the pickles once; no pickle is loaded)", converted)
                entry = {
                    "path": str(converted),
                    "md5": file_md5(converted),
                    "verified": False,
                    "converted_from": recorded,
                    "format": FORMAT,
                }
                return tables, [entry]
            if not self.trust_pickle:
                raise DataError(
                    f"{', '.join(changed)} changed after {converted} was converted from them. Rerun with "
                    "data.trust_pickle=true to convert the new files (their pickles are then loaded), or "
                    f"move the changed files away to keep using {converted}"
                )
            log.warning("%s changed since the conversion: converting again", ", ".join(changed))
        missing = [name for name in sources if name not in present]
        if missing:
            raise DataError(
                f"CMS data-quality files missing in {data_dir}: {', '.join(missing)}. There is no public "
                f"download for these files: copy {EXPECTED} into {data_dir} (or set data.data_dir to the "
                "directory that holds them)"
            )
        if not self.trust_pickle:
            raise DataError(
                f"{FEATURES_FILE} and {SUBSYSTEMS_FILE} in {data_dir} are Python pickles, and loading a "
                "pickle can run arbitrary code, so hepad loads them only when you say you trust them: "
                f"rerun once with data.trust_pickle=true. That run converts them to {converted} (plain "
                "HDF5), and later runs read that file instead, without data.trust_pickle"
            )
        log.warning("loading the pickles %s (data.trust_pickle=true)", ", ".join(PICKLES))
        tables = read_pickled_sources(data_dir)
        stamps = {}
        for name, path in sources.items():
            stamps[name] = {**_source_stamp(path), "md5": file_md5(path)}
        write_converted(converted, tables, stamps)
        write_md5_sidecar(md5_sidecar(converted), file_md5(converted), converted.name)
        log.info("converted the pickles to %s; later runs read it without loading any pickle", converted)
        provenance = [
            {"path": str(path), "md5": stamps[name]["md5"], "verified": False}
            for name, path in sources.items()
        ]
        provenance.append(
            {"path": str(converted), "md5": file_md5(converted), "verified": False, "format": FORMAT}
        )
        return tables, provenance

    # -- samples --

    def read(self) -> DatasetContent:
        data_dir = Path(self.data_dir).expanduser().resolve()
        log.info("CMS data-quality lumisections, data directory %s", data_dir)
        tables, provenance = self._tables(data_dir)
        columns, values = tables["columns"], tables["values"]
        index = {name: i for i, name in enumerate(columns)}
        missing = [c for c in self.lumi_columns if c not in index]
        if missing:
            raise DataError(f"luminosity columns {missing} are not in {FEATURES_FILE} (data.lumi_columns)")
        lumi = np.nan_to_num(values[:, [index[c] for c in self.lumi_columns]], nan=0.0).max(axis=1)
        keep = lumi > 0
        log.info("dropping %d of %d lumisections without luminosity", int((~keep).sum()), len(keep))
        grouped = channel_columns(columns, self.channels)
        order = [index[c] for names in grouped.values() for c in names]
        x = values[np.ix_(np.flatnonzero(keep), order)]
        if not np.isfinite(x).all():
            bad = ~np.isfinite(x)
            flat = [c for names in grouped.values() for c in names]
            names = [c for c, hit in zip(flat, bad.any(axis=0), strict=True) if hit]
            raise DataError(
                f"{FEATURES_FILE}: {int(bad.any(axis=1).sum())} lumisections hold NaN or infinite values in "
                f"{len(names)} channel columns (e.g. {names[:5]}); the data extraction wrote 0 for missing "
                "values: clean the file"
            )
        labels, lumi = tables["labels"][keep], lumi[keep]
        subsystems = {name: v[keep] for name, v in tables["subsystems"].items()}
        run = values[keep, index["_run"]] if "_run" in index else np.zeros(len(x))
        block = values[keep, index["_luminosityBlock"]] if "_luminosityBlock" in index else np.zeros(len(x))
        log.info(
            "%d lumisections (%d good, %d bad); channels %s",
            len(x),
            int((labels == 1).sum()),
            int((labels == 0).sum()),
            {name: len(names) for name, names in grouped.items()},
        )
        observables = {
            "luminosity": lumi.astype(np.float64),
            EVENT_WEIGHT: luminosity_weights(lumi, labels).astype(np.float64),
            "run": run.astype(np.int64),
            "lumi_block": block.astype(np.int64),
            **{_observable_name(name): v for name, v in subsystems.items()},
        }
        starts = np.cumsum([0] + [len(names) for names in grouped.values()])
        provenance[-1] |= {
            "lumisections": int(len(x)),
            "dropped_without_luminosity": int((~keep).sum()),
            "channels": {name: len(names) for name, names in grouped.items()},
        }
        return DatasetContent(
            background=EventSample(x, observables),
            signals={},
            provenance=provenance,
            labels=labels,
            anomalous_name="bad",
            training=self.training,
            supervision=SUPERVISION,
            feature_groups={
                name: list(range(int(start), int(stop)))
                for name, start, stop in zip(grouped, starts[:-1], starts[1:], strict=True)
            },
        )
