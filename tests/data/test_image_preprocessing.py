"""Standard jet-image preprocessing (center, rotate, flip): the compiled path against the per-jet
reference, and what each step does to an image."""

from __future__ import annotations

import numpy as np
import pytest

from hepad_cli.data.images import jet_images, jet_images_reference
from hepad_cli.data.jets import ImageSettings
from hepad_cli.errors import DataError
from tests.conftest import toy_jets

ALL_STEPS = ("center", "rotate", "flip")


@pytest.fixture(scope="module")
def jets() -> np.ndarray:
    """1300 toy jets of one to three prongs: more than two blocks of the fast path."""
    rng = np.random.default_rng(31)
    return np.concatenate([toy_jets(400, 1, rng), toy_jets(400, 2, rng), toy_jets(500, 3, rng)])


@pytest.mark.parametrize(
    "steps", [("center",), ("rotate",), ("flip",), ("center", "rotate"), ALL_STEPS, ["flip", "center"]]
)
def test_fast_path_agrees_with_the_per_jet_reference(jets, steps):
    fast = jet_images(jets, preprocess=steps)
    np.testing.assert_allclose(fast, jet_images_reference(jets, preprocess=steps), atol=1e-7)
    assert not np.array_equal(fast, jet_images(jets))  # the steps change the images


def pixel_coordinates(size: int = 16, radius: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    centres = np.linspace(-radius, radius, size + 1)
    centres = (centres[:-1] + centres[1:]) / 2
    return np.meshgrid(centres, centres, indexing="ij")  # (Δη, Δφ) of each pixel


def moments(images: np.ndarray):
    """pT-weighted centroid and second moments of each image over its pixel centres."""
    eta, phi = pixel_coordinates()
    weight = images / images.sum(axis=(1, 2), keepdims=True)
    mean_eta, mean_phi = (weight * eta).sum((1, 2)), (weight * phi).sum((1, 2))
    u, v = eta - mean_eta[:, None, None], phi - mean_phi[:, None, None]
    return mean_eta, mean_phi, (weight * u * u).sum((1, 2)), (weight * v * v).sum((1, 2))


def test_center_puts_the_pt_centroid_at_the_image_centre(jets):
    raw_eta, raw_phi, _, _ = moments(jet_images(jets))
    eta, phi, _, _ = moments(jet_images(jets, preprocess=["center"]))
    pixel = 1.6 / 16
    assert np.abs(raw_eta).max() > pixel  # the jet axis is not the pT centroid for multi-prong jets
    # Within a pixel (binning and the particles outside the image are the rest).
    assert np.quantile(np.abs(eta), 0.95) < pixel / 2 and np.quantile(np.abs(phi), 0.95) < pixel / 2


def test_rotate_turns_the_principal_axis_onto_the_eta_axis(jets):
    _, _, raw_eta2, raw_phi2 = moments(jet_images(jets))
    _, _, eta2, phi2 = moments(jet_images(jets, preprocess=["center", "rotate"]))
    elongated = raw_eta2 + raw_phi2 > 0.01
    assert (eta2 >= phi2)[elongated].mean() > 0.97
    assert (raw_eta2 >= raw_phi2)[elongated].mean() < 0.7


def test_flip_puts_the_harder_half_on_the_positive_side(jets):
    eta, phi = pixel_coordinates()
    images = jet_images(jets, preprocess=ALL_STEPS)
    for coordinate in (eta, phi):
        positive = (images * (coordinate > 0)).sum((1, 2))
        negative = (images * (coordinate < 0)).sum((1, 2))
        assert (positive >= negative).mean() > 0.97
    raw = jet_images(jets)
    assert ((raw * (eta > 0)).sum((1, 2)) >= (raw * (eta < 0)).sum((1, 2))).mean() < 0.7


def test_preprocessed_images_stay_normalised(jets):
    totals = jet_images(jets, preprocess=ALL_STEPS).sum(axis=(1, 2))
    np.testing.assert_allclose(totals, 1.0, rtol=1e-5)


@pytest.mark.parametrize("steps", [["centre"], ["flip", "flip"], "rotate"])
def test_unknown_or_repeated_steps_name_the_key(steps):
    with pytest.raises(DataError, match=r"data.image.preprocess must be a list of distinct steps"):
        ImageSettings(size=16, radius=0.8, normalise=True, preprocess=steps)
