"""Bad input: one row per case. Each must exit non-zero, say what is wrong and how to fix it, and write
nothing that looks like a result. The README's troubleshooting table lists the same rows."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from hepad_cli.data.toptagging_format import write_toptagging_h5
from tests.conftest import TINY_PYTHIA, run_cli, toy_jets

JETNET = ["data=jetnet", "data.download=false", "data.checksum=null", "model=pca", "evaluator.n_bootstrap=0"]


def jetnet_dir(tmp_path: Path, n_qcd: int = 60, n_top: int = 20, nan: bool = False) -> Path:
    rng = np.random.default_rng(4)
    jets = np.concatenate([toy_jets(n_qcd, 1, rng), toy_jets(n_top, 3, rng)])
    if nan:
        jets[5, 0, 1] = np.nan
    directory = tmp_path / "toptagging"
    directory.mkdir(parents=True, exist_ok=True)
    write_toptagging_h5(directory / "val.h5", jets, np.r_[np.zeros(n_qcd), np.ones(n_top)])
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


def adc_identical_signal(tmp_path: Path, _data: Path) -> list[str]:
    from tests.data.test_adc2021 import SIGNAL_NAMES, write_adc_files

    directory = tmp_path / "adc"
    files = write_adc_files(directory, n_background=400, n_signal=50)
    shutil.copyfile(files["background"][0], files["Ato4l"][0])
    others = [f"~data.signals.{name}" for name in SIGNAL_NAMES if name != "Ato4l"]
    return [
        "data=adc2021",
        f"data.data_dir={directory}",
        "data.download=false",
        "data.background.checksum=null",
        "data.signals.Ato4l.checksum=null",
        *others,
        "model=pca",
        "evaluator.n_bootstrap=0",
    ]


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
    return lambda tmp_path, data: [*TINY_PYTHIA, f"paths.data_dir={data}", *overrides]


def jetnet_toy(*overrides: str, **file_options) -> Callable[[Path, Path], list[str]]:
    return lambda tmp_path, _data: [
        *JETNET,
        f"data.data_dir={jetnet_dir(tmp_path, **file_options)}",
        *overrides,
    ]


# (case, setup returning the overrides, what stderr must say)
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
    ("file truncated", jetnet_with(truncated), "truncated"),
    ("file is not HDF5", jetnet_with(not_hdf5), "is not a readable HDF5 file"),
    ("HDF5 with the wrong keys", jetnet_with(wrong_keys), "has no dataset '/table/table'"),
    ("HDF5 with the wrong shapes", jetnet_with(wrong_shape), "should hold 804 columns, found (10,)"),
    (
        "checksum mismatch",
        jetnet_toy("data.checksum=md5:00000000000000000000000000000000"),
        "does not match its expected checksum",
    ),
    ("empty signal sample", jetnet_toy(n_top=0), "signal 'top' is empty"),
    ("background too small to split", jetnet_toy(n_qcd=4), "too small to split"),
    ("NaN in the inputs", jetnet_toy(nan=True), "hold NaN or infinite momenta"),
    ("NaN loss in training", adc_nan_loss, "the training loss became NaN or infinite"),
]


@pytest.mark.parametrize(("case", "setup", "message"), ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_fails_clearly_and_writes_no_result(case, setup, message, tmp_path, pythia_data_dir):
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_cli(*setup(tmp_path, pythia_data_dir), cwd=workdir, timeout=300)
    assert result.returncode != 0, result.stderr[-2000:]
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not list(workdir.glob("outputs/**/auc.json"))
    assert not list(workdir.glob("outputs/**/scores.h5"))
    for status in workdir.glob("outputs/**/status.json"):
        assert json.loads(status.read_text())["status"] == "failed"


def test_signal_file_identical_to_the_background_warns(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_cli(*adc_identical_signal(tmp_path, tmp_path), cwd=workdir, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "byte-identical to the background" in result.stderr
    report = json.loads(next(workdir.glob("outputs/**/auc.json")).read_text())
    assert any("byte-identical" in warning for warning in report["warnings"])
    assert report["signals"]["Ato4l"]["auc"] < 0.65
