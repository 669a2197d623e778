"""End to end: the installed console script on tiny generated data, checked by the files it writes."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import FAST_TRAINER, PHYSICS_PYTHIA, TINY_PYTHIA, run_cli

CONTRACT = [
    "auc.json",
    "loss_hist.png",
    "roc.png",
    "scores.h5",
    "status.json",
    "run_info.json",
    "hepad.log",
    ".hydra/config.yaml",
    ".hydra/overrides.yaml",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def only_run_dir(root: Path) -> Path:
    runs = [p.parent for p in root.glob("outputs/*/*/auc.json")]
    assert len(runs) == 1, runs
    return runs[0]


def test_default_conv_ae_run_writes_the_whole_output_contract(tmp_path, pythia_data_dir):
    result = run_cli(*TINY_PYTHIA, *FAST_TRAINER, f"paths.data_dir={pythia_data_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    for name in [*CONTRACT, "history.png", "latent.png", "reconstructions.png", "model/model.keras"]:
        assert (run_dir / name).is_file(), name
    for png in run_dir.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC
    report = json.loads((run_dir / "auc.json").read_text())
    assert set(report["signals"]) == {"top", "w", "z"}
    for entry in report["signals"].values():
        assert 0.0 <= entry["auc"] <= 1.0
        low, high = entry["auc_interval_95"]
        assert low <= entry["auc"] <= high
        assert set(entry["tpr_at_fpr"]) == {"1e-01", "1e-02", "1e-03", "1e-04", "1e-05"}
        # An FPR is reported only where >= 10 background test jets pass the threshold; never extrapolated.
        for fpr, tpr in entry["tpr_at_fpr"].items():
            resolved = int(float(fpr) * entry["n_background"]) >= 10
            assert (tpr is not None) == resolved, (fpr, entry["n_background"])
    assert report["data_verified"] is True
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["versions"]["tensorflow-cpu"] and info["versions"]["pythia8mc"] == "8.317.2"
    assert len(info["data"]) == 4 and all(len(entry["md5"]) == 32 for entry in info["data"])
    with h5py.File(run_dir / "scores.h5") as f:
        names = list(f.attrs["origin_names"])
        assert names == ["background", "top", "w", "z"]
        counts = np.bincount(f["origin"][:], minlength=4)
        assert counts.tolist() == [report["events"]["background_test"]] + [60, 60, 60]
        assert f["score"].shape == f["mass"].shape == f["origin"].shape
    assert "AUC" in result.stderr and str(run_dir.name) in result.stderr


@pytest.mark.slow
def test_default_conv_ae_separates_top_jets_and_reports_what_its_scores_give(tmp_path, physics_data_dir):
    """The default detector must find top jets in QCD, and auc.json must say exactly what scores.h5 gives."""
    from sklearn.metrics import roc_auc_score

    result = run_cli(
        *PHYSICS_PYTHIA,
        f"paths.data_dir={physics_data_dir}",
        "trainer.epochs=40",
        "trainer.batch_size=32",
        "trainer.progress_bar=false",
        "evaluator.n_bootstrap=40",
        "evaluator.plots=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    top = json.loads((run_dir / "auc.json").read_text())["signals"]["top"]
    assert top["auc"] > 0.75 and top["auc_interval_95"][0] > 0.7, top  # 0.855 when measured
    with h5py.File(run_dir / "scores.h5") as f:
        score, origin = f["score"][:], f["origin"][:]
    background, signal = score[origin == 0], score[origin == 1]
    assert len(background) == top["n_background"] == 180 and len(signal) == top["n_signal"] == 300
    labels = np.r_[np.zeros(len(background)), np.ones(len(signal))]
    assert top["auc"] == pytest.approx(roc_auc_score(labels, np.r_[background, signal]), abs=1e-12)
    # 18 of 180 background jets lie above the threshold at FPR 0.1: resolved, and well above random.
    threshold = np.sort(background)[::-1][18]
    assert top["tpr_at_fpr"]["1e-01"] == pytest.approx(np.mean(signal > threshold), abs=1e-12)
    assert top["tpr_at_fpr"]["1e-01"] > 0.3
    assert all(top["tpr_at_fpr"][fpr] is None for fpr in ("1e-02", "1e-03", "1e-04", "1e-05"))


def test_pca_run_has_no_history_but_a_latent_space(tmp_path, pythia_data_dir):
    result = run_cli(
        "model=pca",
        *TINY_PYTHIA,
        "evaluator.n_bootstrap=0",
        f"paths.data_dir={pythia_data_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    assert (run_dir / "latent.png").is_file() and (run_dir / "model/pca.npz").is_file()
    assert not (run_dir / "history.png").exists()


def test_plain_multirun_over_latent_dim_gives_one_directory_per_job(tmp_path, pythia_data_dir):
    result = run_cli(
        "-m",
        "model=pca",
        "model.latent_dim=2,4",
        *TINY_PYTHIA,
        "evaluator.n_bootstrap=0",
        "evaluator.plots=false",
        f"paths.data_dir={pythia_data_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = sorted(tmp_path.glob("outputs/multirun/*/*/job*/auc.json"))
    assert len(reports) == 2
    dims = sorted(
        json.loads((r.parent / "run_info.json").read_text())["config"]["model"]["latent_dim"] for r in reports
    )
    assert dims == [2, 4]


def test_two_runs_in_the_same_second_get_different_directories(tmp_path, pythia_data_dir):
    import subprocess

    from tests.conftest import HEPAD_RUN

    args = [
        str(HEPAD_RUN),
        "model=pca",
        *TINY_PYTHIA,
        "evaluator.n_bootstrap=0",
        "evaluator.plots=false",
        f"paths.data_dir={pythia_data_dir}",
    ]
    first = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0
    assert len(list(tmp_path.glob("outputs/*/*/auc.json"))) == 2


def test_bad_value_fails_cleanly_and_marks_the_run_failed(tmp_path, pythia_data_dir):
    result = run_cli("trainer.epochs=ten", *TINY_PYTHIA, f"paths.data_dir={pythia_data_dir}", cwd=tmp_path)
    assert result.returncode == 1
    assert "trainer.epochs must be a positive integer, got 'ten'" in result.stderr
    assert "Traceback" not in result.stderr
    status = json.loads(next(tmp_path.glob("outputs/*/*/status.json")).read_text())
    assert status["status"] == "failed"
    assert not list(tmp_path.glob("outputs/*/*/auc.json"))
