"""Pythia + FastJet jet generation: physics cuts, truth matching, determinism, workers, cache."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hepad_cli.data.generation import (
    GenerationError,
    GenerationSettings,
    ensure_sample,
    generate_sample,
    sample_path,
)
from hepad_cli.data.toptagging_format import iter_chunks

N_JETS = 25
SEED = 3


def read_sample(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(constituents (n, 200, 4), is_signal (n,), truth (n, 4)) through the layout reader."""
    chunks = list(iter_chunks(path))
    return (
        np.concatenate([c.constituents for c in chunks]),
        np.concatenate([c.is_signal for c in chunks]),
        np.concatenate([c.truth for c in chunks]),
    )


def pt_eta_phi(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pT, pseudorapidity and phi of (..., 4) four-vectors (E, px, py, pz)."""
    pt = np.hypot(p4[..., 1], p4[..., 2])
    return pt, np.arcsinh(p4[..., 3] / pt), np.arctan2(p4[..., 2], p4[..., 1])


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    """One tiny QCD and one tiny top sample, generated once for this module."""
    directory = tmp_path_factory.mktemp("generated")
    return {
        process: generate_sample(
            GenerationSettings(process, N_JETS, SEED),
            directory / f"{process}.h5",
            n_workers=1,
            progress=False,
        )
        for process in ("qcd", "top")
    }


@pytest.mark.slow
@pytest.mark.parametrize("process", ["qcd", "top"])
def test_jets_pass_the_cuts_and_are_pt_ordered_and_padded(generated, process):
    constituents, is_signal, truth = read_sample(generated[process])
    assert constituents.shape == (N_JETS, 200, 4)
    # The jet is the sum of its constituents; the window was applied to exactly that.
    jet_pt, jet_eta, _ = pt_eta_phi(constituents.sum(axis=1))
    assert np.all((jet_pt >= 550 - 1e-6) & (jet_pt <= 650 + 1e-6)), jet_pt
    assert np.all(np.abs(jet_eta) < 2.0)
    pt = np.hypot(constituents[..., 1], constituents[..., 2])
    assert np.all(np.diff(pt, axis=1) <= 1e-9), "constituents are not pT-ordered"
    n_real = (constituents[..., 0] > 0).sum(axis=1)
    assert np.all(n_real >= 2) and np.all(n_real < 200)
    for jet, n in zip(constituents, n_real, strict=True):
        assert np.all(jet[n:] == 0), "padding is not zeros"
        assert np.all(jet[:n, 0] > 0)
    # Visible final-state particles are on-shell: E >= |p| up to rounding.
    real = constituents[constituents[..., 0] > 0]
    assert np.all(real[:, 0] ** 2 - (real[:, 1:] ** 2).sum(axis=1) > -1e-6 * real[:, 0] ** 2)
    np.testing.assert_array_equal(is_signal, np.full(N_JETS, int(process == "top")))
    if process == "qcd":
        assert np.all(truth == 0)


@pytest.mark.slow
def test_top_jets_are_truth_matched_to_their_top(generated):
    constituents, _, truth = read_sample(generated["top"])
    assert np.all(np.any(truth != 0, axis=1))
    _, jet_eta, jet_phi = pt_eta_phi(constituents.sum(axis=1))
    top_pt, top_eta, top_phi = pt_eta_phi(truth)
    delta_phi = (jet_phi - top_phi + np.pi) % (2 * np.pi) - np.pi
    assert np.all(np.hypot(jet_eta - top_eta, delta_phi) < 0.8)
    top_mass = np.sqrt(truth[:, 0] ** 2 - (truth[:, 1:] ** 2).sum(axis=1))
    # Breit-Wigner around m_t (with its tails): the truth columns really hold the top.
    assert abs(np.median(top_mass) - 172.5) < 3 and np.all((top_mass > 100) & (top_mass < 250))
    assert np.all(top_pt > 400)
    # A contained hadronic top makes a massive jet; QCD jets of this pT are mostly far lighter.
    jet = constituents.sum(axis=1)
    jet_mass = np.sqrt(np.maximum(jet[:, 0] ** 2 - (jet[:, 1:] ** 2).sum(axis=1), 0))
    assert np.median(jet_mass) > 120


@pytest.mark.slow
def test_same_settings_give_identical_files_and_another_seed_differs(generated, tmp_path):
    again = generate_sample(GenerationSettings("qcd", N_JETS, SEED), tmp_path / "again.h5", 1, progress=False)
    other = generate_sample(
        GenerationSettings("qcd", N_JETS, SEED + 1), tmp_path / "other.h5", 1, progress=False
    )
    reference = read_sample(generated["qcd"])
    for a, b in zip(reference, read_sample(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(reference[0], read_sample(other)[0])


@pytest.mark.slow
def test_two_workers_make_exactly_the_requested_jets_in_worker_order(generated, tmp_path):
    path = generate_sample(
        GenerationSettings("qcd", 11, SEED), tmp_path / "two.h5", n_workers=2, progress=False
    )
    constituents, is_signal, _ = read_sample(path)
    assert constituents.shape == (11, 200, 4) and np.all(is_signal == 0)
    # Worker 0 (6 jets) uses the seed of the one-worker run, so its jets come first and are the same.
    one_worker = read_sample(generated["qcd"])[0]
    np.testing.assert_array_equal(constituents[:6], one_worker[:6])
    assert not np.array_equal(constituents[6], one_worker[6])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.h5"], "temporary files left behind"


@pytest.mark.slow
def test_worker_error_surfaces_and_leaves_no_file(tmp_path):
    # A pTHat window far below the jet window: the worker gives up after its event budget.
    settings = GenerationSettings("qcd", 5, SEED, pthat_min=20.0, pthat_max=30.0, mpi=False)
    with pytest.raises(GenerationError, match=r"worker 0 \(qcd\) failed.*no qcd jet with pT in \[550"):
        generate_sample(settings, tmp_path / "never.h5", n_workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_ensure_sample_reuses_the_cached_file(tmp_path, caplog):
    settings = GenerationSettings("qcd", 4, SEED)
    caplog.set_level("INFO", logger="hepad_cli.data.generation")
    path = ensure_sample(settings, tmp_path, n_workers=1, progress=False)
    assert path == tmp_path / "pythia" / f"qcd_4_{settings.cache_key()}.h5" == sample_path(settings, tmp_path)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["n_jets"] == 4 and sidecar["settings"]["process"] == "qcd"
    assert sidecar["versions"]["pythia8mc"]
    assert sidecar["generation_seconds"] > 0
    mtime = path.stat().st_mtime_ns
    caplog.clear()
    assert ensure_sample(settings, tmp_path, n_workers=1, progress=False) == path
    assert path.stat().st_mtime_ns == mtime
    assert "reusing" in caplog.text and "generating" not in caplog.text


@pytest.mark.slow
def test_concurrent_ensure_sample_generates_once(tmp_path):
    script = tmp_path / "ensure.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import logging
            from hepad_cli.data.generation import GenerationSettings, ensure_sample

            if __name__ == "__main__":
                logging.basicConfig(level=logging.INFO, format="%(message)s")
                settings = GenerationSettings("qcd", 6, {SEED})
                ensure_sample(settings, {str(tmp_path / "data")!r}, n_workers=1, progress=False)
            """
        )
    )
    runs = [
        subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    logs = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], logs
    text = "\n".join(logs)
    assert text.count("generating 6 qcd jets") == 1 and text.count("reusing") == 1, text
    path = sample_path(GenerationSettings("qcd", 6, SEED), tmp_path / "data")
    assert read_sample(path)[0].shape == (6, 200, 4)


def test_cache_key_is_stable_and_covers_every_setting():
    settings = GenerationSettings("top", 100, 1)
    assert settings.cache_key() == GenerationSettings("top", 100, 1).cache_key()
    assert len(settings.cache_key()) == 12
    changed = [
        GenerationSettings("w", 100, 1),
        GenerationSettings("top", 101, 1),
        GenerationSettings("top", 100, 2),
        GenerationSettings("top", 100, 1, jet_radius=1.0),
        GenerationSettings("top", 100, 1, pthat_max=800.0),
        GenerationSettings("top", 100, 1, mpi=False),
    ]
    assert len({settings.cache_key(), *(s.cache_key() for s in changed)}) == len(changed) + 1
    # A YAML integer and a float of the same value are the same setting.
    assert GenerationSettings("top", 100, 1, jet_pt_min=550).cache_key() == settings.cache_key()


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"process": "higgs"}, "'higgs'"),
        ({"n_jets": 0}, "0"),
        ({"jet_pt_min": 700.0}, "700.0"),
        ({"jet_radius": -0.4}, "-0.4"),
        ({"max_constituents": 0}, "0"),
        ({"max_constituents": 201}, "201"),
        ({"pthat_min": 900.0, "pthat_max": 800.0}, "900.0"),
        ({"jet_radius": "wide"}, "'wide'"),
    ],
)
def test_invalid_settings_name_the_bad_value(kwargs, bad):
    arguments = {"process": "qcd", "n_jets": 10, "seed": 1} | kwargs
    with pytest.raises(ValueError, match=bad) as error:
        GenerationSettings(**arguments)
    assert next(iter(kwargs)) in str(error.value)
