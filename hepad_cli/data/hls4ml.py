"""The hls4ml LHC jet dataset: 16 high-level jet-substructure features (reference system 2 of docs/design.md).

Two real sources, one result:

- ``source: openml``: OpenML data id 42468 (``hls4ml_lhc_jets_hlf``, 830k jets, string target ``class``
  with values g, q, t, w, z) through scikit-learn's ``fetch_openml`` with a cache directory under the data
  directory. scikit-learn checks the ARFF against the md5 in OpenML's dataset description; with
  ``download: false`` every cached response must already be there (no network call is made).
- ``source: h5``: the HDF5 files of Zenodo record 3602254 (``jets`` array of 59 columns: the 16 features
  at [12, 34..46, 48, 52], one-hot g, q, W, Z, t at [53..57]). Files are listed (globs allowed) relative to
  the data directory; when none is there, the configured archive is fetched (checksum-verified) and
  extracted with path checks, and the md5 of every extracted file is kept in ``<archive>.manifest.json``
  so later runs verify the files against it (files placed there by hand are read as unverified).

The label orders differ: OpenML's nominal values are g, q, t, w, z (what a LabelEncoder gives), the HDF5
one-hot is g, q, W, Z, t; both are mapped by name. Background = q and g jets, split train/val/test with
the seed; signals (each its own ROC) = W, Z and top jets, test only. The StandardScaler is fitted on the
background training split only and applied to everything. ``mass_mmdt`` (GeV, unscaled) is kept as the
per-jet observable ``mass``.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from hepad_cli.data.dataset import Dataset, DatasetContent, EventSample, Finding
from hepad_cli.data.download import DataFileError, fetch_file, file_md5
from hepad_cli.data.samples import open_hdf5
from hepad_cli.errors import DataError
from hepad_cli.io import atomic_write_json
from hepad_cli.validation import check_choice, check_int

log = logging.getLogger(__name__)

FEATURES = (
    "zlogz",
    "c1_b0_mmdt",
    "c1_b1_mmdt",
    "c1_b2_mmdt",
    "c2_b1_mmdt",
    "c2_b2_mmdt",
    "d2_b1_mmdt",
    "d2_b2_mmdt",
    "d2_a1_b1_mmdt",
    "d2_a1_b2_mmdt",
    "m2_b1_mmdt",
    "m2_b2_mmdt",
    "n2_b1_mmdt",
    "n2_b2_mmdt",
    "mass_mmdt",
    "multiplicity",
)
MASS_INDEX = FEATURES.index("mass_mmdt")
# HDF5 `jets` layout of Zenodo 3602254 (names as in its `jetFeatureNames`).
H5_COLUMNS = 59
H5_FEATURE_COLUMNS = (12, *range(34, 47), 48, 52)
H5_LABEL_COLUMNS = {"g": 53, "q": 54, "w": 55, "z": 56, "top": 57}
H5_LABEL_NAMES = {"g": "j_g", "q": "j_q", "w": "j_w", "z": "j_z", "top": "j_t"}
# The 59 `jetFeatureNames` of the published files.
H5_FEATURE_NAMES = (
    "j_ptfrac",
    "j_pt",
    "j_eta",
    "j_mass",
    "j_tau1_b1",
    "j_tau2_b1",
    "j_tau3_b1",
    "j_tau1_b2",
    "j_tau2_b2",
    "j_tau3_b2",
    "j_tau32_b1",
    "j_tau32_b2",
    "j_zlogz",
    "j_c1_b0",
    "j_c1_b1",
    "j_c1_b2",
    "j_c2_b1",
    "j_c2_b2",
    "j_d2_b1",
    "j_d2_b2",
    "j_d2_a1_b1",
    "j_d2_a1_b2",
    "j_m2_b1",
    "j_m2_b2",
    "j_n2_b1",
    "j_n2_b2",
    "j_tau1_b1_mmdt",
    "j_tau2_b1_mmdt",
    "j_tau3_b1_mmdt",
    "j_tau1_b2_mmdt",
    "j_tau2_b2_mmdt",
    "j_tau3_b2_mmdt",
    "j_tau32_b1_mmdt",
    "j_tau32_b2_mmdt",
    "j_c1_b0_mmdt",
    "j_c1_b1_mmdt",
    "j_c1_b2_mmdt",
    "j_c2_b1_mmdt",
    "j_c2_b2_mmdt",
    "j_d2_b1_mmdt",
    "j_d2_b2_mmdt",
    "j_d2_a1_b1_mmdt",
    "j_d2_a1_b2_mmdt",
    "j_m2_b1_mmdt",
    "j_m2_b2_mmdt",
    "j_n2_b1_mmdt",
    "j_n2_b2_mmdt",
    "j_mass_trim",
    "j_mass_mmdt",
    "j_mass_prun",
    "j_mass_sdb2",
    "j_mass_sdm1",
    "j_multiplicity",
    "j_g",
    "j_q",
    "j_w",
    "j_z",
    "j_t",
    "j_undef",
)
# OpenML's target values → the names used here.
OPENML_LABELS = {"g": "g", "q": "q", "t": "top", "w": "w", "z": "z"}
BACKGROUND_CLASSES = ("g", "q")
SIGNAL_CLASSES = ("w", "z", "top")
SOURCES = ("openml", "h5")


# --- OpenML ------------------------------------------------------------------------------------------


def openml_cache_paths(data_home: Path, data_id: int) -> dict[str, Path]:
    """Where scikit-learn's fetch_openml caches the JSON answers of the OpenML API for ``data_id``."""
    root = Path(data_home) / "openml" / "openml.org" / "api" / "v1" / "json" / "data"
    return {
        "description": root / f"{data_id}.gz",
        "features": root / "features" / f"{data_id}.gz",
        "qualities": root / "qualities" / f"{data_id}.gz",
    }


def _arff_cache_path(data_home: Path, url: str) -> Path:
    from urllib.parse import urlparse

    return Path(data_home) / "openml" / "openml.org" / (urlparse(url).path.lstrip("/") + ".gz")


def _read_cached_description(path: Path) -> dict:
    try:
        with gzip.open(path, "rt") as handle:
            return json.load(handle)["data_set_description"]
    except (OSError, ValueError, KeyError) as error:
        raise DataError(
            f"the cached OpenML description {path} is unreadable ({error}); delete it and retry"
        ) from error


def read_openml(
    data_home: Path, data_id: int, download: bool, checksum: str | None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(features (n, 16) float32, labels (n,) of g/q/w/z/top, provenance entry) from OpenML via its cache."""
    from sklearn.datasets import fetch_openml

    data_home = Path(data_home).expanduser().resolve()
    cached = openml_cache_paths(data_home, data_id)
    if not download:
        missing = [str(path) for path in cached.values() if not path.is_file()]
        if not missing:
            description = _read_cached_description(cached["description"])
            arff = _arff_cache_path(data_home, description.get("url", ""))
            if not arff.is_file():
                missing.append(str(arff))
        if missing:
            raise DataError(
                f"OpenML dataset {data_id} is not (completely) in the cache {data_home / 'openml'} and "
                f"data.download=false; missing: {missing}. Fix: set data.download=true to fetch it from "
                "openml.org (about 80 MB), or point data.data_dir at a directory holding the cache."
            )
    log.info("OpenML dataset %d, cache %s", data_id, data_home / "openml")
    try:
        bunch = fetch_openml(data_id=data_id, data_home=str(data_home), as_frame=True, parser="pandas")
    except (OSError, ValueError) as error:
        raise DataError(
            f"cannot load OpenML dataset {data_id} (cache {data_home / 'openml'}): {error}. Fix: check the "
            "network (data.download=true needs openml.org), or delete a corrupt cache and retry."
        ) from error
    frame = bunch.data
    missing_columns = [name for name in FEATURES if name not in frame.columns]
    if missing_columns:
        raise DataError(
            f"OpenML dataset {data_id} lacks the features {missing_columns}; it has {list(frame.columns)}"
        )
    features = frame[list(FEATURES)].to_numpy(dtype=np.float32)
    raw_labels = np.asarray(bunch.target.astype(str).str.strip().str.lower())
    unknown = sorted(set(np.unique(raw_labels)) - set(OPENML_LABELS))
    if unknown:
        raise DataError(
            f"OpenML dataset {data_id} has unexpected classes {unknown}; expected {sorted(OPENML_LABELS)}"
        )
    labels = np.vectorize(OPENML_LABELS.get, otypes=[object])(raw_labels).astype(str)

    description = _read_cached_description(cached["description"])
    published = f"md5:{str(description.get('md5_checksum', '')).lower()}"
    arff = _arff_cache_path(data_home, description["url"])
    if checksum not in (None, "openml") and str(checksum).strip().lower() != published:
        raise DataError(
            f"OpenML dataset {data_id}: the ARFF's md5 is {published} (checked by scikit-learn against "
            f"OpenML's description) but data.openml.checksum pins {checksum}. Fix: delete "
            f"{data_home / 'openml'} to fetch it again, or correct the pinned checksum."
        )
    provenance = {
        "path": str(arff),
        "md5": file_md5(arff),
        "verified": checksum is not None,
        "expected_checksum": published if checksum is not None else None,
        "checksum_of": "uncompressed ARFF (checked by scikit-learn's fetch_openml)",
        "source": f"openml:{data_id}",
        "rows_read": int(len(labels)),
    }
    if checksum is None:
        log.warning("OpenML dataset %d read with data.openml.checksum=null: recorded as unverified", data_id)
    return features, labels, provenance


# --- HDF5 --------------------------------------------------------------------------------------------


def write_hls4ml_h5(
    path: str | os.PathLike,
    features: np.ndarray,
    labels: np.ndarray,
    pt: np.ndarray | None = None,
) -> None:
    """Write jets in the Zenodo 3602254 layout: ``jets`` (n, 59) float32 and ``jetFeatureNames``.

    features: (n, 16) in FEATURES order; labels: (n,) of g/q/w/z/top; pt: optional jet pT (GeV, column 1).
    Columns not given are zero. Used by the tests and to convert other samples to this layout.
    """
    import h5py

    features = np.asarray(features, dtype=np.float32)
    jets = np.zeros((len(features), H5_COLUMNS), dtype=np.float32)
    jets[:, list(H5_FEATURE_COLUMNS)] = features
    for name, column in H5_LABEL_COLUMNS.items():
        jets[:, column] = np.asarray(labels) == name
    if pt is not None:
        jets[:, 1] = pt
    with h5py.File(path, "w") as f:
        f.create_dataset("jets", data=jets)
        f.create_dataset("jetFeatureNames", data=np.array([n.encode() for n in H5_FEATURE_NAMES]))


def read_hls4ml_h5(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, 16) float32, labels (n,) of g/q/w/z/top) from one file; unlabelled jets are dropped."""

    with open_hdf5(path, "delete it to fetch it again") as f:
        if "jets" not in f:
            raise DataError(
                f"{path} has no 'jets' dataset (keys: {sorted(f.keys())}); expected the hls4ml layout "
                "of Zenodo record 3602254"
            )
        jets = f["jets"]
        if jets.ndim != 2 or jets.shape[1] != H5_COLUMNS:
            raise DataError(f"{path}: 'jets' has shape {jets.shape}, expected (n_jets, {H5_COLUMNS})")
        if "jetFeatureNames" in f:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["jetFeatureNames"][:]]
            wanted = {c: f"j_{n}" for c, n in zip(H5_FEATURE_COLUMNS, FEATURES, strict=True)}
            wanted |= {H5_LABEL_COLUMNS[k]: v for k, v in H5_LABEL_NAMES.items()}
            wrong = {
                c: (names[c] if c < len(names) else None, want)
                for c, want in wanted.items()
                if c >= len(names) or names[c] != want
            }
            if wrong:
                raise DataError(
                    f"{path}: jetFeatureNames differ from the published layout at columns "
                    f"{ {c: f'{got!r} instead of {want!r}' for c, (got, want) in wrong.items()} }"
                )
        data = jets[:]
    features = np.ascontiguousarray(data[:, list(H5_FEATURE_COLUMNS)], dtype=np.float32)
    names = list(H5_LABEL_COLUMNS)
    onehot = data[:, [H5_LABEL_COLUMNS[n] for n in names]]
    valid = (onehot.sum(axis=1) == 1) & np.isin(onehot, (0, 1)).all(axis=1)
    if not valid.all():
        raise DataError(
            Finding(
                str(path),
                "do not have exactly one of the labels j_g, j_q, j_w, j_z, j_t set to 1 (and the others 0)",
                np.flatnonzero(~valid),
                len(valid),
                "labels must be exactly one-hot; fix the file (no jet is relabelled or dropped silently)",
                unit="jets",
            ).message()
        )
    labels = np.asarray(names)[onehot.argmax(axis=1)]
    return features, labels


def extract_archive(archive: Path, target: Path) -> list[Path]:
    """Extract a tar archive into ``target`` refusing unsafe members; all-or-nothing per top-level entry."""
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".extracting", dir=target))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                # The 'data' filter rejects absolute paths, '..', links leaving the target and device files.
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise DataError(f"cannot extract {archive}: {error}; delete it to download it again") from error
        moved = []
        for entry in sorted(staging.iterdir()):
            destination = target / entry.name
            if destination.exists():
                raise DataError(
                    f"{destination} already exists: move it away before extracting {archive.name} again"
                )
            os.replace(entry, destination)
            moved.append(destination)
        return moved
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- the dataset -------------------------------------------------------------------------------------


def drop_jets_shared_with_background(background: np.ndarray, signals: dict[str, np.ndarray]) -> dict:
    """Signal jets whose 16 features equal a background jet's (duplicated rows with another label) are
    dropped with a warning: they cannot be told apart, and training must never see a signal event."""
    known = {row.tobytes() for row in np.ascontiguousarray(background)}
    kept = {}
    for name, x in signals.items():
        x = np.ascontiguousarray(x)
        shared = np.fromiter((row.tobytes() in known for row in x), dtype=bool, count=len(x))
        if shared.any():
            log.warning(
                "signal '%s': %d of %d jets have exactly the features of a q/g jet and are dropped",
                name,
                int(shared.sum()),
                len(x),
            )
        kept[name] = x[~shared]
    return kept


class HLS4MLJets(Dataset):
    """Background = q and g jets; signals = any of w, z, top; 16 features per jet."""

    background_name = "qcd"

    def __init__(
        self,
        *,
        data_dir: str,
        source: str,
        download: bool,
        openml: dict,
        h5: dict,
        signals: list[str],
        max_jets: int | None,
        scaling: str | None,
        invert: bool,
        invert_signal: str | None,
        split: dict,
        seed: int,
    ) -> None:
        super().__init__(split=split, seed=seed, scaling=scaling, invert=invert, invert_signal=invert_signal)
        self.data_dir = data_dir
        self.source = check_choice("data.source", source, SOURCES, error=DataError)
        self.download = download
        self.openml = dict(openml)
        self.h5 = dict(h5)
        self.signals = list(signals) if isinstance(signals, list | tuple) else signals
        self.max_jets = check_int("data.max_jets", max_jets, allow_none=True, error=DataError)
        if (
            not isinstance(self.signals, list)
            or not self.signals
            or not set(self.signals) <= set(SIGNAL_CLASSES)
        ):
            raise DataError(
                f"data.signals must be a non-empty subset of {list(SIGNAL_CLASSES)}, got {signals!r}"
            )
        check_int("data.openml.data_id", self.openml.get("data_id"), hint="42468", error=DataError)
        files = self.h5.get("files")
        if not isinstance(files, list | tuple) or not files or not all(isinstance(f, str) for f in files):
            raise DataError(f"data.h5.files must be a non-empty list of file names or globs, got {files!r}")
        archive = self.h5.get("archive")
        if archive is not None and not (isinstance(archive, dict) and {"file", "url"} <= set(archive)):
            raise DataError(f"data.h5.archive must be null or have keys file, url, checksum; got {archive!r}")

    # -- reading --

    def _read_h5(self, data_dir: Path) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        paths = self._h5_paths(data_dir)
        extracted_from = None
        if not paths:
            archive = self.h5.get("archive")
            if archive is None:
                raise DataError(
                    f"no file matches data.h5.files={list(self.h5['files'])} in {data_dir} and no "
                    "data.h5.archive is configured; put the hls4ml HDF5 files there"
                )
            try:
                fetched = fetch_file(
                    archive["url"],
                    data_dir / archive["file"],
                    archive.get("checksum"),
                    allow_download=self.download,
                )
            except DataFileError as error:
                raise DataError(
                    f"no file matches data.h5.files={list(self.h5['files'])} in {data_dir}, and the "
                    f"archive holding them is unavailable: {error}"
                ) from error
            log.info("extracting %s into %s", fetched.path, data_dir)
            extract_archive(fetched.path, data_dir)
            extracted_from = fetched
            if fetched.verified:
                self._manifest_path(data_dir).unlink(missing_ok=True)
            paths = self._h5_paths(data_dir)
            if not paths:
                raise DataError(
                    f"{fetched.path.name} was extracted into {data_dir} but no file matches "
                    f"data.h5.files={list(self.h5['files'])}"
                )
        manifest = self._manifest(data_dir)
        features, labels, provenance = [], [], []
        for path in paths:
            x, y = read_hls4ml_h5(path)
            features.append(x)
            labels.append(y)
            entry = {"path": str(path), "md5": file_md5(path), "rows_read": int(len(y))}
            if extracted_from is not None and extracted_from.verified:
                manifest["files"][path.relative_to(data_dir).as_posix()] = entry["md5"]
                manifest["archive_checksum"] = extracted_from.expected
            recorded = manifest["files"].get(path.relative_to(data_dir).as_posix())
            if recorded is not None and manifest.get("archive_verified"):
                if recorded != entry["md5"]:
                    raise DataError(
                        f"{path} changed since it was extracted from {manifest['archive']} "
                        f"(md5 {entry['md5']}, recorded {recorded}); delete it to extract it again"
                    )
                entry |= {
                    "verified": True,
                    "extracted_from": manifest["archive"],
                    "archive_checksum": manifest.get("archive_checksum"),
                    "expected_checksum": f"md5:{recorded}",
                }
            else:
                entry["verified"] = False
                log.warning(
                    "%s is UNVERIFIED (only files extracted here from a checksum-verified archive count as "
                    "verified); md5 %s",
                    path,
                    entry["md5"],
                )
            provenance.append(entry)
        if extracted_from is not None and extracted_from.verified:
            atomic_write_json(self._manifest_path(data_dir), manifest)
        log.info("read %d labelled jets from %d hls4ml HDF5 files", sum(len(y) for y in labels), len(paths))
        return np.concatenate(features), np.concatenate(labels), provenance

    def _manifest_path(self, data_dir: Path) -> Path:
        archive = self.h5.get("archive") or {"file": "hls4ml_h5"}
        return data_dir / f"{archive['file']}.manifest.json"

    def _manifest(self, data_dir: Path) -> dict:
        """md5 of every file extracted from the verified archive, written when it was extracted here."""
        archive = (self.h5.get("archive") or {}).get("file")
        empty = {
            "archive": str(data_dir / archive) if archive else None,
            "archive_verified": True,
            "files": {},
        }
        path = self._manifest_path(data_dir)
        if not path.is_file():
            return empty
        try:
            manifest = json.loads(path.read_text())
            if not isinstance(manifest.get("files"), dict):
                raise ValueError("no 'files' mapping")
        except (OSError, ValueError) as error:
            log.warning("ignoring unreadable %s (%s): the files count as unverified", path, error)
            return empty | {"archive_verified": False}
        return manifest

    def _h5_paths(self, data_dir: Path) -> list[Path]:
        paths: set[Path] = set()
        for pattern in self.h5["files"]:
            paths.update(Path(p) for p in glob.glob(str(data_dir / pattern)) if Path(p).is_file())
        return sorted(paths)

    def physical_checks(self, name: str, sample: EventSample) -> list[Finding]:
        """A groomed mass and a constituent count cannot be negative."""
        fix = "the 16 features must be in the published order and units; fix or convert the file"
        return [
            Finding(
                name,
                f"have a negative {feature}",
                np.flatnonzero(sample.events[:, FEATURES.index(feature)] < 0),
                len(sample),
                fix,
                unit="jets",
            )
            for feature in ("mass_mmdt", "multiplicity")
        ]

    def read(self) -> DatasetContent:
        data_dir = Path(self.data_dir).expanduser().resolve()
        log.info("hls4ml jets (%s source), data directory %s", self.source, data_dir)
        if self.source == "openml":
            features, labels, entry = read_openml(
                data_dir, self.openml["data_id"], self.download, self.openml.get("checksum")
            )
            provenance = [entry]
        else:
            features, labels, provenance = self._read_h5(data_dir)
        rows = self.subsample_rows(len(labels), self.max_jets)
        if rows is not None:
            features, labels = features[rows], labels[rows]
        counts = {name: int((labels == name).sum()) for name in (*BACKGROUND_CLASSES, *SIGNAL_CLASSES)}
        log.info("jets per class: %s", counts)
        background = features[np.isin(labels, BACKGROUND_CLASSES)]
        signals = {name: features[labels == name] for name in self.signals}
        signals = drop_jets_shared_with_background(background, signals)
        for name, x in signals.items():
            if len(x) == 0:
                raise DataError(
                    f"signal '{name}' is empty: the data hold no {name} jets (class counts {counts})"
                )
        # mass_mmdt (GeV) before any scaling, as the observable of plots and sculpting checks.
        return DatasetContent(
            background=EventSample(background, {"mass": background[:, MASS_INDEX].copy()}),
            signals={name: EventSample(x, {"mass": x[:, MASS_INDEX].copy()}) for name, x in signals.items()},
            provenance=provenance,
        )
