"""A dataset and a detector added from outside the package (tests/extension_example/) run end to end.

This is the path docs/design.md describes: one module with the classes, one YAML file per config group
in a directory of one's own, ``hydra.searchpath`` pointing there; nothing in hepad is edited.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from hepad_cli.data.scaling import load_preprocessing
from tests.conftest import run_cli

EXAMPLE = Path(__file__).parent / "extension_example"


def test_a_toy_dataset_and_detector_from_outside_the_package_run_end_to_end(tmp_path):
    env = {"PYTHONPATH": os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")])}
    result = run_cli(
        f"hydra.searchpath=[file://{EXAMPLE / 'conf'}]",
        "data=gaussian_blobs",
        "model=mahalanobis",
        "evaluator.n_bootstrap=0",
        "hydra.run.dir=run",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"
    report = json.loads((run_dir / "auc.json").read_text())
    assert report["score"] == "mahalanobis_distance"
    assert report["events"] == {
        "background_train": 1800,
        "background_val": 600,
        "background_test": 600,
        "signal_shifted": 500,
    }
    assert report["signals"]["shifted"]["auc"] > 0.9
    assert (run_dir / "model" / "mahalanobis.npz").is_file()
    # The base fitted the configured scaler on the 1800 training events and saved it with the model.
    scaler = load_preprocessing(run_dir / "model")
    assert scaler.n_fitted_ == 1800 and len(scaler.mean_) == 6
    with h5py.File(run_dir / "scores.h5") as f:
        assert list(f.attrs["origin_names"]) == ["background", "shifted"]
        assert f["norm"].shape == (1100,) and np.isfinite(f["score"][:]).all()
