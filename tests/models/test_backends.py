"""Every Keras detector trains, saves, loads and scores under each Keras backend; saved models load on
another backend; data-parallel training over two virtual CPU devices; mixed precision end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_cli

BACKENDS = [
    "tensorflow",
    "jax",
    pytest.param(
        "torch",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("torch") is None,
            reason="PyTorch is not installed (pip install .[torch])",
        ),
    ),
]
EXAMPLE = REPO / "tests" / "extension_example"


def worker(backend: str, out_dir: Path, *args: str, env: dict | None = None) -> dict:
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "tests.models.backend_worker", str(out_dir), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((out_dir / "result.json").read_text())


@pytest.fixture(scope="module")
def saved_by_tensorflow(tmp_path_factory) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("tensorflow")
    return out_dir, worker("tensorflow", out_dir)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_keras_detector_trains_saves_loads_and_scores(backend, saved_by_tensorflow, tmp_path):
    tf_dir, tf_result = saved_by_tensorflow
    result = tf_result if backend == "tensorflow" else worker(backend, tmp_path, str(tf_dir))
    assert result["backend"] == backend
    assert set(result["detectors"]) == {"conv_ae", "dense_ae", "vae", "fuzzy_and"}
    for name, entry in result["detectors"].items():
        scores = np.array(entry["scores"])
        assert np.isfinite(scores).all() and scores.std() > 0, name
        np.testing.assert_allclose(entry["after_load"], scores, rtol=1e-6, atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(entry["same_seed_again"], scores, err_msg=f"{name}: same seed")
        assert "loss" in entry["history_keys"] and "val_loss" in entry["history_keys"], name
        assert entry["compute"]["keras_backend"] == backend and entry["compute"]["device"] == "cpu"
        if backend != "tensorflow":
            # A model saved under TensorFlow scores the same events identically here.
            np.testing.assert_allclose(
                entry["loaded_from_other_backend"],
                tf_result["detectors"][name]["scores"],
                rtol=1e-4,
                atol=1e-7,
                err_msg=name,
            )


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_data_parallel_training_over_two_virtual_cpu_devices(backend, tmp_path):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = worker(backend, tmp_path, "--devices", "2", env=env)
    for name, entry in result["detectors"].items():
        assert entry["compute"]["distribute"] == "data_parallel", name
        scores = np.array(entry["scores"])
        assert np.isfinite(scores).all() and scores.std() > 0, name
        np.testing.assert_allclose(entry["after_load"], scores, rtol=1e-6, atol=1e-12, err_msg=name)


def without_tensorflow(directory: Path) -> dict:
    """Environment of a machine with JAX but no TensorFlow (as GPU nodes often are): a ``tensorflow``
    package first on the path that fails to import, as a missing one does."""
    package = directory / "tensorflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError(\"No module named 'tensorflow'\")\n")
    return {"KERAS_BACKEND": "jax", "PYTHONPATH": str(directory)}


def test_a_jax_run_without_tensorflow_writes_the_whole_output_contract(tmp_path, pythia_data_dir):
    from tests.conftest import FAST_TRAINER, TINY_PYTHIA
    from tests.test_cli import CONTRACT

    result = run_cli(
        *TINY_PYTHIA,
        *FAST_TRAINER,
        f"paths.data_dir={pythia_data_dir}",
        "hydra.run.dir=run",
        cwd=tmp_path,
        env=without_tensorflow(tmp_path / "no-tensorflow"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"
    for name in [*CONTRACT, "history.png", "latent.png", "reconstructions.png", "model/model.keras"]:
        assert (run_dir / name).is_file(), name
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["compute"]["keras_backend"] == "jax"
    report = json.loads((run_dir / "auc.json").read_text())
    assert set(report["signals"]) == {"top", "w", "z"}


@pytest.mark.parametrize(
    ("backend", "overrides", "env"),
    [
        ("jax", ["trainer.precision=mixed_bfloat16"], {}),
        ("tensorflow", ["trainer.precision=mixed_float16", "trainer.device_resident=true"], {}),
        (
            "jax",
            ["trainer.distribute=data_parallel", "trainer.batch_size=64"],
            {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        ),
    ],
)
def test_precision_residency_and_distribution_run_end_to_end(backend, overrides, env, tmp_path):
    result = run_cli(
        f"hydra.searchpath=[file://{EXAMPLE / 'conf'}]",
        "data=gaussian_blobs",
        "model=dense_ae",
        "model.latent_dim=3",
        "trainer.epochs=3",
        "trainer.progress_bar=false",
        "evaluator.n_bootstrap=0",
        *overrides,
        "hydra.run.dir=run",
        cwd=tmp_path,
        env={"KERAS_BACKEND": backend, "PYTHONPATH": str(EXAMPLE), **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    settings = dict(o.split("=", 1) for o in overrides)
    assert info["compute"]["keras_backend"] == backend
    assert info["compute"]["precision"] == settings.get("trainer.precision", "float32")
    assert info["compute"]["distribute"] == settings.get("trainer.distribute", "none")
    assert info["compute"]["device_resident"] is (settings.get("trainer.device_resident") == "true")
    report = json.loads((tmp_path / "run" / "auc.json").read_text())
    assert report["signals"]["shifted"]["auc"] > 0.6
