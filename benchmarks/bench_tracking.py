"""What the trackers cost a run: hepad-run wall time without a logger, with MLflow and TensorBoard, and
with an MLflow server that cannot be reached, side by side on the same data."""

from __future__ import annotations

import os
import resource
import socket
import statistics
import subprocess
import sys
from pathlib import Path

from bench_common import Figure, Settings, Side, fmt_seconds, side_by_side
from bench_files import FEATURES, write_feature_file


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def figure_tracking(settings: Settings) -> list[Figure]:
    hepad_run = Path(sys.executable).with_name("hepad-run")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if settings.smoke:
        # Seconds: PCA (no epochs) on a small ROOT file of flat features.
        data = write_feature_file(settings.work_dir / "tracking.root", 3000, seed=3)
        run = ["data=files", f"data.background=[{data}]", f"data.signals.same=[{data}]"]
        run += [f"data.features=[{','.join(FEATURES)}]", "model=pca", "evaluator.n_bootstrap=0"]
        what = "PCA on 3000 events of a ROOT file"
    else:
        # The default Pythia jets (cached), a dense autoencoder trained with early stopping: every epoch
        # is logged, every figure and the model uploaded.
        run = [f"paths.data_dir={settings.cache_dir / 'tracking-data'}", "model=dense_ae"]
        what = "dense AE on the default Pythia jets (10,500 jets, up to 30 epochs)"
    run += ["trainer.progress_bar=false"]
    store = f"sqlite:///{settings.work_dir / 'mlruns' / 'mlflow.db'}"
    sides = {
        "none": [],
        "mlflow+tensorboard": ["logger=[mlflow,tensorboard]", f"logger.mlflow.tracking_uri={store}"],
        "unreachable": ["logger=mlflow", f"logger.mlflow.tracking_uri=http://127.0.0.1:{_closed_port()}"],
    }
    count = iter(range(10_000))
    cpu_seconds: dict[str, list[float]] = {name: [] for name in sides}

    def runner(name: str, extra: list[str]):
        def run_once() -> None:
            out = settings.work_dir / f"tracking-run-{next(count)}"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = subprocess.run(
                [str(hepad_run), *run, *extra, f"hydra.run.dir={out}"],
                cwd=settings.work_dir,
                capture_output=True,
                text=True,
                env=env,
                timeout=3600,
            )
            if result.returncode != 0:
                raise RuntimeError(f"hepad-run {extra} failed:\n{result.stderr[-3000:]}")
            # CPU of hepad-run and of the processes it waited for (the trackers' process).
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            cpu_seconds[name].append(used)

        return run_once

    # The warm-up runs generate or read the data once and create the MLflow store (its tables).
    times = side_by_side(settings.heavy_repeats, {name: runner(name, extra) for name, extra in sides.items()})
    # The first run of each side is side_by_side's warm-up: not a sample.
    cpu_seconds = {name: samples[1:] for name, samples in cpu_seconds.items()}
    cpu = {name: statistics.median(samples) for name, samples in cpu_seconds.items()}
    baseline = Side("hepad-run, no logger", times["none"])
    figures = []
    for name, label, what_side in (
        ("tracking", "mlflow+tensorboard", "logger=[mlflow,tensorboard], local SQLite store"),
        ("tracking_unreachable", "unreachable", "logger=mlflow, server not reachable"),
    ):
        ours = Side(f"hepad-run, {what_side}", times[label])
        ratio = ours.median / baseline.median
        figures.append(
            Figure(
                name=name,
                what=f"{what_side}: run wall time",
                baseline=baseline,
                ours=ours,
                ratio=ratio,
                target="≤ 1.05× the run without a logger",
                met=ratio <= 1.05,
                baseline_text=fmt_seconds(baseline.median),
                ours_text=fmt_seconds(ours.median),
                notes=[
                    f"{what}; whole process wall time, median of {len(ours.samples)}, sides alternating",
                    "runs: " + ", ".join(fmt_seconds(s) for s in ours.samples),
                    f"CPU time per run {fmt_seconds(cpu[label])} against {fmt_seconds(cpu['none'])} "
                    "without a logger (the trackers' process included)",
                ],
                extra={"cpu_seconds": cpu_seconds[label], "cpu_seconds_without_logger": cpu_seconds["none"]},
            )
        )
    return figures
