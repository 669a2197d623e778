"""End to end: every zoo detector on every representation it claims, through the installed console script.

Representations: jet features (hls4ml, from an OpenML cache in scikit-learn's layout), flat particles
(ADC2021 files in the published layout) and jet images (a Top Tagging-layout file). One multirun per
representation runs all five detectors; each job must write the whole output contract.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import run_cli
from tests.data.test_adc2021 import SIGNAL_NAMES, write_adc_files
from tests.data.test_hls4ml import toy_jet_features, toy_labels, write_openml_cache
from tests.test_cli import CONTRACT, PNG_MAGIC

MODELS = ("vae", "dense_ae", "iforest", "ocsvm", "gmm")
FAST = ["trainer.epochs=3", "trainer.batch_size=64", "trainer.progress_bar=false", "evaluator.n_bootstrap=0"]
MODEL_FILES = {
    "vae": ["encoder.keras", "decoder.keras"],
    "dense_ae": ["model.keras"],
    "iforest": ["estimator.skops"],
    "ocsvm": ["estimator.skops"],
    "gmm": ["estimator.skops"],
}
TRAINED = {"vae", "dense_ae"}


def hls4ml_overrides(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(21)
    labels = toy_labels(rng, 150, 150, 60)
    write_openml_cache(tmp_path / "hls4ml", toy_jet_features(labels, rng), labels)
    return ["data=hls4ml", f"data.data_dir={tmp_path / 'hls4ml'}", "data.download=false"]


def adc2021_overrides(tmp_path: Path, **sizes) -> list[str]:
    files = write_adc_files(tmp_path / "adc2021", **sizes)
    pins = [f"data.background.checksum=md5:{_md5(files['background'][0])}"]
    pins += [f"data.signals.{name}.checksum=md5:{_md5(files[name][0])}" for name in SIGNAL_NAMES]
    return ["data=adc2021", f"data.data_dir={tmp_path / 'adc2021'}", "data.download=false", *pins]


def jetnet_overrides(toptagging_file: Path) -> list[str]:
    return [
        "data=jetnet",
        f"data.data_dir={toptagging_file.parent}",
        "data.checksum=null",
        "data.download=false",
    ]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def job_dirs(root: Path) -> dict[str, Path]:
    """{model name: run directory} of a multirun under ``root``."""
    jobs = {}
    for auc in root.glob("outputs/multirun/*/*/*/auc.json"):
        config = json.loads((auc.parent / "run_info.json").read_text())["config"]
        name = next(m for m in MODELS if config["model"]["_target_"].endswith(_TARGETS[m]))
        jobs[name] = auc.parent
    return jobs


_TARGETS = {
    "vae": "VariationalAutoencoder",
    "dense_ae": "DenseAutoencoder",
    "iforest": "IsolationForestDetector",
    "ocsvm": "OneClassSVMDetector",
    "gmm": "GaussianMixtureDetector",
}


def check_contract(run_dir: Path, model: str, representation: str, signals: set[str]) -> dict:
    """The output contract of one run; returns its auc.json."""
    for name in CONTRACT:
        assert (run_dir / name).is_file(), (model, name)
    for name in MODEL_FILES[model] + ["params.json"]:
        assert (run_dir / "model" / name).is_file(), (model, name)
    assert not list((run_dir / "model").glob("*.pkl")) and not list((run_dir / "model").glob("*.joblib"))
    if model in TRAINED:
        assert (run_dir / "history.png").is_file() and (run_dir / "latent.png").is_file(), model
        if representation == "images":
            assert (run_dir / "reconstructions.png").is_file(), model
    else:
        assert not (run_dir / "history.png").exists(), model
    for png in run_dir.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"
    report = json.loads((run_dir / "auc.json").read_text())
    assert set(report["signals"]) == signals
    for entry in report["signals"].values():
        assert 0.0 <= entry["auc"] <= 1.0
    latency = report["inference_seconds_per_event"]
    assert latency["batch_of_one"]["seconds_per_event"] > 0 and latency["batch_of_one"]["repeats"] >= 1
    assert latency["bulk"]["seconds_per_event"] > 0 and latency["bulk"]["batch_size"] >= 1
    with h5py.File(run_dir / "scores.h5") as f:
        assert f["score"].shape == f["origin"].shape
        assert list(f.attrs["origin_names"]) == ["background", *report["signals"]]
    if model == "vae":
        assert list(report["scores_by_name"]) == ["vae_reconstruction", "vae_kl", "vae_total"]
        assert report["scores_by_name"]["vae_reconstruction"] == report["signals"]
        assert (run_dir / "loss_hist_vae_kl.png").is_file() and (
            run_dir / "loss_hist_vae_total.png"
        ).is_file()
        with h5py.File(run_dir / "scores.h5") as f:
            assert f["score_vae_kl"].shape == f["score"].shape
    else:
        assert "scores_by_name" not in report
    return report


@pytest.mark.slow
@pytest.mark.parametrize("representation", ["features", "flat particles", "images"])
def test_every_detector_runs_end_to_end_on_each_representation(representation, tmp_path, request):
    if representation == "features":
        data, signals = hls4ml_overrides(tmp_path), {"w", "z", "top"}
    elif representation == "flat particles":
        data, signals = adc2021_overrides(tmp_path, n_background=400, n_signal=80), set(SIGNAL_NAMES)
        data.append("data.scaling=standard")
    else:
        data, signals = jetnet_overrides(request.getfixturevalue("toptagging_file")), {"top"}
    result = run_cli("-m", f"model={','.join(MODELS)}", *data, *FAST, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = job_dirs(tmp_path)
    assert set(jobs) == set(MODELS), sorted(jobs)
    aucs = {}
    for model, run_dir in jobs.items():
        report = check_contract(run_dir, model, representation, signals)
        aucs[model] = {name: round(entry["auc"], 3) for name, entry in report["signals"].items()}
    if representation == "features":
        # The toy W/Z/top jets are clearly different from q/g: every detector must see it.
        for per_signal in aucs.values():
            assert min(per_signal.values()) > 0.7, aucs
    print(f"\n{representation}: {aucs}")


@pytest.mark.slow
def test_hls4ml_vae_experiment_reproduces_the_notebook_setup(tmp_path):
    result = run_cli(
        "experiment=hls4ml_vae",
        *hls4ml_overrides(tmp_path),
        "trainer.epochs=4",
        "trainer.progress_bar=false",
        "evaluator.n_bootstrap=0",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    run_dir = next(tmp_path.glob("outputs/*/*/auc.json")).parent
    config = json.loads((run_dir / "run_info.json").read_text())["config"]
    assert config["model"]["hidden"] == [10] and config["model"]["latent_dim"] == 5
    assert config["trainer"]["batch_size"] == 128 and config["trainer"]["early_stopping_patience"] == 10
    assert config["data"]["split"] == {"train": 0.64, "val": 0.16, "test": 0.2}
    report = check_contract(run_dir, "vae", "features", {"w", "z", "top"})
    assert report["data_verified"] is True
    assert "hepad-run: " in result.stderr and "AUC" in result.stderr


@pytest.mark.slow
def test_adc2021_dense_ae_experiment_subsamples_the_background(tmp_path):
    result = run_cli(
        "experiment=adc2021_dense_ae",
        *adc2021_overrides(tmp_path, n_background=600, n_signal=50),
        "data.max_events=300",
        "trainer.epochs=3",
        "trainer.batch_size=64",
        "trainer.progress_bar=false",
        "evaluator.n_bootstrap=0",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    run_dir = next(tmp_path.glob("outputs/*/*/auc.json")).parent
    report = check_contract(run_dir, "dense_ae", "flat particles", set(SIGNAL_NAMES))
    events = report["events"]
    assert events["background_train"] + events["background_val"] + events["background_test"] == 300
    assert report["data_verified"] is True
    info = json.loads((run_dir / "run_info.json").read_text())
    background = next(entry for entry in info["data"] if entry["sample"] == "background")
    assert background["rows_read"] == 300 and background["events_in_file"] == 600
    # TPR down to FPR 1e-5 is reported (null where 60 background test events cannot resolve it).
    assert set(report["signals"]["Ato4l"]["tpr_at_fpr"]) == {"1e-01", "1e-02", "1e-03", "1e-04", "1e-05"}
    assert report["signals"]["Ato4l"]["tpr_at_fpr"]["1e-05"] is None


def test_latent_dim_larger_than_the_features_fails_cleanly(tmp_path):
    result = run_cli(
        "model=vae", "model.latent_dim=40", *hls4ml_overrides(tmp_path), *FAST, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 1
    assert "model.latent_dim=40 is larger than the input (16 features)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("outputs/*/*/auc.json"))


def test_missing_adc2021_files_with_download_off_fail_cleanly(tmp_path):
    result = run_cli(
        "data=adc2021",
        "model=iforest",
        f"data.data_dir={tmp_path / 'empty'}",
        "data.download=false",
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 1
    assert "background_for_training.h5 is missing and downloading is disabled" in result.stderr
    assert "data.download=true" in result.stderr and "Traceback" not in result.stderr
