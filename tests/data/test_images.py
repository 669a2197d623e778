import numpy as np
import pytest

from hepad_cli.data.images import jet_images, jet_images_reference, jet_kinematics
from tests.conftest import four_vectors, toy_jets


def random_jets(n_jets: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pt = rng.exponential(20.0, (n_jets, 200))
    pt[:, rng.integers(5, 200) :] = 0.0  # zero padding
    eta = rng.normal(0.3, 0.5, (n_jets, 200))
    phi = rng.normal(3.0, 0.5, (n_jets, 200))  # straddles the ±π wrap
    return four_vectors(pt, eta, phi)


@pytest.mark.parametrize(("size", "radius", "normalise"), [(16, 0.8, True), (25, 1.0, False), (7, 0.4, True)])
def test_vectorised_images_equal_the_per_jet_histogram2d_reference(size, radius, normalise):
    jets = random_jets(300, seed=size)
    fast = jet_images(jets, size=size, radius=radius, normalise=normalise)
    reference = jet_images_reference(jets, size=size, radius=radius, normalise=normalise)
    assert fast.shape == (300, size, size)
    assert fast.dtype == np.float32
    np.testing.assert_array_equal(fast, reference)


def test_constituents_on_bin_edges_fall_where_histogram2d_puts_them():
    edges = np.linspace(-0.8, 0.8, 17)
    # One jet with a dominant particle on the axis and soft particles exactly on interior and outer edges.
    jet_axis = four_vectors(np.array([1000.0]), np.array([0.0]), np.array([0.0]))
    deta = np.array([edges[3], edges[-1], edges[0], 0.9, -0.81])
    soft = four_vectors(np.full(5, 1e-3), deta, np.zeros(5))
    jets = np.zeros((1, 200, 4))
    jets[0, :1] = jet_axis
    jets[0, 1:6] = soft
    np.testing.assert_array_equal(
        jet_images(jets, normalise=False), jet_images_reference(jets, normalise=False)
    )


def test_images_sum_to_one_and_empty_jets_stay_empty():
    jets = np.concatenate([random_jets(5, seed=1), np.zeros((1, 200, 4))])
    images = jet_images(jets)
    np.testing.assert_allclose(images[:5].sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert images[5].sum() == 0


def test_jet_four_vector_is_the_sum_of_constituents():
    jets = toy_jets(4, 3, np.random.default_rng(0))
    kin = jet_kinematics(jets)
    total = jets.sum(axis=1)
    np.testing.assert_allclose(kin.pt, np.hypot(total[:, 1], total[:, 2]))
    mass_squared = total[:, 0] ** 2 - (total[:, 1:] ** 2).sum(1)
    np.testing.assert_allclose(kin.mass, np.sqrt(mass_squared), rtol=1e-6)
    assert (np.abs(kin.delta_phi) <= np.pi).all()


@pytest.mark.parametrize("size", [0, -3, 2.5])
def test_bad_image_size_is_refused(size):
    with pytest.raises(ValueError, match="size"):
        jet_images(random_jets(2, 0), size=size)
