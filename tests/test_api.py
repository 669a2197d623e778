"""hepad_cli.api: runs from Python are the console script's runs (same config, directory, files, results)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml

from hepad_cli import api
from hepad_cli.errors import ConfigError
from hepad_cli.report import RunReport
from tests.conftest import FAST_TRAINER, TINY_PYTHIA, run_cli

QUICK_PCA = ["model=pca", *TINY_PYTHIA, "evaluator.n_bootstrap=0", "evaluator.plots=false"]


def comparable(report: RunReport) -> dict:
    """auc.json without the wall-clock timings and the run's own id."""
    data = report.to_dict()
    for key in ("timing_s", "inference_seconds_per_event", "scoring_seconds_per_event", "run_id"):
        data.pop(key)
    return data


@pytest.mark.slow
def test_the_api_run_equals_the_console_run(tmp_path, pythia_data_dir, monkeypatch):
    overrides = ["model=dense_ae", *TINY_PYTHIA, *FAST_TRAINER, f"paths.data_dir={pythia_data_dir}"]
    (tmp_path / "console").mkdir()
    console = run_cli(*overrides, cwd=tmp_path / "console")
    assert console.returncode == 0, console.stderr[-3000:]
    (console_dir,) = (tmp_path / "console").glob("outputs/*-*-*/*")

    (tmp_path / "api").mkdir()
    monkeypatch.chdir(tmp_path / "api")
    result = api.run(overrides)
    assert result.directory.parent.parent == (tmp_path / "api" / "outputs").resolve()
    assert comparable(result.report) == comparable(RunReport.read(console_dir))
    assert comparable(RunReport.read(result.directory)) == comparable(result.report)
    with h5py.File(result.directory / "scores.h5") as ours, h5py.File(console_dir / "scores.h5") as theirs:
        assert sorted(ours) == sorted(theirs)
        for name in ours:
            np.testing.assert_array_equal(ours[name][:], theirs[name][:], err_msg=name)
    # The same record of what ran: Hydra's files, the log, status and provenance.
    for directory in (result.directory, console_dir):
        assert json.loads((directory / "status.json").read_text())["status"] == "complete"
        assert (directory / "hepad.log").stat().st_size > 0
    assert yaml.safe_load((result.directory / ".hydra" / "overrides.yaml").read_text()) == overrides
    assert (result.directory / ".hydra" / "config.yaml").read_text() == (
        console_dir / ".hydra" / "config.yaml"
    ).read_text()
    run_info = json.loads((result.directory / "run_info.json").read_text())
    assert run_info["overrides"] == overrides


def test_each_api_run_gets_a_directory_of_its_own(tmp_path, pythia_data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = api.run([*QUICK_PCA, f"paths.data_dir={pythia_data_dir}"])
    second = api.run([*QUICK_PCA, f"paths.data_dir={pythia_data_dir}"])
    assert first.directory != second.directory
    assert first.report.signals["top"].auc == second.report.signals["top"].auc


def test_a_bad_setting_raises_the_error_the_console_script_prints(tmp_path, pythia_data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="latent_dim=1000 is larger than the input"):
        api.run([*QUICK_PCA, "model.latent_dim=1000", f"paths.data_dir={pythia_data_dir}"])
    (status,) = tmp_path.glob("outputs/*-*-*/*/status.json")
    assert json.loads(status.read_text())["status"] == "failed"


def test_an_api_sweep_runs_every_job_and_summarises_them(tmp_path, pythia_data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = api.sweep(["model.latent_dim=2,1000", *QUICK_PCA, f"paths.data_dir={pythia_data_dir}"])
    assert sweep.directory.parent.parent == (tmp_path / "outputs" / "multirun").resolve()
    assert [(job.overrides["model.latent_dim"], job.status) for job in sweep.jobs] == [
        ("2", "complete"),
        ("1000", "failed"),
    ]
    assert "| job | status | model.latent_dim |" in sweep.summary
