"""The physics checks through the pipeline: the inverse task, the decorrelated score (fitted on
background only, saved with the model), reference observables, the sculpting report and its sweep column."""

from __future__ import annotations

import json
from dataclasses import replace

import h5py
import numpy as np
import pytest

from hepad_cli.data.dataset import Dataset, DatasetContent, EventSample
from hepad_cli.data.jets import ImageSettings, read_jet_images
from hepad_cli.data.toptagging_format import write_toptagging_h5
from hepad_cli.errors import ConfigError, DataError
from hepad_cli.evaluation import decorrelation, metrics
from hepad_cli.evaluation.evaluate import EvaluatorSettings
from hepad_cli.evaluation.physics import check_observables
from hepad_cli.evaluation.sculpting import SculptingSettings, sculpting_report
from hepad_cli.experiment import instantiate_node, run
from hepad_cli.report import RunReport
from hepad_cli.runs import FinishedRun
from hepad_cli.sweep import SCULPTING_COLUMN, JobResult, summary_rows
from tests.conftest import TINY_PYTHIA, build_dataset, compose_config, run_cli, toy_jets
from tests.data.test_cms_dqm import write_cms_dqm_files
from tests.test_cli import only_run_dir
from tests.test_pipeline import RecordingPCA, jetnet_overrides


def image_rows(path) -> tuple[set[bytes], set[bytes]]:
    jets = read_jet_images(path, ImageSettings(size=16, radius=0.8, normalise=True))
    return (
        {row.tobytes() for row in jets.images[jets.is_signal == 0]},
        {row.tobytes() for row in jets.images[jets.is_signal == 1]},
    )


def test_inverse_task_trains_on_the_signal_only_and_scores_the_background_as_anomaly(
    toptagging_file, tmp_path
):
    cfg = compose_config(*jetnet_overrides(toptagging_file, "model=pca", "data.invert=true"))
    cfg.model._target_ = "tests.test_pipeline.RecordingPCA"
    report = run(cfg, tmp_path / "run")
    qcd_rows, top_rows = image_rows(toptagging_file)
    for fitted in RecordingPCA.fitted_with:
        rows = {row.tobytes() for row in fitted}
        assert rows <= top_rows and not rows & qcd_rows
    # 200 top jets split 60/20/20; every one of the 400 QCD jets is scored as the anomaly.
    assert report.events == {
        "background_train": 120,
        "background_val": 40,
        "background_test": 40,
        "signal_qcd": 400,
    }
    assert (report.inverted, report.trained_on) == (True, "top")
    stored = json.loads((tmp_path / "run" / "auc.json").read_text())
    assert stored["inverted"] is True and stored["trained_on"] == "top"
    # The jet mass separates the two in this direction from below: a lighter jet is the anomaly.
    assert report.reference_observables["mass"]["qcd"]["signal_side"] == "below"


def test_a_normal_run_records_that_it_is_not_inverted(toptagging_file, tmp_path):
    report = run(compose_config(*jetnet_overrides(toptagging_file, "model=pca")), tmp_path / "run")
    stored = json.loads((tmp_path / "run" / "auc.json").read_text())
    assert stored["inverted"] is False and "trained_on" not in stored
    assert report.reference_observables["mass"]["top"]["signal_side"] == "above"


def test_inverse_task_still_refuses_training_events_that_are_also_anomalies(tmp_path):
    jets = toy_jets(60, 3, np.random.default_rng(8))
    path = tmp_path / "leaky" / "val.h5"
    path.parent.mkdir()
    # The "QCD" jets include copies of top jets: the inverse task would train on anomalies.
    write_toptagging_h5(path, np.concatenate([jets[:20], jets]), np.r_[np.zeros(20), np.ones(60)])
    cfg = compose_config(*jetnet_overrides(path, "model=pca", "data.invert=true"))
    with pytest.raises(DataError, match="of signal 'qcd' .*are also in the background training sample"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "auc.json").exists()


def test_an_unknown_invert_signal_names_the_choices(toptagging_file, tmp_path):
    cfg = compose_config(*jetnet_overrides(toptagging_file, "model=pca", "data.invert=true"))
    cfg.data.invert_signal = "higgs"
    with pytest.raises(DataError, match=r"data.invert_signal='higgs' is not a signal .* \['top'\]"):
        run(cfg, tmp_path / "run")


class LabelledBlobs(Dataset):
    """Labelled events (good / anomalous) and no signal class: nothing to invert."""

    def read(self) -> DatasetContent:
        x = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
        return DatasetContent(EventSample(x), {}, [], labels=(np.arange(200) % 5 != 0).astype(int))


def test_labelled_data_cannot_be_inverted():
    dataset = LabelledBlobs(split={"train": 0.6, "val": 0.2, "test": 0.2}, seed=0, scaling=None, invert=True)
    with pytest.raises(DataError, match="data.invert=true needs a background and named signals"):
        dataset.load()


def test_decorrelation_is_fitted_on_background_validation_events_only(toptagging_file, tmp_path):
    overrides = jetnet_overrides(
        toptagging_file, "model=pca", "evaluator.decorrelate=mass", "evaluator.decorrelation_bins=4"
    )
    report = run(compose_config(*overrides), tmp_path / "run")
    finished = FinishedRun.open(tmp_path / "run")
    saved = json.loads((finished.model_dir / decorrelation.FILE).read_text())
    # Refit from the background validation split alone (the same seeded split): the same transform.
    samples = instantiate_node(finished.config.data).load()
    detector = finished.detector
    refit = decorrelation.fit(
        detector.score(samples.background_val), samples.background_val_observables["mass"], "mass", 4
    )
    assert saved == json.loads(json.dumps(refit.to_dict()))
    assert saved["fitted_on_events"] == report.events["background_val"] == 80
    # scores.h5 carries the decorrelated score of every event: the saved transform applied to it.
    transform = finished.decorrelation()
    with h5py.File(tmp_path / "run" / "scores.h5") as f:
        np.testing.assert_allclose(f["score_decorrelated"][:], transform.apply(f["score"][:], f["mass"][:]))
    block = report.decorrelated
    assert block["observable"] == "mass" and set(block["signals"]) == {"top"}
    assert block["mass_sculpting"]["observable"] == "mass"
    assert report.mass_sculpting["by_background_efficiency"]["0.1"] is None  # 8 of 80 events pass


def test_a_decorrelation_observable_the_data_lack_fails_before_training(toptagging_file, tmp_path):
    cfg = compose_config(*jetnet_overrides(toptagging_file, "model=pca", "evaluator.decorrelate=msd"))
    cfg.model._target_ = "tests.test_pipeline.RecordingPCA"
    RecordingPCA.fitted_with = []
    with pytest.raises(ConfigError, match=r"evaluator.decorrelate='msd' .* \['mass', 'pt'\]"):
        run(cfg, tmp_path / "run")
    assert RecordingPCA.fitted_with == []


def test_cli_run_reports_sculpting_references_and_the_decorrelated_score(tmp_path, pythia_data_dir):
    result = run_cli(
        "model=pca",
        *TINY_PYTHIA,
        "evaluator.n_bootstrap=0",
        "evaluator.decorrelate=mass",
        "evaluator.decorrelation_bins=5",
        "evaluator.sculpting.background_efficiencies=[0.5,0.25]",
        f"paths.data_dir={pythia_data_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    assert (run_dir / "sculpting.png").is_file() and (run_dir / "model" / decorrelation.FILE).is_file()
    report = RunReport.read(run_dir)
    with h5py.File(run_dir / "scores.h5") as f:
        names = list(f.attrs["origin_names"])
        origin, score, mass = f["origin"][:], f["score"][:], f["mass"][:]
    background = mass[origin == names.index("background")]
    # Reference observables: the AUC of a cut on the jet mass alone, on the side where each signal lies.
    for signal in ("top", "w", "z"):
        signal_mass = mass[origin == names.index(signal)]
        auc, _ = metrics.auc_with_interval(background, signal_mass, 0)
        entry = report.reference_observables["mass"][signal]
        assert entry["auc"] == pytest.approx(max(auc, 1 - auc))
        assert entry["signal_side"] == ("above" if auc >= 0.5 else "below")
    assert set(report.reference_observables) == {"mass", "tau32"}
    assert report.reference_observables["tau32"]["top"]["signal_side"] == "below"
    # The console names every observable that alone separates a signal better than the score, and no other.
    for signal, outcome in report.signals.items():
        better = [
            f"{name} AUC {by_signal[signal]['auc']:.3f}"
            for name, by_signal in report.reference_observables.items()
            if by_signal[signal]["auc"] > outcome.auc
        ]
        line = f"hepad-run: {signal}: one observable alone separates better: {', '.join(better)}"
        assert (line in result.stderr.splitlines()) == bool(better), (line, result.stderr[-2000:])
    assert report.stronger_references(), "PCA on tiny samples: the jet mass beats it for top jets"
    # Sculpting: the raw score's cut at 25 % of the 48 background test jets keeps 12.
    quarter = report.mass_sculpting["by_background_efficiency"]["0.25"]
    kept = background[score[origin == 0] > np.sort(score[origin == 0])[::-1][12]]
    assert quarter["n_selected"] == 12 and quarter["median_after"] == pytest.approx(np.median(kept))
    assert set(report.decorrelated["signals"]) == {"top", "w", "z"}
    # The sweep summary carries the JS divergence at 10 %: null here (fewer than 10 jets pass) and the
    # value where one is reported (here with a minimum of 1 jet).
    at_ten = sculpting_report(
        score[origin == 0], background, "mass", SculptingSettings(background_efficiencies=[0.1]), 1
    )
    jobs = [
        JobResult(run_dir, {"seed": "1"}, "complete", report=report),
        JobResult(run_dir, {"seed": "2"}, "complete", report=replace(report, mass_sculpting=at_ten)),
    ]
    columns, rows = summary_rows(jobs)
    assert SCULPTING_COLUMN in columns
    by_seed = {row["seed"]: row[SCULPTING_COLUMN] for row in rows}
    assert by_seed["1"] is None
    assert by_seed["2"] == at_ten["by_background_efficiency"]["0.1"]["js_divergence"] > 0


def test_decorrelation_is_refused_where_validation_holds_labelled_anomalies(tmp_path):
    directory = tmp_path / "cms_dqm"
    write_cms_dqm_files(directory, n=200)
    weak = build_dataset("cms_dqm", directory, trust_pickle=True, training="weak").load()
    with pytest.raises(ConfigError, match="holds labelled anomalous events .* data.training=good_only"):
        check_observables(EvaluatorSettings(decorrelate="weight"), weak)
    good_only = build_dataset("cms_dqm", directory, training="good_only").load()
    check_observables(EvaluatorSettings(decorrelate="weight"), good_only)
