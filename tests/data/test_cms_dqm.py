"""CMS data-quality files: a generator in the published layout, the trust gate, conversion, weights."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from hepad_cli.data.cms_dqm import channel_columns, luminosity_weights, read_converted
from hepad_cli.data.dataset import stratified_split
from hepad_cli.data.samples import DataError
from hepad_cli.experiment import fit
from hepad_cli.models.pca import PCAReconstruction
from tests.conftest import build_dataset

STREAMS = ("minibias", "muons", "photons")
CHANNELS = ("muons", "photons", "PF", "calo")
QUANTILES = ("q1", "q2", "q3", "q4", "q5")
# Subsystem -> the (stream, channel) whose features its anomalies disturb. "Pixel" is never bad.
SUBSYSTEMS = {
    "Muon": ("muons", "muons"),
    "Ecal": ("photons", "photons"),
    "Hcal": ("minibias", "calo"),
    "Tracker": ("minibias", "PF"),
    "Pixel": None,
}
SUBSYSTEM_CHANNEL = {"Muon": "muons", "Ecal": "photons", "Hcal": "calo", "Tracker": "PF"}


class Python2Pickler(pickle._Pickler):
    """Writes what Python 2 wrote: byte strings as STRING opcodes (bytes and ASCII-encodable text alike),
    numpy classes under ``numpy.core``. Python 3 reads such pickles only with ``encoding="latin1"``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    def save_text(self, obj):
        try:
            obj.encode("latin1")
        except UnicodeEncodeError:
            return pickle._Pickler.save_str(self, obj)
        return self.save_py2_str(obj)

    def save_global(self, obj, name=None):
        buffer = io.BytesIO()
        inner = pickle._Pickler(buffer, protocol=2)
        inner.save_global(obj, name)
        self.write(buffer.getvalue().replace(b"numpy._core.", b"numpy.core."))
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_text


def python2_pickle(obj, path: Path) -> None:
    with open(path, "wb") as handle:
        Python2Pickler(handle, protocol=2).dump(obj)


def generate_lumisections(
    n: int = 900,
    seed: int = 3,
    bad_fraction: float = 0.4,
    zero_lumi_fraction: float = 0.03,
    variables: tuple[str, ...] = ("pt", "eta"),
    stats: tuple[str, ...] = ("p50", "mean", "std"),
    shift: float = 2.5,
):
    """(DataFrame in the merged.pickle layout, global labels, {subsystem: labels}, broken subsystem per row).

    Each bad lumisection has exactly one broken subsystem; its anomaly shifts the pT columns of that
    subsystem's (stream, channel) group by ``shift`` standard deviations of the noise.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    lumi = rng.uniform(0.5, 3.0, n)
    lumi[rng.random(n) < zero_lumi_fraction] = 0.0
    broken = np.where(rng.random(n) < bad_fraction, rng.integers(0, 4, n), -1)
    names = list(SUBSYSTEMS)
    subsystems = {name: (broken != i).astype(np.uint8) for i, name in enumerate(names)}
    labels = np.prod(np.stack(list(subsystems.values())), axis=0).astype(np.int64)
    columns = {
        "_run": np.repeat(np.arange(146000, 146000 + n // 100 + 1), 100)[:n],
        "_luminosityBlock": np.arange(n),
    }
    for stream in STREAMS:
        columns[f"_instantLumi_{stream}"] = lumi * rng.uniform(0.98, 1.02, n)
    for stream in STREAMS:
        columns[f"{stream}_nEvents"] = rng.poisson(500 * lumi + 1).astype(np.float64)
        columns[f"{stream}_nonZeroWeights"] = rng.uniform(0.8, 1.0, n)
        for stat in stats:
            columns[f"{stream}_instantLumi_{stat}"] = lumi + rng.normal(0, 0.01, n)
        for channel in CHANNELS:
            affected = [i for i, s in enumerate(names) if SUBSYSTEMS[s] == (stream, channel)]
            anomalous = np.isin(broken, affected)
            for var in variables:
                for q, quantile in enumerate(QUANTILES):
                    for stat in stats:
                        base = 10.0 * (q + 1) if var == "pt" else 0.0
                        values = base + 0.3 * lumi + rng.normal(0.0, 1.0, n)
                        if var == "pt":
                            values = values + shift * anomalous
                        columns[f"{stream}_{channel}_{var}_{quantile}_{stat}"] = values
            for component in ("Px", "Py", "Pz"):
                columns[f"{stream}_{channel}_{component}_mean"] = rng.normal(0.0, 1.0, n)
    frame = pd.DataFrame(columns)
    # Object column names, as pandas 0.x wrote them (pandas 3 makes Arrow strings when pyarrow is installed).
    frame.columns = pd.Index(list(frame.columns), dtype=object)
    return frame, labels, subsystems, broken


def write_cms_dqm_files(directory: Path, **kwargs) -> dict:
    """merged.pickle and subsystem_labels.pickled as Python 2 pickles and labels.npy; returns the content."""
    directory.mkdir(parents=True, exist_ok=True)
    frame, labels, subsystems, broken = generate_lumisections(**kwargs)
    python2_pickle(frame, directory / "merged.pickle")
    np.save(directory / "labels.npy", labels)
    python2_pickle(subsystems, directory / "subsystem_labels.pickled")
    return {"frame": frame, "labels": labels, "subsystems": subsystems, "broken": broken}


@pytest.fixture
def cms_files(tmp_path: Path) -> tuple[Path, dict]:
    directory = tmp_path / "cms_dqm"
    return directory, write_cms_dqm_files(directory, n=400)


def _forbid_unpickling(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    for name in ("load", "loads", "Unpickler", "_Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)


# --- the generator writes what the notebook read -------------------------------------------------------


def test_generated_pickles_are_python2_style_and_need_latin1(cms_files):
    directory, written = cms_files
    raw = (directory / "merged.pickle").read_bytes()
    assert raw[:2] == b"\x80\x02" and b"numpy.core.multiarray" in raw
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(raw)  # Python 3's default ASCII decoding fails on the Python 2 byte strings
    frame = pickle.loads(raw, encoding="latin1")
    assert list(frame.columns) == list(written["frame"].columns)
    assert "muons_muons_pt_q3_mean" in frame.columns and "minibias_nEvents" in frame.columns
    subsystems = pickle.loads((directory / "subsystem_labels.pickled").read_bytes(), encoding="latin1")
    assert set(subsystems) == set(SUBSYSTEMS) and all(v.dtype == np.uint8 for v in subsystems.values())


# --- the trust gate ----------------------------------------------------------------------------------------


def test_without_trust_pickle_nothing_is_loaded_and_the_error_says_how_to_proceed(cms_files, monkeypatch):
    directory, _ = cms_files
    _forbid_unpickling(monkeypatch)
    with pytest.raises(DataError) as error:
        build_dataset("cms_dqm", directory).load()
    message = str(error.value)
    assert "data.trust_pickle=true" in message and "arbitrary code" in message
    assert str(directory / "cms_dqm.h5") in message and "later runs read that file instead" in message
    assert not (directory / "cms_dqm.h5").exists()


def test_missing_files_say_there_is_no_public_download(tmp_path):
    (tmp_path / "labels.npy").parent.mkdir(exist_ok=True)
    np.save(tmp_path / "labels.npy", np.ones(3))
    with pytest.raises(DataError) as error:
        build_dataset("cms_dqm", tmp_path, trust_pickle=True).load()
    message = str(error.value)
    assert "missing in" in message and "merged.pickle, subsystem_labels.pickled" in message
    assert "no public download" in message and "labels.npy (1 = good" in message


def test_trusted_run_converts_once_and_later_runs_read_hdf5_only(cms_files, monkeypatch):
    directory, written = cms_files
    first = build_dataset("cms_dqm", directory, trust_pickle=True, seed=5).load()
    converted = directory / "cms_dqm.h5"
    tables, sources = read_converted(converted)
    assert tables["columns"] == list(written["frame"].columns)
    np.testing.assert_array_equal(tables["values"], written["frame"].to_numpy(dtype=np.float64))
    np.testing.assert_array_equal(tables["labels"], written["labels"])
    assert set(sources) == {"merged.pickle", "subsystem_labels.pickled", "labels.npy"}
    assert {entry["path"] for entry in first.provenance} >= {str(converted), str(directory / "merged.pickle")}

    _forbid_unpickling(monkeypatch)
    second = build_dataset("cms_dqm", directory, trust_pickle=False, seed=5).load()
    np.testing.assert_array_equal(first.background_train, second.background_train)
    np.testing.assert_array_equal(first.train_labels, second.train_labels)
    assert [entry["path"] for entry in second.provenance] == [str(converted)]
    assert second.provenance[0]["converted_from"]["merged.pickle"]["md5"] == sources["merged.pickle"]["md5"]


def test_a_pickle_changed_after_conversion_is_not_silently_ignored(cms_files, monkeypatch):
    directory, _ = cms_files
    build_dataset("cms_dqm", directory, trust_pickle=True).load()
    write_cms_dqm_files(directory, n=300, seed=9)
    _forbid_unpickling(monkeypatch)
    with pytest.raises(DataError, match=r"changed after .*cms_dqm.h5 was converted.*data.trust_pickle=true"):
        build_dataset("cms_dqm", directory).load()


# --- what load() returns -------------------------------------------------------------------------------


def test_channels_lumi_weights_split_and_scaling_follow_the_notebook(cms_files):
    directory, written = cms_files
    samples = build_dataset("cms_dqm", directory, trust_pickle=True, seed=1).load()
    frame, labels = written["frame"], written["labels"]
    lumi = (
        frame[["_instantLumi_minibias", "_instantLumi_muons", "_instantLumi_photons"]].max(axis=1).to_numpy()
    )
    kept = lumi > 0
    assert (~kept).sum() > 0
    events = samples.counts()
    n_kept = events["background_train"] + events["background_val"] + events["background_test"]
    assert n_kept + events["signal_bad"] == kept.sum()
    # Channels: <stream>_<objects>_ columns (30 per-quantile + 3 momentum sums) plus the stream's lumi.
    sizes = {name: len(columns) for name, columns in samples.feature_groups.items()}
    assert sizes == {"muons": 34, "photons": 34, "PF": 33, "calo": 33}
    assert samples.background_train.shape[1] == sum(sizes.values())
    # Weak supervision: training holds good and bad lumisections with labels and luminosity weights.
    assert set(np.unique(samples.train_labels)) == {0.0, 1.0}
    assert samples.supervision.startswith("weak: global good/bad lumisection labels")
    good_fraction = labels[kept].mean()
    assert abs(samples.train_labels.mean() - good_fraction) < 0.02  # stratified
    # Standardised on the training rows only.
    assert np.allclose(samples.background_train.mean(axis=0), 0.0, atol=1e-4)
    assert np.allclose(samples.background_train.std(axis=0), 1.0, atol=1e-3)
    assert not np.allclose(samples.background_test.mean(axis=0), 0.0, atol=1e-3)
    # Weights: lumi / total lumi of the class; test observables keep them with the subsystem labels.
    weights = samples.observables["bad"]["weight"]
    np.testing.assert_allclose(
        weights, samples.observables["bad"]["luminosity"] / lumi[kept & (labels == 0)].sum()
    )
    assert set(samples.observables["background"]) >= {f"subsystem_{name}" for name in SUBSYSTEMS}
    assert (samples.observables["background"]["subsystem_Muon"] == 1).all()


def test_luminosity_weights_make_both_classes_weigh_the_same():
    lumi = np.array([1.0, 2.0, 3.0, 4.0])
    labels = np.array([1, 0, 1, 0])
    weights = luminosity_weights(lumi, labels)
    np.testing.assert_allclose(weights, [0.25, 2 / 6, 0.75, 4 / 6])
    assert weights[labels == 1].sum() == pytest.approx(1.0) and weights[labels == 0].sum() == pytest.approx(
        1.0
    )


def test_stratified_split_keeps_the_class_fractions():
    labels = np.r_[np.ones(80, int), np.zeros(20, int)]
    parts = stratified_split(labels, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(100))
    assert [int((labels[rows] == 0).sum()) for rows in parts.values()] == [12, 4, 4]


def test_channel_grouping_reports_unknown_prefixes():
    columns = ["_run", "muons_muons_pt_q1_mean", "minibias_PF_eta_q2_std", "_instantLumi_muons"]
    grouped = channel_columns(
        columns,
        {"muons": {"stream": "muons", "objects": "muons", "extra_columns": ["_instantLumi_muons"]}},
    )
    assert grouped == {"muons": ["muons_muons_pt_q1_mean", "_instantLumi_muons"]}
    with pytest.raises(DataError, match=r"no column starts with 'minibias_calo_'.*minibias_PF"):
        channel_columns(columns, {"calo": {"stream": "minibias", "objects": "calo"}})


def test_good_only_training_is_unsupervised_and_weak_labels_refuse_unsupervised_detectors(cms_files):
    directory, _ = cms_files
    good_only = build_dataset("cms_dqm", directory, trust_pickle=True, training="good_only").load()
    assert good_only.train_labels is None and good_only.supervision is None
    assert not good_only.has_training_labels
    assert good_only.training_set("train").labels is None
    fit(PCAReconstruction(latent_dim=2), good_only)  # an unsupervised detector trains on good lumisections

    weak = build_dataset("cms_dqm", directory, training="weak").load()
    assert weak.training_set("train").labels is not None
    with pytest.raises(DataError, match="trains unsupervised.*data.training=good_only"):
        fit(PCAReconstruction(latent_dim=2), weak)


def test_bad_settings_fail_before_reading(tmp_path):
    with pytest.raises(DataError, match="data.training"):
        build_dataset("cms_dqm", tmp_path, training="strong")
    with pytest.raises(DataError, match="data.trust_pickle must be true or false"):
        build_dataset("cms_dqm", tmp_path, trust_pickle="yes")
    with pytest.raises(DataError, match="data.channels.muons"):
        build_dataset("cms_dqm", tmp_path, channels={"muons": {"stream": "muons"}})


def test_nan_in_a_channel_column_is_rejected_with_its_name(tmp_path):
    directory = tmp_path / "cms_dqm"
    frame = write_cms_dqm_files(directory, n=120)["frame"]
    row = int(np.flatnonzero(frame["_instantLumi_muons"] > 0)[0])
    frame.loc[row, "minibias_calo_pt_q2_mean"] = np.nan
    python2_pickle(frame, directory / "merged.pickle")
    with pytest.raises(DataError, match=r"1 lumisections hold NaN.*minibias_calo_pt_q2_mean.*clean the file"):
        build_dataset("cms_dqm", directory, trust_pickle=True).load()
