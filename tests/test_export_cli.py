"""hepad-export end to end: real hepad-run runs on ADC2021-layout files, exported through the console script.

The runs: the trigger notebook's dense AE (experiment=adc2021_dense_ae) and an isolation forest, trained
once per module on toy events in the published file layout. Every export must leave the run's own files
as they were and write only into <run_dir>/export/<date>_<time>_<tag>/.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.data.test_adc2021 import SIGNAL_NAMES
from tests.test_cli import PNG_MAGIC
from tests.test_zoo_cli import adc2021_overrides

HEPAD_EXPORT = Path(sys.executable).with_name("hepad-export")
FAST = ["trainer.epochs=3", "trainer.batch_size=64", "trainer.progress_bar=false", "evaluator.n_bootstrap=0"]


def run_export(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """The installed hepad-export, called as a shell passes the arguments (no quoting for Hydra)."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [str(HEPAD_EXPORT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment
    )


def only_run(root: Path, model_target: str) -> Path:
    runs = [
        p.parent
        for p in root.glob("outputs/*/*/auc.json")
        if json.loads((p.parent / "run_info.json").read_text())["config"]["model"]["_target_"].endswith(
            model_target
        )
    ]
    assert len(runs) == 1, runs
    return runs[0]


def file_digests(run_dir: Path) -> dict[str, str]:
    """md5 of every file of the run itself (its export/ folder aside)."""
    return {
        str(path.relative_to(run_dir)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and path.relative_to(run_dir).parts[0] != "export"
    }


def only_export(run_dir: Path) -> Path:
    exports = [p for p in (run_dir / "export").iterdir()]
    assert len(exports) == 1, exports
    return exports[0]


def relative_data_dir(overrides: list[str]) -> list[str]:
    """The data directory as a path relative to where hepad-run runs (exports run from elsewhere)."""
    return [
        "data.data_dir=adc2021" if option.startswith("data.data_dir=") else option for option in overrides
    ]


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory) -> dict[str, Path]:
    """{"dense_ae": run dir, "iforest": run dir} trained on the same toy ADC2021 files."""
    root = tmp_path_factory.mktemp("export-runs")
    data = relative_data_dir(adc2021_overrides(root, n_background=1500, n_signal=150))
    dense = run_cli("experiment=adc2021_dense_ae", *data, "data.max_events=1500", *FAST, cwd=root)
    assert dense.returncode == 0, dense.stderr[-3000:]
    forest = run_cli("model=iforest", "model.n_estimators=10", *data, "evaluator.n_bootstrap=0", cwd=root)
    assert forest.returncode == 0, forest.stderr[-3000:]
    return {
        "dense_ae": only_run(root, "DenseAutoencoder"),
        "iforest": only_run(root, "IsolationForestDetector"),
    }


@pytest.fixture
def dense_run(finished_runs, tmp_path) -> Path:
    """A copy of the dense AE run per test, so that each test sees only its own export."""
    copy = tmp_path / "run"
    shutil.copytree(finished_runs["dense_ae"], copy)
    return copy


@pytest.mark.slow
def test_hls4ml_scan_with_emulation_writes_projects_and_the_auc_table(dense_run, tmp_path):
    before = file_digests(dense_run)
    result = run_export(
        f"run_dir={dense_run}",
        "format=hls4ml",
        "scan=[ap_fixed<6,3>,ap_fixed<32,16>]",
        "emulate=true",
        "trigger_fpr=0.1",
        "progress_bar=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert file_digests(dense_run) == before
    export_dir = only_export(dense_run)
    report = json.loads((export_dir / "export.json").read_text())
    assert json.loads((export_dir / "status.json").read_text())["status"] == "complete"
    assert list(report["precisions"]) == ["ap_fixed<6,3>", "ap_fixed<32,16>"]
    run_auc = json.loads((dense_run / "auc.json").read_text())["signals"]
    for precision, entry in report["precisions"].items():
        project = export_dir / entry["project"]
        assert (project / "firmware" / "anomaly_detector.cpp").is_file(), precision
        assert (project / "build_prj.tcl").is_file() and not list(project.rglob("*.so"))
        comparison = entry["comparison"]
        assert set(comparison["signals"]) == set(SIGNAL_NAMES)
        for name, signal in comparison["signals"].items():
            # The reloaded samples are the run's own: the float AUC is the one hepad-run reported.
            assert signal["auc_float"] == pytest.approx(run_auc[name]["auc"], abs=1e-12), name
            assert set(signal["tpr_at_fpr_fixed"]) == {"1e-01", "1e-02", "1e-03", "1e-04", "1e-05"}
            assert signal["n_background"] == report["events"]["background"] == 300
        assert comparison["trigger"]["fpr"] == 0.1
        assert 0.0 <= comparison["trigger"]["background_flip_share"] <= 1.0
        assert entry["compile_seconds"] > 0 and entry["emulation_seconds_per_event"] > 0
    wide = report["precisions"]["ap_fixed<32,16>"]["comparison"]
    narrow = report["precisions"]["ap_fixed<6,3>"]["comparison"]
    # 16 fractional bits: weights truncated by < 2⁻¹⁶ times raw momenta of hundreds of GeV.
    assert wide["max_relative_score_difference"] < 1e-2
    assert all(abs(s["auc_change"]) < 1e-3 for s in wide["signals"].values())
    assert narrow["max_relative_score_difference"] > 0.1
    assert narrow["max_abs_score_difference"] > 100 * wide["max_abs_score_difference"]
    # Raw ADC2021 momenta of hundreds of GeV do not fit ap_fixed<6,3>: the export says so and how to fix it.
    assert report["precisions"]["ap_fixed<6,3>"]["value_ranges"]["event"]["share_outside"] > 0
    assert any("input_precision=" in w for w in report["precisions"]["ap_fixed<6,3>"]["warnings"])
    assert report["resources_and_latency"]["estimated"] is False
    assert "vendor tools" in report["resources_and_latency"]["reason"]
    assert (export_dir / "export_auc_vs_precision.png").read_bytes()[:8] == PNG_MAGIC
    assert "ap_fixed<32,16>: Ato4l AUC" in result.stderr and str(export_dir.name) in result.stderr


@pytest.mark.slow
def test_numpy_format_reproduces_the_keras_scores(dense_run, tmp_path):
    from hepad_cli.export import DenseScorer
    from hepad_cli.runs import FinishedRun

    result = run_export(f"run_dir={dense_run}", "format=numpy", "emulate=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    export_dir = only_export(dense_run)
    report = json.loads((export_dir / "export.json").read_text())
    scorer = DenseScorer.load(export_dir / report["scorer"])
    run = FinishedRun.open(dense_run)
    samples = run.load_samples()
    for x in (samples.background_test, *samples.signals.values()):
        np.testing.assert_allclose(scorer.score(x), run.detector.score(x), rtol=1e-5)
    for entry in report["comparison"]["signals"].values():
        assert entry["auc_numpy"] == pytest.approx(entry["auc_float"], abs=1e-12)
    assert report["comparison"]["max_relative_score_difference"] < 1e-5


@pytest.mark.slow
def test_export_of_an_unsupported_detector_is_refused_and_leaves_nothing(finished_runs, tmp_path):
    run_dir = finished_runs["iforest"]
    result = run_export(f"run_dir={run_dir}", "format=hls4ml", cwd=tmp_path)
    assert result.returncode == 1
    assert "IsolationForestDetector cannot be exported to firmware" in result.stderr
    assert "Supported: dense autoencoders (model=dense_ae" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (run_dir / "export").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("precision=ap_fixed<16>", "precision='ap_fixed<16>' is not an ap_fixed type: write e.g."),
        ("reuse_factor=0", "reuse_factor must be a positive integer"),
        ("format=onnx", "format=onnx is not available"),
        ("+layer_precision.dense_5=ap_fixed<8,3>", "layer_precision names layers it cannot set: ['dense_5']"),
    ],
)
def test_bad_values_are_refused_before_anything_is_written(dense_run, tmp_path, argument, message):
    result = run_export(f"run_dir={dense_run}", argument, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (dense_run / "export").exists()


@pytest.mark.slow
def test_a_missing_or_unfinished_run_is_refused(dense_run, tmp_path):
    result = run_export(cwd=tmp_path)
    assert result.returncode == 1 and "run_dir is required" in result.stderr
    result = run_export(f"run_dir={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert result.returncode == 1 and "does not exist" in result.stderr
    # A run interrupted before it finished: its status.json still says running.
    (dense_run / "status.json").write_text(json.dumps({"status": "running"}))
    result = run_export(f"run_dir={dense_run}", cwd=tmp_path)
    assert result.returncode == 1 and "has status 'running', not 'complete'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (dense_run / "export").exists() and not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_an_export_with_the_run_data_gone_is_refused_before_writing(tmp_path):
    data = relative_data_dir(adc2021_overrides(tmp_path, n_background=300, n_signal=40))
    result = run_cli("model=dense_ae", *data, *FAST, "trainer.epochs=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run(tmp_path, "DenseAutoencoder")
    (tmp_path / "adc2021").rename(tmp_path / "moved")
    result = run_export(f"run_dir={run_dir}", "emulate=true", cwd=tmp_path)
    assert result.returncode == 1
    assert "background_for_training.h5, which is not there any more" in result.stderr
    assert "never downloaded or generated again" in result.stderr and "Traceback" not in result.stderr
    assert not (run_dir / "export").exists() and not (tmp_path / "adc2021").exists()


def test_help_lists_the_export_keys_without_the_run_groups(tmp_path):
    result = run_export("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for key in ("run_dir: null", "format: hls4ml", "precision: ap_fixed<16,6>", "emulate: false"):
        assert key in result.stdout
    assert "model: conv_ae" not in result.stdout and not (tmp_path / "outputs").exists()
