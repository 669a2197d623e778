"""hepad-score end to end: train with data=files, apply the run to files written here, refuse mismatches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hepad_cli.runs import FinishedRun
from tests.conftest import FAST_TRAINER, run_cli
from tests.user_files import FEATURES, make_jets, write_parquet, write_root

HEPAD_SCORE = Path(sys.executable).with_name("hepad-score")
CONSTITUENTS = "data.constituents={pt: part_pt, eta: part_eta, phi: part_phi}"


def score_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [str(HEPAD_SCORE), *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=environment
    )


def only(directory: Path, pattern: str) -> Path:
    (found,) = directory.glob(pattern)
    return found


def by_event(path: Path, name: str = "score") -> dict[int, float]:
    with h5py.File(path) as f:
        return dict(zip(f["event"][:].tolist(), f[name][:].tolist(), strict=True))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("score-inputs")
    write_root(directory / "bkg.root", make_jets(600, seed=1))
    write_root(directory / "sig.root", make_jets(150, seed=2, prongs=3, first_event=100_000))
    write_parquet(directory / "new_sig.parquet", make_jets(120, seed=3, prongs=3, first_event=200_000))
    import awkward as ak
    import uproot

    with uproot.recreate(directory / "jagged_mass.root") as f:  # subjet masses under a feature's name
        f.mktree(
            "Jets", {name: np.float32 for name in FEATURES if name != "mass"} | {"mass": "var * float32"}
        )
        f["Jets"].extend(
            {name: np.ones(3, np.float32) for name in FEATURES if name != "mass"}
            | {"mass": ak.Array([[1.0, 2.0], [3.0], []])}
        )
    (directory / "fake.root").write_text("this is not ROOT")
    return directory


def train(inputs: Path, workdir: Path, *overrides: str) -> Path:
    workdir.mkdir(exist_ok=True)
    result = run_cli(
        "data=files",
        f"data.background=[{inputs / 'bkg.root'}]",
        f"data.signals.zprime=[{inputs / 'sig.root'}]",
        "data.passthrough=[run,event]",
        *FAST_TRAINER,
        *overrides,
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return only(workdir, "outputs/*/*/auc.json").parent


@pytest.fixture(scope="module")
def features_run(inputs, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("features-run")
    return train(
        inputs, workdir, f"data.features=[{','.join(FEATURES)}]", "model=dense_ae", "model.latent_dim=2"
    )


@pytest.fixture(scope="module")
def image_run(inputs, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("image-run")
    return train(
        inputs,
        workdir,
        "data.representation=image",
        CONSTITUENTS,
        "model=pca",
        "model.latent_dim=3",
        "evaluator.decorrelate=mass",
    )


def test_round_trip_gives_the_training_scores_and_auc(features_run, inputs, tmp_path):
    """Score exactly the run's background-test and signal events again: same scores, same AUC."""
    trained = by_event(features_run / "scores.h5")
    with h5py.File(features_run / "scores.h5") as f:
        test_events = f["event"][:][f["origin"][:] == 0]
    jets = make_jets(600, seed=1)
    keep = np.isin(jets.event, test_events)
    subset = make_jets(600, seed=1)
    subset.features = {k: v[keep] for k, v in jets.features.items()}
    subset.run, subset.event = jets.run[keep], jets.event[keep]
    starts = np.cumsum(jets.counts) - jets.counts
    rows = np.concatenate([np.arange(s, s + c) for s, c in zip(starts[keep], jets.counts[keep], strict=True)])
    subset.particles = {k: v[rows] for k, v in jets.particles.items()}
    subset.counts = jets.counts[keep]
    write_root(tmp_path / "bkg_test.root", subset)

    result = score_cli(
        f"run_dir={features_run}",
        f"data.background=[{tmp_path / 'bkg_test.root'}]",
        f"data.signals.zprime=[{inputs / 'sig.root'}]",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = only(tmp_path, "outputs/score/*/*/scores.h5").parent
    scored = by_event(out / "scores.h5")
    assert scored.keys() == trained.keys()
    np.testing.assert_allclose([scored[e] for e in trained], list(trained.values()), rtol=1e-6)
    report, original = (json.loads((d / "auc.json").read_text()) for d in (out, features_run))
    assert report["signals"]["zprime"]["auc"] == pytest.approx(original["signals"]["zprime"]["auc"], abs=1e-9)
    assert report["events"] == {"background": 120, "signal_zprime": 150}
    for name in ("roc.png", "loss_hist.png", "status.json", "run_info.json"):
        assert (out / name).is_file()
    info = json.loads((out / "run_info.json").read_text())
    assert info["applied_run"] == str(features_run)
    assert [Path(e["path"]).name for e in info["data"]] == ["bkg_test.root", "sig.root"]
    assert all(len(e["md5"]) == 32 for e in info["data"])
    assert json.loads((out / "status.json").read_text())["status"] == "complete"


def test_unlabelled_files_get_scores_with_their_origin_and_copies(features_run, inputs, tmp_path):
    """Scoring data without signals: every event scored, traced to file and entry, copied with the score."""
    preprocessing = (features_run / "model" / "preprocessing.json").read_bytes()
    result = score_cli(
        f"run_dir={features_run}",
        f"data.background=[{inputs / 'sig.root'}]",  # any file; here the signal jets as "data"
        "output.format=parquet",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = only(tmp_path, "outputs/score/*/*/scores.h5").parent
    assert not (out / "auc.json").exists()
    with h5py.File(out / "scores.h5") as f:
        scores, entries = f["score"][:], f["entry"][:]
        assert list(f.attrs["source_files"]) == [str(inputs / "sig.root")]
        np.testing.assert_array_equal(f["run"][:], 2018)
    np.testing.assert_array_equal(entries, np.arange(150))
    # The saved scaler and detector, applied here: the same numbers (nothing was re-fitted).
    jets = make_jets(150, seed=2, prongs=3, first_event=100_000)
    raw = np.column_stack([jets.features[name] for name in FEATURES])
    scorer = FinishedRun.open(features_run).scorer()
    expected = scorer.score({"data": scorer.prepare(raw)}).primary_scores["data"]
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert (features_run / "model" / "preprocessing.json").read_bytes() == preprocessing
    import pyarrow.parquet as pq

    copy = pq.read_table(out / "scored" / "sig.parquet")
    assert copy.column_names[:4] == ["mass", "tau21", "tau32", "pt"]
    np.testing.assert_allclose(copy.column("hepad_reconstruction_mse").to_numpy(), scores)
    np.testing.assert_array_equal(
        copy.column("part_pt").to_pylist()[3],
        jets.particles["part_pt"][int(jets.counts[:3].sum()) : int(jets.counts[:4].sum())],
    )


def test_features_are_matched_by_name_and_a_new_signal_from_parquet(features_run, inputs, tmp_path):
    result = score_cli(
        f"run_dir={features_run}",
        f"data.background=[{inputs / 'bkg.root'}]",
        f"data.signals.new_model=[{inputs / 'new_sig.parquet'}]",
        "data.features=[pt,tau32,mass,tau21]",  # another order: matched by name
        "output.format=root",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = only(tmp_path, "outputs/score/*/*/auc.json").parent
    scored = by_event(out / "scores.h5")
    trained = by_event(features_run / "scores.h5")
    background_test = [e for e in trained if e < 100_000]
    np.testing.assert_allclose(
        [scored[e] for e in background_test], [trained[e] for e in background_test], rtol=1e-6
    )
    assert json.loads((out / "auc.json").read_text())["signals"]["new_model"]["n_signal"] == 120
    import uproot

    with uproot.open(out / "scored" / "bkg.root") as f:
        copy = f["Jets"].arrays(["event", "hepad_reconstruction_mse"], library="np")
    np.testing.assert_allclose(
        [scored[e] for e in copy["event"]], copy["hepad_reconstruction_mse"], rtol=1e-6
    )


def test_image_run_is_applied_to_parquet_constituents(image_run, inputs, tmp_path):
    result = score_cli(
        f"run_dir={image_run}",
        f"data.background=[{inputs / 'bkg.root'}]",
        f"data.signals.new_model=[{inputs / 'new_sig.parquet'}]",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scored = by_event(only(tmp_path, "outputs/score/*/*/scores.h5"))
    trained = by_event(image_run / "scores.h5")
    common = [e for e in trained if e < 100_000]
    np.testing.assert_allclose([scored[e] for e in common], [trained[e] for e in common], rtol=1e-6)
    # The run's mass decorrelation is applied to the new events as it was fitted (never re-fitted).
    decorrelated = by_event(only(tmp_path, "outputs/score/*/*/scores.h5"), "score_decorrelated")
    trained_decorrelated = by_event(image_run / "scores.h5", "score_decorrelated")
    np.testing.assert_allclose(
        [decorrelated[e] for e in common], [trained_decorrelated[e] for e in common], rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize(
    "model", [["model=vae", "model.latent_dim=2"], ["model=iforest"]], ids=["vae", "iforest"]
)
def test_every_detector_scores_the_same_events_again(model, inputs, tmp_path):
    run_dir = train(
        inputs,
        tmp_path / "train",
        f"data.features=[{','.join(FEATURES)}]",
        *model,
    )
    result = score_cli(f"run_dir={run_dir}", f"data.signals.zprime=[{inputs / 'sig.root'}]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = only(tmp_path, "outputs/score/*/*/scores.h5")
    with h5py.File(out) as f, h5py.File(run_dir / "scores.h5") as g:
        names = [n for n in g if n.startswith("score")]
        assert sorted(n for n in f if n.startswith("score")) == sorted(names)
        signal = g["origin"][:] == 1
        for name in names:
            np.testing.assert_allclose(f[name][:], g[name][:][signal], rtol=1e-6)


def mark_running(run_dir: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "incomplete"
    shutil.copytree(run_dir, copy)
    (copy / "status.json").write_text(json.dumps({"status": "running"}))
    return copy


# (case, arguments after run_dir, what stderr must say)
MISMATCHES = [
    (
        "missing branch",
        lambda i: [f"data.background=[{i / 'bkg.root'}]", "data.features=[mass,tau21,tau32,ptt]"],
        "does not match the features the detector was trained on",
    ),
    (
        "branch missing in the file",
        lambda i: [
            f"data.background=[{i / 'bkg.root'}]",
            "data.tree=Jets",
            "data.key=nothing",
            "data.passthrough=[lumi]",
        ],
        "has no branch 'lumi'; its branches: ['mass'",
    ),
    (
        "another representation",
        lambda i: [f"data.background=[{i / 'bkg.root'}]", "data.representation=image", CONSTITUENTS],
        "trained on representation='features' events, data.representation='image' was given",
    ),
    (
        "jagged where flat is expected",
        lambda i: [f"data.background=[{i / 'jagged_mass.root'}]"],
        "is jagged (several values per event), but one number per event is expected",
    ),
    (
        "training setting",
        lambda i: [f"data.background=[{i / 'bkg.root'}]", "data.scaling=null"],
        "data.scaling is a training setting",
    ),
    ("no input named", lambda i: [], "name the files to score"),
    (
        "not a ROOT file",
        lambda i: [f"data.background=[{i / 'fake.root'}]"],
        "is not a readable ROOT file",
    ),
]


@pytest.mark.parametrize(("case", "arguments", "message"), MISMATCHES, ids=[m[0] for m in MISMATCHES])
def test_mismatches_are_refused_before_any_scoring(case, arguments, message, features_run, inputs, tmp_path):
    result = score_cli(f"run_dir={features_run}", *arguments(inputs), cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("outputs/**/scores.h5"))
    (status,) = tmp_path.glob("outputs/score/*/*/status.json")
    assert json.loads(status.read_text())["status"] == "failed"


def test_image_size_and_flat_columns_as_constituents_are_refused(image_run, inputs, tmp_path):
    result = score_cli(
        f"run_dir={image_run}", f"data.background=[{inputs / 'bkg.root'}]", "data.image.size=20", cwd=tmp_path
    )
    assert result.returncode == 1 and "the detector was trained on images with" in result.stderr
    result = score_cli(
        f"run_dir={image_run}",
        f"data.background=[{inputs / 'bkg.root'}]",
        "data.constituents={pt: pt, eta: part_eta, phi: part_phi}",
        cwd=tmp_path,
    )
    assert result.returncode == 1 and "branch 'pt' of" in result.stderr and "is flat" in result.stderr
    assert not list(tmp_path.glob("outputs/**/scores.h5"))


def test_a_run_that_is_not_complete_is_refused(features_run, inputs, tmp_path):
    incomplete = mark_running(features_run, tmp_path)
    result = score_cli(f"run_dir={incomplete}", f"data.background=[{inputs / 'bkg.root'}]", cwd=tmp_path)
    assert result.returncode == 1
    assert "has status 'running', not 'complete'" in result.stderr
    assert not list(tmp_path.glob("outputs/**/scores.h5"))


def test_a_top_tagging_image_run_scores_root_constituents(toptagging_file, inputs, tmp_path):
    """Runs of other image datasets apply to any constituents: the images are made the same way."""
    trained = run_cli(
        "data=jetnet",
        f"data.data_dir={toptagging_file.parent}",
        "data.checksum=null",
        "data.download=false",
        "model=pca",
        "evaluator.n_bootstrap=0",
        "evaluator.plots=false",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_dir = only(tmp_path, "outputs/*/*/auc.json").parent
    result = score_cli(
        f"run_dir={run_dir}", f"data.background=[{inputs / 'bkg.root'}]", CONSTITUENTS, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with h5py.File(only(tmp_path, "outputs/score/*/*/scores.h5")) as f:
        assert len(f["score"]) == 600 and np.isfinite(f["score"][:]).all()
