"""Bad input: one row per case. Each must exit non-zero, say what is wrong and how to fix it, and write
nothing that looks like a result. The README's troubleshooting table and its table of data checks list the
same cases; ``test_every_readme_row_has_a_test`` holds the README to these tests (and those of
test_faults.py: interruptions and full disks)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from hepad_cli.data.toptagging_format import N_FLOAT_COLUMNS, N_PARTICLE_COLUMNS, write_toptagging_h5
from hepad_cli.models.pca import PCAReconstruction
from hepad_cli.provenance import process_identity
from tests.conftest import REPO, TINY_PYTHIA, build_dataset, run_cli, toy_jets

JETNET = ["data=jetnet", "data.download=false", "data.checksum=null", "model=pca", "evaluator.n_bootstrap=0"]
N_QCD, N_TOP = 60, 20


def jetnet_jets(n_qcd: int = N_QCD, n_top: int = N_TOP) -> tuple[np.ndarray, np.ndarray]:
    """Toy QCD jets first, then toy top jets, and their 0/1 labels."""
    rng = np.random.default_rng(4)
    jets = np.concatenate([toy_jets(n_qcd, 1, rng), toy_jets(n_top, 3, rng)])
    return jets, np.r_[np.zeros(n_qcd), np.ones(n_top)]


def jetnet_dir(
    tmp_path: Path,
    n_qcd: int = N_QCD,
    n_top: int = N_TOP,
    nan: bool = False,
    damage: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> Path:
    """A toptagging/val.h5 of toy jets; ``damage(jets, labels)`` edits them in place before writing."""
    jets, labels = jetnet_jets(n_qcd, n_top)
    if nan:
        jets[5, 0, 1] = np.nan
    if damage is not None:
        damage(jets, labels)
    directory = tmp_path / "toptagging"
    directory.mkdir(parents=True, exist_ok=True)
    write_toptagging_h5(directory / "val.h5", jets, labels)
    return directory


def jetnet_with(make: Callable[[Path], None]) -> Callable[[Path, Path], list[str]]:
    """A row whose val.h5 is made by ``make(path)``."""

    def setup(tmp_path: Path, _data: Path) -> list[str]:
        directory = tmp_path / "toptagging"
        directory.mkdir(exist_ok=True)
        make(directory / "val.h5")
        return [*JETNET, f"data.data_dir={directory}"]

    return setup


def truncated(path: Path) -> None:
    good = jetnet_dir(path.parent.parent / "good") / "val.h5"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])


def not_hdf5(path: Path) -> None:
    path.write_text("E,PX,PY,PZ\n1,2,3,4\n")


def wrong_keys(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["jets"] = np.zeros((10, 59))


def wrong_shape(path: Path) -> None:
    dtype = np.dtype([("index", "<i8"), ("values_block_0", "<f8", (10,)), ("values_block_1", "<i8", (2,))])
    with h5py.File(path, "w") as f:
        f.create_dataset("table/table", data=np.zeros(5, dtype=dtype))


def half_labels(path: Path) -> None:
    """The layout with float labels, two top jets labelled 0.5: they must not be read as QCD."""
    jets, labels = jetnet_jets()
    labels[[N_QCD + 2, N_QCD + 5]] = 0.5
    dtype = np.dtype(
        [("index", "<i8"), ("values_block_0", "<f8", (N_FLOAT_COLUMNS,)), ("values_block_1", "<f8", (2,))]
    )
    table = np.zeros(len(jets), dtype)
    table["index"] = np.arange(len(jets))
    table["values_block_0"][:, :N_PARTICLE_COLUMNS] = jets.reshape(len(jets), -1)
    table["values_block_1"][:, 0] = 2
    table["values_block_1"][:, 1] = labels
    with h5py.File(path, "w") as f:
        f.create_dataset("table/table", data=table)


def labels_two_and_minus_one(jets: np.ndarray, labels: np.ndarray) -> None:
    labels[[N_QCD + 1, N_QCD + 3]] = 2
    labels[7] = -1


def empty_jets(jets: np.ndarray, labels: np.ndarray) -> None:
    jets[[3, N_QCD + 4]] = 0.0  # one QCD jet, one top jet without constituents


def energy_below_momentum(jets: np.ndarray, labels: np.ndarray) -> None:
    jets[[5, 9], :, 0] *= 0.5  # E < |p| for every constituent of two jets


def adc2021(damage: Callable[[dict], None] | None = None) -> Callable[[Path, Path], list[str]]:
    """ADC2021 files (background and A→4ℓ) in the published layout; ``damage(files)`` rewrites some."""
    from hepad_cli.data.adc2021 import write_adc2021_h5
    from tests.data.test_adc2021 import SIGNAL_NAMES, write_adc_files

    def setup(tmp_path: Path, _data: Path) -> list[str]:
        directory = tmp_path / "adc"
        files = write_adc_files(directory, n_background=400, n_signal=50)
        if damage is not None:
            for path, events in damage(files):
                write_adc2021_h5(path, events)
        kept = ("Ato4l", "leptoquark")
        others = [f"~data.signals.{name}" for name in SIGNAL_NAMES if name not in kept]
        return [
            "data=adc2021",
            f"data.data_dir={directory}",
            "data.download=false",
            "data.background.checksum=null",
            *(f"data.signals.{name}.checksum=null" for name in kept),
            *others,
            "model=pca",
            "evaluator.n_bootstrap=0",
            "evaluator.plots=false",
        ]

    return setup


def phi_beyond_pi(files: dict) -> list:
    path, events = files["Ato4l"]
    events = events.copy()
    events[:10, 0, 2] += 2 * np.pi  # MET phi of ten signal events in [pi, 3 pi]
    return [(path, events)]


def negative_pt(files: dict) -> list:
    path, events = files["background"]
    events = events.copy()
    events[[7, 8], 0, 0] *= -1
    return [(path, events)]


def eta_beyond_five(files: dict) -> list:
    path, events = files["leptoquark"]
    events = events.copy()
    events[4, 0, 1] = 7.0
    return [(path, events)]


def adc_nan_loss(tmp_path: Path, _data: Path) -> list[str]:
    from tests.data.test_adc2021 import SIGNAL_NAMES, write_adc_files

    directory = tmp_path / "adc"
    write_adc_files(directory, n_background=400, n_signal=50)
    checksums = [f"data.signals.{name}.checksum=null" for name in SIGNAL_NAMES]
    return [
        "data=adc2021",
        f"data.data_dir={directory}",
        "data.download=false",
        "data.background.checksum=null",
        *checksums,
        "model=dense_ae",
        "trainer.learning_rate=1e6",
        "trainer.epochs=3",
        "trainer.progress_bar=false",
    ]


def pythia(*overrides: str) -> Callable[[Path, Path], list[str]]:
    return lambda tmp_path, data: [
        *TINY_PYTHIA,
        f"paths.data_dir={data}",
        "evaluator.n_bootstrap=0",
        *overrides,
    ]


def jetnet_toy(*overrides: str, **file_options) -> Callable[[Path, Path], list[str]]:
    return lambda tmp_path, _data: [
        *JETNET,
        f"data.data_dir={jetnet_dir(tmp_path, **file_options)}",
        *overrides,
    ]


def run_dir_is_a_file(tmp_path: Path, data: Path) -> list[str]:
    (tmp_path / "taken").write_text("not a directory")
    return [*pythia()(tmp_path, data), f"hydra.run.dir={tmp_path / 'taken'}"]


def zenodo_unreachable(tmp_path: Path, _data: Path) -> tuple[list[str], dict]:
    """checksum: zenodo with a file on disk that was never verified, and no way to reach Zenodo: every
    HTTPS request goes to a proxy on a closed loopback port."""
    directory = jetnet_dir(tmp_path)
    overrides = [*JETNET, f"data.data_dir={directory}", "data.checksum=zenodo"]
    dead_proxy = "http://127.0.0.1:9"
    return overrides, {"HTTPS_PROXY": dead_proxy, "https_proxy": dead_proxy, "NO_PROXY": "", "no_proxy": ""}


# (case, setup returning the overrides (and extra environment), what stderr must say)
ROWS = [
    ("unknown group option", pythia("model=autoencoder9000"), "Could not find 'model/autoencoder9000'"),
    ("unknown key", pythia("trainer.epoch=3"), "Key 'epoch' is not in struct"),
    ("wrong type", pythia("trainer.epochs=ten"), "trainer.epochs must be a positive integer, got 'ten'"),
    ("zero batch size", pythia("trainer.batch_size=0"), "trainer.batch_size must be a positive integer"),
    (
        "negative sample size",
        pythia("data.n_background=-5"),
        "data.n_background must be a positive integer, got -5",
    ),
    (
        "latent_dim larger than the input",
        pythia("model=pca", "model.latent_dim=1000"),
        "model.latent_dim=1000 is larger than the input (256 features)",
    ),
    ("image size zero", pythia("data.image.size=0"), "data.image.size must be a positive integer, got 0"),
    (
        "image size not an integer",
        pythia("data.image.size=2.5"),
        "data.image.size must be a positive integer",
    ),
    ("image size beyond memory", pythia("data.image.size=16384"), "of memory is available"),
    (
        "image radius beyond pi",
        pythia("data.image.radius=100"),
        "data.image.radius must be a number in (0, 3.14",
    ),
    (
        "image radius that holds no constituent",
        jetnet_toy("data.image.radius=1e-9"),
        "have no constituent within data.image.radius=1e-09 of the jet axis",
    ),
    ("seed beyond NumPy's range", pythia("seed=4294967296"), "seed must be an integer in [0, 4294967295]"),
    ("seed null", pythia("seed=null"), "seed must be an integer in [0, 4294967295], got None"),
    ("seed of the wrong type", pythia("seed=abc"), "seed must be an integer in [0, 4294967295], got 'abc'"),
    ("scalar where a list belongs", pythia("evaluator.fprs=0.1"), "evaluator.fprs must be a list of numbers"),
    ("zero repeats", pythia("evaluator.latency_repeats=0"), "evaluator.latency_repeats must be a positive"),
    ("one bootstrap replica", pythia("evaluator.n_bootstrap=1"), "is too few for a 95% interval"),
    ("zero chunk size", jetnet_toy("data.chunk_size=0"), "data.chunk_size must be a positive integer, got 0"),
    ("run directory is a file", run_dir_is_a_file, "is a file, not a directory"),
    (
        "data directory missing",
        lambda tmp_path, _d: [*JETNET, f"data.data_dir={tmp_path / 'nowhere'}"],
        "is missing and downloading is disabled. Fix: set data.download=true",
    ),
    (
        "file missing, download off",
        lambda tmp_path, _d: [*JETNET, f"data.data_dir={tmp_path}"],
        "is missing and downloading is disabled",
    ),
    ("file truncated", jetnet_with(truncated), "it may be truncated or not HDF5 at all"),
    ("file is not HDF5", jetnet_with(not_hdf5), "is not a readable HDF5 file"),
    ("HDF5 with the wrong keys", jetnet_with(wrong_keys), "has no dataset '/table/table'"),
    ("HDF5 with the wrong shapes", jetnet_with(wrong_shape), "should hold 804 columns, found (10,)"),
    (
        "checksum mismatch",
        jetnet_toy("data.checksum=md5:00000000000000000000000000000000"),
        "does not match its expected checksum: expected md5:00000000000000000000000000000000, found md5:",
    ),
    ("Zenodo not reachable, unverified file", zenodo_unreachable, "cannot learn the checksum"),
    ("empty signal sample", jetnet_toy(n_top=0), "signal 'top' is empty"),
    ("background too small to split", jetnet_toy(n_qcd=4), "too small to split"),
    ("NaN in the inputs", jetnet_toy(nan=True), "hold NaN or infinite momenta"),
    (
        "labels of 0.5",
        jetnet_with(half_labels),
        "2 of 80 jets have an is_signal_new label other than 0 (QCD) or 1 (top) (rows 62, 65)",
    ),
    (
        "labels of 2 and -1",
        jetnet_toy(damage=labels_two_and_minus_one),
        "3 of 80 jets have an is_signal_new label other than 0 (QCD) or 1 (top) (rows 7, 61, 63)",
    ),
    (
        "empty jets in background and signal",
        jetnet_toy(damage=empty_jets),
        "2 of 80 jets have no constituent with pT > 0 (empty jets) (rows 3, 64)",
    ),
    ("constituents with E < |p|", jetnet_toy(damage=energy_below_momentum), "hold constituents with E < |p|"),
    (
        "phi outside [-pi, pi]",
        adc2021(phi_beyond_pi),
        "signal 'Ato4l': 10 of 50 events have an object with phi outside [-pi, pi]",
    ),
    ("negative pT", adc2021(negative_pt), "background: 2 of 400 events have an object with negative pT"),
    ("eta beyond any detector", adc2021(eta_beyond_five), "1 of 50 events have an object with |eta| > 5"),
    ("NaN loss in training", adc_nan_loss, "the training loss became NaN or infinite"),
    (
        "inverse task with an unknown signal",
        pythia("data.invert=true", "data.invert_signal=higgs"),
        "data.invert_signal='higgs' is not a signal of this dataset; choose one of ['top', 'w', 'z']",
    ),
    (
        "decorrelation from an observable the data lack",
        jetnet_toy("evaluator.decorrelate=tau32"),
        "evaluator.decorrelate='tau32' is not an observable of every sample of this dataset; available: [",
    ),
    (
        "unknown image preprocessing step",
        pythia("data.image.preprocess=[centre]"),
        "data.image.preprocess must be a list of distinct steps from ['center', 'rotate', 'flip']",
    ),
]


@pytest.mark.parametrize(("case", "setup", "message"), ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_fails_clearly_and_writes_no_result(case, setup, message, tmp_path, pythia_data_dir):
    workdir = tmp_path / "work"
    workdir.mkdir()
    overrides = setup(tmp_path, pythia_data_dir)
    overrides, env = overrides if isinstance(overrides, tuple) else (overrides, {})
    result = run_cli(*overrides, cwd=workdir, timeout=300, env=env)
    assert result.returncode == 1, result.stderr[-2000:]
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for root in (workdir, tmp_path):
        assert not list(root.glob("**/auc.json")) and not list(root.glob("**/scores.h5"))
    for status in workdir.glob("outputs/**/status.json"):
        assert json.loads(status.read_text())["status"] == "failed"


def test_signal_file_identical_to_the_background_warns_and_unverified_files_are_named(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()

    def copy_background(files: dict) -> list:
        return [(files["Ato4l"][0], files["background"][1])]

    result = run_cli(*adc2021(copy_background)(tmp_path, tmp_path), cwd=workdir, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "byte-identical to the background" in result.stderr
    report = json.loads(next(workdir.glob("outputs/**/auc.json")).read_text())
    assert any("byte-identical" in warning for warning in report["warnings"])
    assert report["signals"]["Ato4l"]["auc"] < 0.65
    # data.checksum=null: nothing vouches for either file, and the report says so.
    assert report["data_verified"] is False
    assert sorted(Path(p).name for p in report["unverified_files"]) == [
        "Ato4l_lepFilter_13TeV.h5",
        "background_for_training.h5",
        "leptoquark_LOWMASS_lepFilter_13TeV.h5",
    ]
    # evaluator.n_bootstrap=0: no interval, written as nulls (never NaN, never a made-up range).
    assert report["signals"]["Ato4l"]["auc_interval_95"] == [None, None]


def test_usable_oddities_become_warnings_in_the_report(tmp_path):
    """Padded objects with an eta: the events are usable, so the run completes and says what it found."""

    def padding_with_eta(files: dict) -> list:
        path, events = files["background"]
        events = events.copy()
        for event in (2, 5, 11):  # the last object of these events is padding
            events[event, -1, 1] = 0.5
        return [(path, events)]

    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_cli(*adc2021(padding_with_eta)(tmp_path, tmp_path), cwd=workdir, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(next(workdir.glob("outputs/**/auc.json")).read_text())
    expected = "background: 3 of 400 events have a padded object (pT = 0) with eta or phi not 0"
    assert any(expected in warning for warning in report["warnings"]), report["warnings"]
    assert f"hepad-run: warning: {expected}" in result.stderr


def test_signal_events_equal_to_background_test_events_are_reported(tmp_path):
    from hepad_cli.data.samples import split_background
    from hepad_cli.experiment import run
    from tests.conftest import compose_config

    # A QCD jet that the seeded split puts into the test sample, copied into the top jets: no score can
    # separate the copy, but it never reaches training, so the run completes and says so.
    test_row = int(split_background(N_QCD, {"train": 0.6, "val": 0.2, "test": 0.2}, 42)["test"][0])

    def copy_a_test_jet(jets: np.ndarray, labels: np.ndarray) -> None:
        jets[N_QCD + 1] = jets[test_row]

    directory = jetnet_dir(tmp_path, damage=copy_a_test_jet)
    report = run(
        compose_config(*JETNET, f"data.data_dir={directory}", "evaluator.plots=false"), tmp_path / "r"
    )
    expected = "1 event (1 distinct) of signal 'top' equal background test events"
    assert any(expected in warning for warning in report.warnings), report.warnings


class ConstantScore(PCAReconstruction):
    """A detector that learned nothing: the same score for every event."""

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.zeros(len(x))


def test_a_score_that_is_the_same_for_every_event_is_reported(tmp_path):
    from hepad_cli.experiment import run
    from tests.conftest import compose_config

    cfg = compose_config(*JETNET, f"data.data_dir={jetnet_dir(tmp_path)}", "evaluator.plots=false")
    cfg.model._target_ = "tests.test_bad_input.ConstantScore"
    report = run(cfg, tmp_path / "run")
    assert report.signals["top"].auc == 0.5
    expected = "score 'reconstruction_mse' is the same (0) for every event: the detector separates nothing"
    assert any(expected in warning for warning in report.warnings), report.warnings


def test_the_checks_every_dataset_needs_apply_to_any_dataset_and_stop_together():
    from hepad_cli.data.dataset import Dataset, DatasetContent, EventSample
    from hepad_cli.data.samples import EVENT_WEIGHT, DataError

    class LabelledBlobs(Dataset):
        def read(self) -> DatasetContent:
            x = np.random.default_rng(0).normal(size=(50, 4))
            x[[3, 9]] = 0.0
            weights = np.ones(50)
            weights[[4, 5]] = [-1.0, np.nan]
            labels = np.r_[np.ones(40), np.zeros(10)]
            labels[7] = 2
            return DatasetContent(EventSample(x, {EVENT_WEIGHT: weights}), {}, [], labels=labels)

    dataset = LabelledBlobs(split={"train": 0.6, "val": 0.2, "test": 0.2}, seed=1, scaling=None)
    with pytest.raises(DataError) as error:
        dataset.load()
    message = str(error.value)
    assert "background: 2 of 50 events have all-zero inputs" in message and "(rows 3, 9)" in message
    assert "background: 2 of 50 events have a negative or non-finite 'weight' (rows 4, 5)" in message
    assert (
        "background labels: 1 of 50 events have a label other than 1 (good) or 0 (anomalous) (rows 7)"
        in message
    )


def test_hls4ml_labels_must_be_one_hot_and_masses_not_negative(tmp_path):
    from hepad_cli.data.hls4ml import H5_LABEL_COLUMNS, MASS_INDEX, write_hls4ml_h5
    from hepad_cli.data.samples import DataError
    from tests.data.test_hls4ml import toy_jet_features, toy_labels

    rng = np.random.default_rng(5)
    labels = toy_labels(rng)
    features = toy_jet_features(labels, rng)
    path = tmp_path / "val" / "jets.h5"
    path.parent.mkdir()
    h5 = {"files": ["val/*.h5"], "archive": None}
    write_hls4ml_h5(path, features, labels)
    with h5py.File(path, "r+") as f:  # jet 3 is both a W and a Z
        f["jets"][3, H5_LABEL_COLUMNS["w"]] = 1.0
        f["jets"][3, H5_LABEL_COLUMNS["z"]] = 1.0
    with pytest.raises(DataError, match=r"1 of 390 jets do not have exactly one of the labels .* \(rows 3\)"):
        build_dataset("hls4ml", tmp_path, source="h5", download=False, h5=h5).load()
    features[np.flatnonzero(labels == "g")[:2], MASS_INDEX] = -5.0
    write_hls4ml_h5(path, features, labels)
    with pytest.raises(DataError, match="background: 2 of 240 jets have a negative mass_mmdt"):
        build_dataset("hls4ml", tmp_path, source="h5", download=False, h5=h5).load()


def test_a_directory_in_use_by_a_live_run_is_refused_and_left_alone(tmp_path, pythia_data_dir):
    run_dir = tmp_path / "busy"
    run_dir.mkdir()
    # This test's own process plays the live run: same host, a pid that runs, its real start time.
    status = {"status": "running", "run_id": "0123456789ab", "updated": "now", **process_identity()}
    (run_dir / "status.json").write_text(json.dumps(status))
    result = run_cli(*pythia()(tmp_path, pythia_data_dir), f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 1
    assert "is in use by a hepad run that is still working" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr and "Traceback" not in result.stderr
    assert f"nothing was recorded: {run_dir / 'status.json'} belongs to another run" in result.stderr
    assert json.loads((run_dir / "status.json").read_text()) == status
    assert not (run_dir / "auc.json").exists()


# --- caches and conversions damaged in place ---


def test_a_damaged_cached_sample_is_generated_again_never_read(tmp_path, pythia_data_dir):
    from hepad_cli.data.toptagging_format import iter_chunks

    data_dir = tmp_path / "data"
    shutil.copytree(pythia_data_dir, data_dir)
    (qcd,) = (data_dir / "pythia").glob("qcd_*.h5")
    size = qcd.stat().st_size
    with open(qcd, "r+b") as handle:  # zero 64 kB inside the table, as a bad disk sector would
        handle.seek(size // 2)
        handle.write(b"\0" * 65536)
    result = run_cli(*pythia("model=pca", "evaluator.plots=false")(tmp_path, data_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    log = next(tmp_path.glob("outputs/*/*/hepad.log")).read_text()
    assert f"cached sample {qcd} does not match its recorded checksum" in log
    assert "generating 240 qcd jets" in log
    # The file was generated again from its settings: the very jets of the undamaged cache.
    original = pythia_data_dir / "pythia" / qcd.name
    for fresh, kept in zip(iter_chunks(qcd), iter_chunks(original), strict=True):
        np.testing.assert_array_equal(fresh.constituents, kept.constituents)
    report = json.loads(next(tmp_path.glob("outputs/*/*/auc.json")).read_text())
    assert report["data_verified"] is True


def test_a_damaged_converted_cms_file_is_refused_then_converted_again_when_trusted(tmp_path):
    from tests.data.test_cms_dqm import write_cms_dqm_files

    directory = tmp_path / "cms_dqm"
    write_cms_dqm_files(directory, n=300)
    first = build_dataset("cms_dqm", directory, trust_pickle=True).load()
    converted = directory / "cms_dqm.h5"
    data = bytearray(converted.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 512] = bytes(512)
    converted.write_bytes(bytes(data))
    with pytest.raises(Exception, match=r"does not match its recorded checksum.*data\.trust_pickle=true"):
        build_dataset("cms_dqm", directory).load()
    again = build_dataset("cms_dqm", directory, trust_pickle=True).load()
    np.testing.assert_array_equal(first.background_train, again.background_train)


# --- a rerun in the directory of a complete run ---


def test_a_rerun_moves_the_earlier_run_aside_and_a_failed_rerun_leaves_no_result(tmp_path, pythia_data_dir):
    from hepad_cli.runs import FinishedRun, RunDirectoryError

    run_dir = tmp_path / "fixed"
    common = [
        *pythia("model=pca", "evaluator.plots=false")(tmp_path, pythia_data_dir),
        f"hydra.run.dir={run_dir}",
    ]
    assert run_cli(*common, "seed=1", cwd=tmp_path).returncode == 0
    first = json.loads((run_dir / "auc.json").read_text())

    second = run_cli(*common, "seed=2", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    report = json.loads((run_dir / "auc.json").read_text())
    status = json.loads((run_dir / "status.json").read_text())
    info = json.loads((run_dir / "run_info.json").read_text())
    assert report["run_id"] == status["run_id"] == info["run_id"] != first["run_id"]
    assert info["config"]["seed"] == 2
    earlier = run_dir / "earlier_runs" / first["run_id"]
    assert json.loads((earlier / "auc.json").read_text()) == first
    assert json.loads((earlier / "run_info.json").read_text())["config"]["seed"] == 1
    assert "held an earlier run (status complete)" in (run_dir / "hepad.log").read_text()
    assert FinishedRun.open(run_dir).report.run_id == status["run_id"]
    # The earlier run's report put back beside the new record: reopening the run refuses it.
    current = (run_dir / "auc.json").read_bytes()
    (run_dir / "auc.json").write_bytes((earlier / "auc.json").read_bytes())
    with pytest.raises(RunDirectoryError, match="the record does not match"):
        FinishedRun.open(run_dir)
    (run_dir / "auc.json").write_bytes(current)

    # A rerun that fails leaves a directory that says failed and shows no numbers at all.
    third = run_cli(*common, "seed=3", "model.latent_dim=1000", cwd=tmp_path)
    assert third.returncode == 1
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    assert not (run_dir / "auc.json").exists() and not (run_dir / "scores.h5").exists()
    assert not (run_dir / "model").exists()
    with pytest.raises(RunDirectoryError, match="has status 'failed', not 'complete'"):
        FinishedRun.open(run_dir)


# --- compressed Top Tagging tables ---


def available_complibs() -> list[str]:
    """Every compressor this machine's PyTables can write (and so a user's pandas can)."""
    import tables

    return [lib for lib in tables.filters.all_complibs if tables.which_lib_version(lib.split(":")[0])]


def test_every_available_compressor_is_offered():
    # blosc (its variants), blosc2 and bzip2 are what pandas users pick; none is readable by plain h5py.
    assert {"zlib", "bzip2", "blosc", "blosc:lz4", "blosc2:zstd"} <= set(available_complibs())


@pytest.mark.parametrize("complib", available_complibs())
def test_compressed_tables_are_read_like_uncompressed_ones(complib, tmp_path):
    import pandas as pd

    from hepad_cli.data.toptagging_format import TABLE_PATH

    plain = jetnet_dir(tmp_path / "plain") / "val.h5"
    packed = tmp_path / "packed" / "val.h5"
    packed.parent.mkdir()
    pd.read_hdf(plain, "table").to_hdf(packed, key="table", format="table", complib=complib, complevel=5)
    with h5py.File(packed) as f:  # the table really is compressed with that filter
        plist = f[TABLE_PATH].id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    assert set(filters) - {2}, filters  # more than the shuffle filter
    settings = {"download": False, "checksum": None, "max_jets": 50, "chunk_size": 7}
    expected = build_dataset("jetnet", plain.parent, **settings).load()
    got = build_dataset("jetnet", packed.parent, **settings).load()
    np.testing.assert_array_equal(got.background_train, expected.background_train)
    np.testing.assert_array_equal(got.signals["top"], expected.signals["top"])


def test_a_filter_no_library_here_can_decode_is_named(tmp_path):
    from hepad_cli.data.toptagging_format import LayoutError

    dtype = np.dtype(
        [("index", "<i8"), ("values_block_0", "<f8", (N_FLOAT_COLUMNS,)), ("values_block_1", "<i8", (2,))]
    )
    path = tmp_path / "val.h5"
    with h5py.File(path, "w") as f:  # declares LZO (filter 305), as PyTables built with LZO writes it
        table = f.create_dataset(
            "table/table", shape=(10,), dtype=dtype, chunks=(5,), compression=305, allow_unknown_filter=True
        )
        for start in (0, 5):
            table.id.write_direct_chunk((start,), np.zeros(5, dtype).tobytes())
    with pytest.raises(LayoutError, match=r"compressed with the HDF5 filter 'lzo' \(id 305\), which neither"):
        build_dataset("jetnet", tmp_path, download=False, checksum=None).load()


# --- hepad-summary on damaged reports ---

DAMAGED_REPORTS = {
    "truncated": lambda text: text[: len(text) // 2],
    "not an object": lambda text: "[1, 2, 3]",
    "auc as text": lambda text: text.replace('"auc": 0', '"auc": "high", "x": 0', 1),
    "auc above one": lambda text: re.sub(r'"auc": [0-9.e-]+', '"auc": 7.5', text, count=1),
    "no signals": lambda text: re.sub(r'"signals": \{', '"signals": {}, "unused": {', text, count=1),
}


def test_hepad_summary_names_every_damaged_report_without_a_traceback(tmp_path, pythia_data_dir):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        *pythia("model=pca", "evaluator.plots=false")(tmp_path, pythia_data_dir),
        "model.latent_dim=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for i, damage in enumerate(DAMAGED_REPORTS.values(), start=1):
        shutil.copytree(sweep / "job0", sweep / f"job{i}")
        report = sweep / f"job{i}" / "auc.json"
        report.write_text(damage(report.read_text()))
    unreadable = sweep / f"job{len(DAMAGED_REPORTS) + 1}"
    shutil.copytree(sweep / "job0", unreadable)
    (unreadable / "status.json").write_text('["complete"]')
    summary = subprocess.run(
        [str(Path(sys.executable).with_name("hepad-summary")), str(sweep)], capture_output=True, text=True
    )
    assert summary.returncode == 1 and "Traceback" not in summary.stderr, summary.stderr
    rows = {line.split("`")[1]: line for line in summary.stdout.splitlines() if line.startswith("- `job")}
    assert sorted(rows) == sorted(f"job{i}" for i in range(1, len(DAMAGED_REPORTS) + 2))
    for i in range(1, len(DAMAGED_REPORTS) + 1):
        assert "(failed)" in rows[f"job{i}"] and "status says complete but" in rows[f"job{i}"]
        assert str(sweep / f"job{i}" / "auc.json") in rows[f"job{i}"]
    assert "(unknown)" in rows[unreadable.name]
    assert f"{unreadable / 'status.json'} is missing or unreadable" in rows[unreadable.name]
    assert "| job0 | complete |" in summary.stdout


# --- the README promises what these tests check ---


def readme_table_messages(heading: str) -> list[str]:
    """The first `quoted` text of the second column of each row of the README table under ``heading``."""
    lines = (REPO / "README.md").read_text().split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    messages = []
    for line in lines[start + 2 :]:  # after the header and its separator
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line)  # a pipe inside a cell is escaped: \|
        quoted = re.findall(r"`([^`]+)`", cells[2])
        assert quoted, f"README row without a quoted message: {line}"
        messages.append(quoted[0].replace("\\|", "|"))
    return messages


@pytest.mark.parametrize("heading", ["### Troubleshooting", "### Data checks"])
def test_every_readme_row_has_a_test(heading):
    sources = "".join(path.read_text() for path in (REPO / "tests").rglob("test_*.py"))
    messages = readme_table_messages(heading)
    assert len(messages) >= 15
    for message in messages:
        parts = [part.strip(" .,") for part in message.split("…") if part.strip(" .,")]
        assert all(part in sources for part in parts), f"README row {message!r} has no test"
