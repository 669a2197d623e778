"""Interruptions, a full disk and reruns: nothing partial is ever taken for a result."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from hepad_cli.io import atomic_path, atomic_write_text
from tests.conftest import FAST_TRAINER, HEPAD_RUN, TINY_PYTHIA, run_cli


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    """Start hepad-run in its own process group, as a shell would; Ctrl-C reaches the whole group."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [str(HEPAD_RUN), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # A shell may start background jobs with SIGINT ignored, and Python then never raises
        # KeyboardInterrupt: restore the default so the test means the same wherever it runs.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(condition, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the run to reach the point of interruption"
        time.sleep(0.2)


def ctrl_c(process: subprocess.Popen) -> int:
    os.killpg(process.pid, signal.SIGINT)
    return process.wait(timeout=120)


def file_digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_atomic_writes_leave_the_old_file_or_nothing(tmp_path):
    target = tmp_path / "auc.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new cont")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["auc.json"]


def test_ctrl_c_during_training_marks_the_run_failed_and_a_rerun_completes(tmp_path, pythia_data_dir):
    args = [
        *TINY_PYTHIA,
        f"paths.data_dir={pythia_data_dir}",
        "trainer.epochs=500",
        "trainer.early_stopping_patience=0",
        "trainer.progress_bar=false",
        "trainer.batch_size=8",
    ]
    process = start_cli(*args, cwd=tmp_path)

    def training_started() -> bool:
        return any("epoch 2/500" in log.read_text() for log in tmp_path.glob("outputs/*/*/hepad.log"))

    wait_for(training_started)
    assert ctrl_c(process) != 0
    run_dir = next(tmp_path.glob("outputs/*/*"))
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "KeyboardInterrupt" in status["error"]
    assert not (run_dir / "auc.json").exists() and not (run_dir / "scores.h5").exists()
    assert not list(run_dir.rglob("*.partial*"))

    result = run_cli(*TINY_PYTHIA, f"paths.data_dir={pythia_data_dir}", *FAST_TRAINER, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(tmp_path.glob("outputs/*/*/auc.json"))) == 1


def test_ctrl_c_during_generation_leaves_no_sample_and_a_rerun_generates_it(tmp_path):
    data_dir = tmp_path / "data"
    args = [
        "model=pca",
        "data.n_background=4000",
        "data.signals=[top]",
        "data.n_signal=100",
        f"paths.data_dir={data_dir}",
    ]
    process = start_cli(*args, cwd=tmp_path)
    wait_for(lambda: any((data_dir / "pythia").glob(".*parts")) if (data_dir / "pythia").is_dir() else False)
    time.sleep(1.0)
    assert ctrl_c(process) != 0
    assert not list((data_dir / "pythia").glob("*.h5")), "an interrupted generation left a sample file"
    # Workers are gone too: nothing keeps writing part files after the interruption.
    time.sleep(1.0)
    assert not list((data_dir / "pythia").glob(".*parts"))

    result = run_cli(
        "model=pca",
        "data.n_background=200",
        "data.signals=[top]",
        "data.n_signal=60",
        "evaluator.n_bootstrap=0",
        "evaluator.plots=false",
        f"paths.data_dir={data_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_disk_full_while_writing_marks_the_run_failed_and_leaves_earlier_runs_untouched(
    tmp_path, pythia_data_dir, monkeypatch
):
    from hydra import compose, initialize_config_module

    from hepad_cli.evaluation import plots
    from hepad_cli.experiment import run

    with initialize_config_module("hepad_cli.conf", version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "model=pca",
                *TINY_PYTHIA,
                f"paths.data_dir={pythia_data_dir}",
                "evaluator.n_bootstrap=0",
            ],
        )
    earlier = tmp_path / "earlier"
    run(cfg, earlier)
    before = file_digests(earlier)

    def no_space(fig, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(plots, "save_figure", no_space)
    failing = tmp_path / "failing"
    with pytest.raises(OSError, match="No space left"):
        run(cfg, failing)
    status = json.loads((failing / "status.json").read_text())
    assert status["status"] == "failed" and "No space left" in status["error"]
    assert not (failing / "auc.json").exists()
    assert file_digests(earlier) == before


def test_same_seed_gives_identical_metrics_and_scores_and_another_seed_does_not(tmp_path, pythia_data_dir):
    common = [*TINY_PYTHIA, f"paths.data_dir={pythia_data_dir}", *FAST_TRAINER, "evaluator.plots=false"]
    for seed in (3, 3, 4):
        result = run_cli(*common, f"seed={seed}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    runs = sorted(tmp_path.glob("outputs/*/*/auc.json"), key=lambda p: p.parent.name)
    seeds = [json.loads((p.parent / "run_info.json").read_text())["config"]["seed"] for p in runs]
    by_seed = {}
    for path, seed in zip(runs, seeds, strict=True):
        with h5py.File(path.parent / "scores.h5") as f:
            by_seed.setdefault(seed, []).append((json.loads(path.read_text())["signals"], f["score"][:]))
    (signals_a, scores_a), (signals_b, scores_b) = by_seed[3]
    assert json.dumps(signals_a, sort_keys=True) == json.dumps(signals_b, sort_keys=True)
    np.testing.assert_array_equal(scores_a, scores_b)
    ((_, scores_other),) = by_seed[4]
    assert not np.array_equal(scores_a, scores_other)
