"""Inputs the tests generate: format-exact Top Tagging files and tiny Pythia samples."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hepad_cli.data.toptagging_format import write_toptagging_h5

REPO = Path(__file__).resolve().parents[1]
HEPAD_RUN = Path(sys.executable).with_name("hepad-run")

# Tiny Pythia samples shared by the end-to-end tests: generated once per test session.
TINY_PYTHIA = ["data.n_background=240", "data.n_signal=60", "data.generation_seed=7"]
# Enough Pythia jets for a physics result: 180 background test jets resolve TPR at FPR 0.1.
PHYSICS_PYTHIA = [
    "data.n_background=900",
    "data.n_signal=300",
    "data.signals=[top]",
    "data.generation_seed=3",
]
FAST_TRAINER = [
    "trainer.epochs=2",
    "trainer.batch_size=64",
    "trainer.progress_bar=false",
    "evaluator.n_bootstrap=40",
]


def four_vectors(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """(..., 4) as (E, px, py, pz) of massless particles; pt in GeV."""
    vectors = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1)
    vectors[pt == 0] = 0.0
    return vectors


def toy_jets(n_jets: int, prongs: int, rng: np.random.Generator, jet_pt: float = 600.0) -> np.ndarray:
    """Jets of `prongs` collimated particle sprays, pT-ordered and zero-padded to 200 constituents."""
    constituents = np.zeros((n_jets, 200, 4))
    for i in range(n_jets):
        n_particles = int(rng.integers(20, 80))
        axes = rng.normal(0.0, 0.25, (prongs, 2)) if prongs > 1 else np.zeros((1, 2))
        prong = rng.integers(0, prongs, n_particles)
        eta = rng.uniform(-1.5, 1.5) + axes[prong, 0] + rng.normal(0, 0.05, n_particles)
        phi = rng.uniform(-np.pi, np.pi) + axes[prong, 1] + rng.normal(0, 0.05, n_particles)
        pt = np.sort(rng.exponential(jet_pt / n_particles, n_particles))[::-1]
        constituents[i, :n_particles] = four_vectors(pt, eta, phi)
    return constituents


@pytest.fixture
def toptagging_file(tmp_path: Path) -> Path:
    """A val.h5 in the published layout: 400 one-prong 'QCD' and 200 three-prong 'top' toy jets."""
    rng = np.random.default_rng(11)
    constituents = np.concatenate([toy_jets(400, 1, rng), toy_jets(200, 3, rng)])
    labels = np.r_[np.zeros(400), np.ones(200)]
    order = rng.permutation(len(labels))
    path = tmp_path / "toptagging" / "val.h5"
    path.parent.mkdir()
    write_toptagging_h5(path, constituents[order], labels[order])
    return path


def generated_data_dir(tmp_path_factory, name: str, overrides: list[str]) -> Path:
    """A fresh data directory with the Pythia samples of these overrides generated and cached."""
    from hydra.utils import instantiate

    data_dir = tmp_path_factory.mktemp(name)
    instantiate(compose_config(*overrides, f"paths.data_dir={data_dir}").data, _convert_="all").load()
    return data_dir


@pytest.fixture(scope="session")
def pythia_data_dir(tmp_path_factory) -> Path:
    """A data directory with the tiny Pythia samples of TINY_PYTHIA already generated and cached."""
    return generated_data_dir(tmp_path_factory, "pythia-cache", TINY_PYTHIA)


@pytest.fixture(scope="session")
def physics_data_dir(tmp_path_factory) -> Path:
    """A data directory with the PHYSICS_PYTHIA samples generated and cached."""
    return generated_data_dir(tmp_path_factory, "physics", PHYSICS_PYTHIA)


def compose_config(*overrides: str):
    """The composed config of hepad-run for these overrides (Hydra's compose API; no run directory)."""
    from hepad_cli.config import compose

    return compose(*overrides)


def build_dataset(name: str, data_dir, **settings):
    """The dataset conf/data/<name>.yaml describes, with ``data_dir`` and each given top-level setting
    replaced by the value given.

    Datasets take their defaults from their YAML file only, so tests build them the way a run does.
    """
    from omegaconf import OmegaConf

    from hepad_cli.experiment import instantiate_node

    node = OmegaConf.to_container(compose_config(f"data={name}").data, resolve=True)
    node.update({"data_dir": str(data_dir), **settings})
    return instantiate_node(OmegaConf.create(node))


def run_cli(
    *args: str, cwd: Path, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the installed console script the way a user does, capturing its output."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [str(HEPAD_RUN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment
    )


def in_small_filesystem(
    script: str, tmp_path: Path, options: str = "size=32m", env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run a shell script with a fresh tmpfs (mount ``options``) at $MNT, in a private mount namespace of a
    user namespace (no root needed); what the script copies to $OUT survives it. A real filesystem that
    fills up, for the disk-full tests."""
    mount_point, out = tmp_path / "mnt", tmp_path / "out"
    mount_point.mkdir()
    out.mkdir()
    prologue = f'mount -t tmpfs -o {options} tmpfs "$MNT" || exit 90\n'
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", prologue + script],
        env={
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "MNT": str(mount_point),
            "OUT": str(out),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode != 90, f"cannot mount a tmpfs in a user namespace here: {result.stderr}"
    return result
