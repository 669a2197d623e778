"""Results people browse and compare: history.csv, MLflow (a real SQLite store read back with MlflowClient),
TensorBoard event files, publication figures; a tracker that cannot reach its store never stops a run."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from hepad_cli.report import RunReport
from hepad_cli.tracking import HISTORY_FILE, read_history
from tests.conftest import FAST_TRAINER, REPO, TINY_PYTHIA, run_cli

QUICK_PCA = ["model=pca", *TINY_PYTHIA, "evaluator.n_bootstrap=0", "evaluator.plots=false"]
EPOCHS = 3


def store_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'store' / 'mlflow.db'}"


def only_run_dir(root: Path) -> Path:
    dirs = [p.parent for p in root.glob("outputs/*-*-*/*/status.json")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def all_runs(uri: str):
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("hepad")
    return client, client.search_runs([experiment.experiment_id])


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, pythia_data_dir):
    """A tiny dense-AE run with both trackers, CMS style with a label, PNG and PDF figures."""
    root = tmp_path_factory.mktemp("tracked")
    result = run_cli(
        "model=dense_ae",
        *TINY_PYTHIA,
        *FAST_TRAINER,
        f"trainer.epochs={EPOCHS}",
        f"paths.data_dir={pythia_data_dir}",
        "logger=[mlflow,tensorboard]",
        f"logger.mlflow.tracking_uri={store_uri(root)}",
        "evaluator.style=CMS",
        "evaluator.label=Simulation",
        "evaluator.energy=14 TeV",
        "evaluator.formats=[png,pdf]",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root, only_run_dir(root), result


def test_history_csv_has_one_row_per_epoch_and_is_what_history_png_shows(tracked_run, tmp_path):
    from hepad_cli.evaluation.plots import FigureStyle, figure_style, plot_history

    _, run_dir, _ = tracked_run
    lines = (run_dir / HISTORY_FILE).read_text().splitlines()
    assert lines[0].split(",") == ["epoch", "loss", "val_loss", "learning_rate", "epoch_seconds"]
    assert [line.split(",")[0] for line in lines[1:]] == [str(i) for i in range(1, EPOCHS + 1)]
    history = read_history(run_dir / HISTORY_FILE)
    assert all(len(values) == EPOCHS and np.isfinite(values).all() for values in history.values())
    assert all(seconds > 0 for seconds in history["epoch_seconds"])
    # Drawn again from the file, the figure is pixel for pixel the run's history.png.
    import matplotlib.image

    with figure_style(FigureStyle("CMS", "Simulation", "14 TeV", ("png",))):
        plot_history(history, tmp_path / "history.png", "")
    redrawn = matplotlib.image.imread(tmp_path / "history.png")
    np.testing.assert_array_equal(redrawn, matplotlib.image.imread(run_dir / "history.png"))


def test_mlflow_run_holds_config_epochs_final_metrics_tags_and_files(tracked_run, tmp_path):
    root, run_dir, _ = tracked_run
    client, runs = all_runs(store_uri(root))
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.info.run_name == run_dir.name
    params = run.data.params
    assert params["model._target_"] == "hepad_cli.models.dense_ae.DenseAutoencoder"
    assert params["model.latent_dim"] == "8" and params["trainer.epochs"] == str(EPOCHS)
    assert params["seed"] == "42" and params["data.n_background"] == "240"

    history = read_history(run_dir / HISTORY_FILE)
    for key in ("loss", "val_loss", "learning_rate", "epoch_seconds"):
        logged = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in logged] == list(range(1, EPOCHS + 1)), key
        assert [m.value for m in logged] == history[key], key

    report = RunReport.read(run_dir)
    for signal, result in report.signals.items():
        assert run.data.metrics[f"auc/{signal}"] == result.auc
        assert run.data.metrics[f"auc_low/{signal}"] == result.auc_interval[0]
    assert run.data.metrics["mean_auc"] == pytest.approx(report.mean_auc(), rel=1e-12)

    tags = run.data.tags
    assert (tags["hepad.data"], tags["hepad.model"], tags["hepad.seed"]) == ("pythia", "dense_ae", "42")
    assert tags["hepad.run_dir"] == str(run_dir.resolve())
    if (REPO / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert tags["hepad.commit"].startswith(head.stdout.strip())

    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"auc.json", "history.csv", "run_info.json", "roc.png", "roc.pdf", "model", "hydra"} <= names
    assert "params.json" in {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")}
    copy = client.download_artifacts(run.info.run_id, "auc.json", str(tmp_path))
    assert json.loads(Path(copy).read_text()) == json.loads((run_dir / "auc.json").read_text())


def test_tensorboard_events_hold_each_epoch_the_final_aucs_and_the_figures(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir, _ = tracked_run
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    history = read_history(run_dir / HISTORY_FILE)
    loss = events.Scalars("loss")
    assert [e.step for e in loss] == list(range(1, EPOCHS + 1))
    np.testing.assert_allclose([e.value for e in loss], history["loss"], rtol=1e-6)  # stored as float32
    report = RunReport.read(run_dir)
    assert events.Scalars("auc/top")[-1].value == pytest.approx(report.signals["top"].auc, rel=1e-6)
    images = set(events.Tags()["images"])
    assert {"roc", "loss_hist", "history"} <= images
    roc = events.Images("roc")[-1]
    assert roc.width > 100 and roc.height > 100


def test_every_figure_is_written_as_png_and_pdf(tracked_run):
    _, run_dir, _ = tracked_run
    report = RunReport.read(run_dir)
    assert {"roc.png", "loss_hist.png", "history.png"} <= set(report.figures)
    for figure in report.figures:
        png, pdf = run_dir / figure, (run_dir / figure).with_suffix(".pdf")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
        assert pdf.read_bytes()[:5] == b"%PDF-", figure


def test_every_style_renders_its_own_look_with_the_label(tmp_path):
    import matplotlib.image

    from hepad_cli.evaluation import plots

    rng = np.random.default_rng(3)
    scores = {"background": rng.exponential(1, 500), "top": rng.exponential(2, 200)}
    looks = {}
    for style in plots.STYLES:
        directory = tmp_path / style
        with plots.figure_style(plots.FigureStyle(style, "Simulation", "13 TeV", ("png", "pdf", "svg"))):
            plots.plot_score_histograms(scores, "reconstruction mse", directory / "loss_hist.png", "title")
            plt = plots.styled_pyplot()
            fig, ax = plt.subplots()
            ax.plot([0, 1], [0, 1])
            ax.set_title("a title the label replaces")
            texts = [t.get_text() for t in plots.add_experiment_label(fig)]
            assert ax.get_title() == ""
            plt.close(fig)
        assert "Simulation" in texts and "13 TeV" in texts, (style, texts)
        if style != "ROOT":
            assert style in texts, (style, texts)
        for suffix in (".png", ".pdf", ".svg"):
            assert (directory / "loss_hist").with_suffix(suffix).stat().st_size > 1000, (style, suffix)
        looks[style] = matplotlib.image.imread(directory / "loss_hist.png")
    for a in plots.STYLES:
        for b in plots.STYLES:
            if a < b:
                assert looks[a].shape != looks[b].shape or not np.array_equal(looks[a], looks[b]), (a, b)


def test_without_a_label_a_figure_keeps_its_title():
    from hepad_cli.evaluation import plots

    plt = plots.styled_pyplot()
    fig, ax = plt.subplots()
    ax.set_title("DenseAutoencoder on PythiaJets")
    assert plots.add_experiment_label(fig) == []
    assert ax.get_title() == "DenseAutoencoder on PythiaJets"
    plt.close(fig)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "evaluator.style=CMSS",
            "evaluator.style must be one of ['ROOT', 'CMS', 'ATLAS', 'LHCb', 'ALICE'], got 'CMSS'",
        ),
        ("evaluator.formats=[pdf]", "evaluator.formats must list png once"),
        ("evaluator.formats=[png,jpg]", "evaluator.formats must be one of ['png', 'pdf', 'svg'], got 'jpg'"),
        ("logger.mlflow.request_retries=-1", "logger.mlflow.request_retries must be"),
    ],
)
def test_bad_figure_or_logger_settings_stop_before_any_work(tmp_path, override, message):
    logger = ["logger=mlflow"] if override.startswith("logger.") else []
    result = run_cli("model=pca", *logger, override, cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert message in result.stderr
    assert not list(tmp_path.glob("data/pythia/*.h5")), "no data was generated"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("store", ["unreachable server", "database under a regular file"])
def test_an_unreachable_store_warns_once_and_the_run_completes(tmp_path, pythia_data_dir, store):
    if store == "unreachable server":
        uri = f"http://127.0.0.1:{closed_port()}"
    else:
        (tmp_path / "not-a-directory").write_text("")
        uri = f"sqlite:///{tmp_path / 'not-a-directory' / 'mlflow.db'}"
    result = run_cli(
        *QUICK_PCA,
        f"paths.data_dir={pythia_data_dir}",
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={uri}",
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert output.count("logging is off for the rest of this run") == 1
    run_dir = only_run_dir(tmp_path)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"
    warnings = [w for w in RunReport.read(run_dir).warnings if w.startswith("mlflow")]
    assert len(warnings) == 1 and "switched off" in warnings[0]
    assert (run_dir / "scores.h5").is_file()


def test_a_failed_run_is_marked_failed_in_mlflow(tmp_path, pythia_data_dir):
    result = run_cli(
        *QUICK_PCA,
        "model.latent_dim=1000",
        f"paths.data_dir={pythia_data_dir}",
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={store_uri(tmp_path)}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    client, runs = all_runs(store_uri(tmp_path))
    assert [run.info.status for run in runs] == ["FAILED"]
    assert "latent_dim=1000 is larger than the input" in runs[0].data.tags["hepad.error"]
    assert "hepad.log" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}


def test_a_sweep_is_one_parent_run_with_a_child_run_per_job(tmp_path, pythia_data_dir):
    result = run_cli(
        "-m",
        "model.latent_dim=2,3",
        *QUICK_PCA,
        f"paths.data_dir={pythia_data_dir}",
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={store_uri(tmp_path)}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, runs = all_runs(store_uri(tmp_path))
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert all(child.data.tags["mlflow.parentRunId"] == parent.info.run_id for child in children)
    assert {run.info.experiment_id for run in runs} == {parent.info.experiment_id}
    assert sorted(child.data.params["model.latent_dim"] for child in children) == ["2", "3"]
    assert all(child.info.status == "FINISHED" for child in children) and parent.info.status == "FINISHED"
    sweep_dir = Path(parent.data.tags["hepad.sweep_dir"])
    assert parent.data.metrics["jobs_complete"] == 2
    best = max(RunReport.read(sweep_dir / f"job{i}").mean_auc() for i in range(2))
    assert parent.data.metrics["best_mean_auc"] == pytest.approx(best, rel=1e-12)
    assert {"summary.md", "summary.csv"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    # PCA trains in no epochs: no history.csv, and no per-epoch metrics.
    assert not (sweep_dir / "job0" / HISTORY_FILE).exists()
    assert not client.get_metric_history(children[0].info.run_id, "loss")
