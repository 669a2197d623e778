"""The pipeline in-process: what reaches fit, leaks, physics sanity on real Pythia jets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hepad_cli.data.samples import DataError
from hepad_cli.data.toptagging_format import write_toptagging_h5
from hepad_cli.experiment import run
from hepad_cli.models.pca import PCAReconstruction
from tests.conftest import PHYSICS_PYTHIA, compose_config, toy_jets


class RecordingPCA(PCAReconstruction):
    """PCA that keeps a copy of what it was fitted with, so the test can inspect it."""

    fitted_with: list[np.ndarray] = []

    def fit(self, x_train, x_val=None):
        RecordingPCA.fitted_with = [x_train.copy(), None if x_val is None else x_val.copy()]
        return super().fit(x_train, x_val)


def jetnet_overrides(path, *extra):
    return [
        "data=jetnet",
        f"data.data_dir={path.parent}",
        "data.checksum=null",
        "data.download=false",
        "evaluator.n_bootstrap=0",
        "evaluator.plots=false",
        *extra,
    ]


def test_no_signal_event_reaches_fit(toptagging_file, tmp_path):
    cfg = compose_config(*jetnet_overrides(toptagging_file, "model=pca"))
    cfg.model._target_ = "tests.test_pipeline.RecordingPCA"
    report = run(cfg, tmp_path / "run")
    x_train, x_val = RecordingPCA.fitted_with
    # The toy file has 400 QCD and 200 top jets: rebuild both image sets and compare rows.
    from hepad_cli.data.jets import ImageSettings, read_jet_images

    jets = read_jet_images(toptagging_file, ImageSettings(size=16, radius=0.8, normalise=True))
    top_rows = {row.tobytes() for row in jets.images[jets.is_signal == 1]}
    qcd_rows = {row.tobytes() for row in jets.images[jets.is_signal == 0]}
    for sample in (x_train, x_val):
        rows = {row.tobytes() for row in sample}
        assert rows <= qcd_rows and not rows & top_rows
    assert len(x_train) + len(x_val) + report.events["background_test"] == 400
    assert report.signals["top"].n_signal == 200


def test_signal_copied_into_the_background_file_is_refused(tmp_path):
    jets = toy_jets(60, 1, np.random.default_rng(2))
    path = tmp_path / "leaky" / "val.h5"
    path.parent.mkdir()
    # The "signal" jets are copies of background jets: training would see signal events.
    write_toptagging_h5(path, np.concatenate([jets, jets[:20]]), np.r_[np.zeros(60), np.ones(20)])
    cfg = compose_config(*jetnet_overrides(path, "model=pca"))
    with pytest.raises(DataError, match="also in the background training sample") as error:
        run(cfg, tmp_path / "run")
    # The message says what it found: each leaked jet is one distinct copy, none of them empty.
    leaked = int(str(error.value).split(" event", 1)[0])
    assert 0 < leaked <= 20 and f" ({leaked} distinct) of signal 'top'" in str(error.value)
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and not (tmp_path / "run" / "auc.json").exists()


@pytest.mark.slow
def test_pca_separates_pythia_top_jets_from_qcd(tmp_path, physics_data_dir):
    cfg = compose_config(
        "model=pca",
        f"paths.data_dir={physics_data_dir}",
        *PHYSICS_PYTHIA,
        "evaluator.n_bootstrap=50",
        "evaluator.plots=false",
    )
    report = run(cfg, tmp_path / "physics-run")
    top = report.signals["top"]
    assert top.auc > 0.7, top
    assert top.auc_interval[0] > 0.6


def test_jetnet_data_dir_may_name_the_file_itself(toptagging_file, tmp_path):
    cfg = compose_config(*jetnet_overrides(toptagging_file, "model=pca"))
    cfg.data.data_dir = str(toptagging_file)
    report = run(cfg, tmp_path / "run")
    assert report.signals["top"].n_signal == 200
