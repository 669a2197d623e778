"""N-subjettiness τ32: the vectorised path against the straightforward per-jet loop, and its physics."""

from __future__ import annotations

import numpy as np
import pytest

from hepad_cli.data.jets import ImageSettings, read_jet_images
from hepad_cli.data.substructure import tau32, tau32_reference
from hepad_cli.data.toptagging_format import write_toptagging_h5
from tests.conftest import four_vectors, toy_jets


def random_jets(rng: np.random.Generator) -> np.ndarray:
    """Toy jets of one to three prongs, anywhere in φ (the axes wrap around ±π), plus a jet of one,
    two and three particles."""
    jets = np.concatenate([toy_jets(3, prongs, rng) for prongs in (1, 2, 3)])
    few = np.zeros((3, 200, 4))
    for n in (1, 2, 3):
        few[n - 1, :n] = four_vectors(
            rng.uniform(50, 300, n), rng.normal(0, 0.3, n), rng.uniform(-np.pi, np.pi, n)
        )
    return np.concatenate([jets, few])[rng.permutation(12)]


def test_tau32_agrees_with_the_per_jet_reference_on_random_jets():
    rng = np.random.default_rng(21)
    jets = random_jets(rng)
    np.testing.assert_allclose(tau32(jets), tau32_reference(jets), rtol=1e-12, atol=1e-15)
    # Axes from only the 8 hardest particles: the same approximation on both sides.
    np.testing.assert_allclose(tau32(jets, axes_from=8), tau32_reference(jets, axes_from=8), rtol=1e-12)


def test_tau32_with_axes_from_every_particle_is_the_exact_exclusive_kt_definition():
    rng = np.random.default_rng(22)
    jets = toy_jets(4, 3, rng)
    np.testing.assert_allclose(tau32(jets, axes_from=200), tau32_reference(jets, axes_from=None), rtol=1e-12)


def test_tau32_of_jets_with_at_most_three_particles():
    rng = np.random.default_rng(23)
    jets = np.zeros((3, 200, 4))
    for n in (1, 2, 3):
        jets[n - 1, :n] = four_vectors(rng.uniform(50, 300, n), rng.normal(0, 0.3, n), rng.normal(0, 0.3, n))
    values = tau32(jets)
    # One or two particles: no radiation is left for a third axis (defined as 0); three: τ3 = 0 exactly.
    np.testing.assert_array_equal(values, [0.0, 0.0, 0.0])


def test_three_prong_jets_have_lower_tau32_than_one_prong_jets():
    rng = np.random.default_rng(24)
    one, three = tau32(toy_jets(60, 1, rng)), tau32(toy_jets(60, 3, rng))
    assert np.median(three) < np.median(one) - 0.1
    assert ((0 <= one) & (one <= 1.2)).all() and ((0 <= three) & (three <= 1.2)).all()


def test_tau32_does_not_depend_on_the_constituent_order_or_the_padding():
    rng = np.random.default_rng(25)
    jets = toy_jets(20, 3, rng)
    shuffled = jets[:, rng.permutation(200)]
    np.testing.assert_allclose(tau32(shuffled), tau32(jets), rtol=1e-12)
    np.testing.assert_allclose(tau32(jets[:, :120]), tau32(jets), rtol=1e-12)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_jets, n_constituents, 4"):
        tau32(np.zeros((3, 200)))
    with pytest.raises(ValueError, match="axes_from"):
        tau32(np.zeros((3, 200, 4)), axes_from=2)


def test_the_reader_stores_tau32_as_an_observable_never_as_an_input(tmp_path):
    rng = np.random.default_rng(26)
    constituents = np.concatenate([toy_jets(30, 1, rng), toy_jets(30, 3, rng)])
    path = tmp_path / "val.h5"
    write_toptagging_h5(path, constituents, np.r_[np.zeros(30), np.ones(30)])
    settings = ImageSettings(size=16, radius=0.8, normalise=True)
    jets = read_jet_images(path, settings, with_tau32=True)
    np.testing.assert_allclose(jets.tau32, tau32(constituents), rtol=1e-6)  # stored as float32
    sample = jets.as_sample()
    assert set(sample.observables) == {"mass", "pt", "tau32"}
    np.testing.assert_array_equal(sample.events, read_jet_images(path, settings).images)
    assert read_jet_images(path, settings).tau32 is None
