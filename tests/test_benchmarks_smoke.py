"""The benchmark suite at tiny sizes (`make bench-smoke`), so it cannot rot between full runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

FIGURES = {
    "images",
    "toptagging",
    "pythia_per_core",
    "pythia_two_cores",
    "training",
    "trigger",
    "bulk",
    "bulk_conv",
    "files_images",
    "files_score",
    "help",
    "tau32",
    "tracking",
    "tracking_unreachable",
}


@pytest.mark.slow
def test_smoke_benchmark_prints_one_table_and_writes_results(tmp_path):
    output = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke", "--output", str(output)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("figure")).split()
    assert header == ["figure", "baseline", "ours", "ratio", "target", "met?"]
    results = json.loads(output.read_text())
    assert results["mode"] == "smoke"
    assert set(results["figures"]) == FIGURES
    for name, figure in results["figures"].items():
        assert figure["ours"]["repeats"] >= 1, name
        assert name in result.stdout
    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["memory_bytes"] > 0 and machine["cpu"]
    assert machine["packages"]["numpy"]
    # The fast paths give the same numbers as their references even at smoke sizes.
    figures = results["figures"]
    assert figures["images"]["identical_to_reference"] and figures["images"]["identical_to_loop"]
    assert figures["toptagging"]["equal_to_pandas"]
    assert figures["trigger"]["max_relative_difference"] <= 1e-5
    assert figures["bulk"]["max_relative_difference"] <= 1e-5
    assert figures["files_score"]["max_relative_difference"] <= 1e-5
    assert figures["files_images"]["share_equal_images"] >= 0.9
    assert figures["tau32"]["equal_to_reference"]


def test_smoke_refuses_to_overwrite_the_committed_results(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--output" in result.stderr


def test_unknown_figure_is_refused_with_the_choices(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke", "--only", "imgs", "--output", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "images" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_gpu_benchmark_runs_on_the_cpu_says_so_and_still_compares_with_the_plain_loop(tmp_path, backend):
    output = tmp_path / "results-gpu.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--gpu", "--smoke", "--output", str(output)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(output.read_text())["figures"]
    assert set(figures) == {"gpu_conv_ae_b128", "gpu_dense_ae_b256_spe4_host", "gpu_conv_ae_best"}
    assert "CPU (no accelerator)" in result.stdout
    for name in ("gpu_conv_ae_b128", "gpu_dense_ae_b256_spe4_host"):
        figure = figures[name]
        device = figure["device"]
        assert device["keras_backend"] == backend and device["accelerators"] == []
        assert device["note"] == "no accelerator: both sides ran on the CPU"
        # Both sides trained the same network: the plain loop's rate is measured and the ratio follows.
        assert figure["plain"]["events_per_s"] > 0 and figure["hepad"]["events_per_s"] > 0
        assert figure["ratio"] == pytest.approx(
            figure["hepad"]["events_per_s"] / figure["plain"]["events_per_s"]
        )
        assert figure["hepad"]["final_loss"] > 0 and figure["plain"]["final_loss"] > 0
    # Without an accelerator the 1M jets/s target is not judged.
    assert figures["gpu_conv_ae_best"]["met"] is None
