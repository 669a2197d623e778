"""The fast paths give the numbers of their straightforward references.

Images: jet_images (compiled, blockwise) == jet_images_reference (per-jet np.histogram2d), bit for bit.
Reader: read_jet_images (streaming, read-ahead thread) == pandas.read_hdf + the same transform.
Scores: the exported NumPy scorer == the Keras model to 1e-5; bulk scoring == model.predict.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hepad_cli.data import images as image_module
from hepad_cli.data.images import (
    images_into,
    jet_images,
    jet_images_reference,
    jet_images_with_observables,
    jet_kinematics,
)
from tests.conftest import four_vectors, toy_jets


def awkward_jets(n_jets: int, seed: int, n_constituents: int = 200) -> np.ndarray:
    """Random jets with everything a reader meets: varying multiplicity, zero padding, jets across the
    ±π seam, rows with pT = 0 but E and pz set, an empty jet, and particles far outside the image."""
    rng = np.random.default_rng(seed)
    pt = rng.exponential(20.0, (n_jets, n_constituents))
    multiplicity = rng.integers(1, n_constituents + 1, n_jets)
    pt[np.arange(n_constituents)[None, :] >= multiplicity[:, None]] = 0.0
    eta = rng.normal(0.0, 0.6, (n_jets, 1)) + rng.normal(0, 0.5, (n_jets, n_constituents))
    phi = rng.choice([0.3, 3.1, -3.1], (n_jets, 1)) + rng.normal(0, 0.5, (n_jets, n_constituents))
    jets = four_vectors(pt, eta, phi)
    jets[::7, -1] = [5.0, 0.0, 0.0, 4.0]  # along the beam: in the jet sum, not in the image
    jets[3] = 0.0  # an empty jet
    return jets


@pytest.mark.parametrize(
    ("size", "radius", "normalise"), [(16, 0.8, True), (16, 0.8, False), (25, 1.0, True), (7, 0.35, True)]
)
def test_images_equal_the_per_jet_histogram2d_reference_bit_for_bit(size, radius, normalise):
    jets = awkward_jets(1300, seed=size)  # more than two blocks of BLOCK_JETS
    fast = jet_images(jets, size=size, radius=radius, normalise=normalise)
    reference = jet_images_reference(jets, size=size, radius=radius, normalise=normalise)
    assert fast.dtype == np.float32 and fast.shape == (1300, size, size)
    np.testing.assert_array_equal(fast, reference)
    assert fast[3].sum() == 0


def test_images_of_particles_on_every_pixel_edge_equal_the_reference():
    size, radius = 16, 0.8
    edges = np.linspace(-radius, radius, size + 1)
    jet = np.zeros((1, 200, 4))
    jet[0, 0] = four_vectors(np.array([1e4]), np.array([0.0]), np.array([0.0]))[0]  # fixes the axis
    kin = jet_kinematics(jet)
    # Soft particles placed so that Δη and Δφ land exactly on the edges (and just outside the image).
    targets = np.r_[edges, radius + 1e-9, -radius - 1e-9]
    n = len(targets)
    soft = four_vectors(np.full(n, 1e-9), targets + kin.eta[0], targets[::-1] + kin.phi[0])
    jet[0, 1 : n + 1] = soft
    for normalise in (True, False):
        np.testing.assert_array_equal(
            jet_images(jet, normalise=normalise), jet_images_reference(jet, normalise=normalise)
        )


def test_images_of_float32_strided_and_short_inputs_equal_the_reference():
    jets = awkward_jets(200, seed=5, n_constituents=30)
    np.testing.assert_array_equal(jet_images(jets), jet_images_reference(jets))
    as_float32 = jets.astype(np.float32)
    np.testing.assert_array_equal(jet_images(as_float32), jet_images_reference(as_float32))
    # A strided view, as the reader passes rows of its record buffer: read in place, same images.
    wide = np.zeros((200, 30, 6))
    wide[..., 1:5] = jets
    strided = wide[..., 1:5]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(jet_images(strided), jet_images_reference(jets))
    assert jet_images(np.zeros((0, 200, 4))).shape == (0, 16, 16)


def test_jet_observables_equal_the_reference_kinematics():
    jets = awkward_jets(700, seed=8)
    _, pt, mass = jet_images_with_observables(jets)
    kin = jet_kinematics(jets)
    np.testing.assert_array_equal(pt, kin.pt)
    np.testing.assert_array_equal(mass, kin.mass)


def test_non_finite_jets_are_flagged_and_imaged_like_the_reference():
    jets = awkward_jets(20, seed=9)
    jets[4, 2, 1] = np.nan
    jets[11, 0, 3] = np.inf
    out = np.empty((20, 16, 16), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, _, finite = images_into(jets, out)
        reference = jet_images_reference(jets)
    np.testing.assert_array_equal(np.flatnonzero(~finite), [4, 11])
    np.testing.assert_array_equal(out[finite], reference[finite])


def test_blocks_reuse_their_buffers_without_leaking_between_calls(monkeypatch):
    monkeypatch.setattr(image_module, "BLOCK_JETS", 64)
    first, second = awkward_jets(150, seed=1), awkward_jets(90, seed=2)
    np.testing.assert_array_equal(jet_images(first), jet_images_reference(first))
    np.testing.assert_array_equal(jet_images(second), jet_images_reference(second))
    np.testing.assert_array_equal(jet_images(first[:5]), jet_images_reference(first[:5]))


# ----------------------------------------------------------------------------------------------------
# The streaming reader


@pytest.fixture
def big_toptagging_file(tmp_path):
    """2500 jets (written in pieces, as the generator and the published files are) in the layout."""
    from hepad_cli.data.toptagging_format import write_toptagging_h5

    rng = np.random.default_rng(3)
    path = tmp_path / "train.h5"
    for piece in range(5):
        jets = toy_jets(500, 1 + piece % 3, rng)
        write_toptagging_h5(path, jets, rng.integers(0, 2, 500), append=True)
    return path


@pytest.mark.parametrize("window", [512, 97])
def test_streaming_reader_equals_pandas_read_hdf(big_toptagging_file, monkeypatch, window):
    import pandas as pd

    from hepad_cli.data import jets as jets_module
    from hepad_cli.data.jets import ImageSettings, read_jet_images

    monkeypatch.setattr(jets_module, "READ_WINDOW", window)
    frame = pd.read_hdf(big_toptagging_file, "table")
    constituents = frame.iloc[:, :800].to_numpy().reshape(len(frame), 200, 4)
    jets = read_jet_images(big_toptagging_file, ImageSettings(size=16, radius=0.8, normalise=True))
    np.testing.assert_array_equal(jets.images[..., 0], jet_images_reference(constituents))
    np.testing.assert_array_equal(jets.is_signal, frame["is_signal_new"].to_numpy())
    kin = jet_kinematics(constituents)
    np.testing.assert_array_equal(jets.mass, kin.mass.astype(np.float32))
    np.testing.assert_array_equal(jets.pt, kin.pt.astype(np.float32))

    rows = np.array([2499, 0, 5, 511, 512, 1024, 1500, 1501, 7])
    subset = read_jet_images(
        big_toptagging_file, ImageSettings(size=9, radius=0.5, normalise=True), rows=rows
    )
    np.testing.assert_array_equal(
        subset.images[..., 0], jet_images_reference(constituents[np.sort(rows)], size=9, radius=0.5)
    )


def test_read_ahead_blocks_equal_plain_blocks_and_stop_cleanly(big_toptagging_file):
    import threading

    from hepad_cli.data.toptagging_format import iter_record_blocks

    plain = [b.records.copy() for b in iter_record_blocks(big_toptagging_file, chunk_size=300)]
    ahead = [b.records.copy() for b in iter_record_blocks(big_toptagging_file, chunk_size=300, prefetch=2)]
    assert len(plain) == len(ahead) == 9
    for a, b in zip(plain, ahead, strict=True):
        np.testing.assert_array_equal(a, b)
    before = threading.active_count()
    for i, _ in enumerate(iter_record_blocks(big_toptagging_file, chunk_size=100, prefetch=2)):
        if i == 3:
            break  # the generator is closed here: its reader thread must end
    assert threading.active_count() == before


def test_reader_names_the_row_of_a_non_finite_jet(tmp_path):
    from hepad_cli.data.jets import ImageSettings, read_jet_images
    from hepad_cli.data.samples import DataError
    from hepad_cli.data.toptagging_format import write_toptagging_h5

    jets = toy_jets(40, 1, np.random.default_rng(0))
    jets[17, 3, 2] = np.nan
    path = tmp_path / "bad.h5"
    write_toptagging_h5(path, jets, np.zeros(40))
    with pytest.raises(DataError, match="row 17"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        read_jet_images(path, ImageSettings(size=16, radius=0.8, normalise=True))


# ----------------------------------------------------------------------------------------------------
# Scores


def keras_mse(model, x: np.ndarray) -> np.ndarray:
    reconstruction = np.asarray(model.predict(x, verbose=0), dtype=np.float64).reshape(len(x), -1)
    return np.mean((reconstruction - x.reshape(len(x), -1)) ** 2, axis=1)


def dense_models():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    yield (
        "relu chain",
        keras.Sequential(
            [
                keras.Input((57,)),
                layers.Dense(16, activation="relu"),
                layers.Dense(3),
                layers.Dense(16, activation="relu"),
                layers.Dense(57),
            ]
        ),
    )
    yield (
        "activations, no bias, BatchNorm, Dropout, nested",
        keras.Sequential(
            [
                keras.Input((19, 3)),
                layers.Flatten(),
                keras.Sequential(
                    [
                        layers.Dense(24, use_bias=False),
                        layers.BatchNormalization(),
                        layers.LeakyReLU(0.1),
                        layers.Dropout(0.3),
                        layers.Dense(12, activation="elu"),
                        layers.Dense(5, activation="tanh"),
                    ]
                ),
                layers.Dense(12, activation="selu"),
                layers.Dense(20, activation="sigmoid"),
                layers.Dense(57),
                layers.Activation("softplus"),
                layers.Reshape((19, 3)),
            ]
        ),
    )


@pytest.mark.parametrize("case", [0, 1])
def test_numpy_scorer_equals_the_keras_model(tmp_path, case):
    from hepad_cli.export import DenseScorer, export_dense

    name, model = list(dense_models())[case]
    x = model.inputs[0].shape[1:]
    events = np.random.default_rng(case).standard_normal((3000, *x)).astype(np.float32)
    if case == 1:  # give BatchNormalization non-trivial statistics
        model.compile(optimizer="adam", loss="mse")
        model.fit(events, events, epochs=1, batch_size=256, verbose=0)
    expected = keras_mse(model, events)
    export_dense(model, tmp_path / "scorer.npz")
    scorer = DenseScorer.load(tmp_path / "scorer.npz")
    np.testing.assert_allclose(scorer.score(events), expected, rtol=1e-5, err_msg=name)
    one = np.array([scorer.score_one(event) for event in events[:300]])
    np.testing.assert_allclose(one, expected[:300], rtol=1e-5, err_msg=name)
    assert (tmp_path / "scorer.npz").stat().st_size < 20_000


def test_export_refuses_what_it_cannot_represent():
    import keras
    from keras import layers

    from hepad_cli.export import ExportError, export_dense

    conv = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(2, 3, padding="same"), layers.Flatten()])
    with pytest.raises(ExportError, match="Conv2D"):
        export_dense(conv)
    not_an_autoencoder = keras.Sequential([keras.Input((10,)), layers.Dense(4)])
    with pytest.raises(ExportError, match="not an autoencoder"):
        export_dense(not_an_autoencoder)
    softmax = keras.Sequential([keras.Input((10,)), layers.Dense(10, activation="softmax")])
    with pytest.raises(ExportError, match="softmax"):
        export_dense(softmax)


def test_exported_detector_and_bulk_scores_equal_predict(tmp_path):
    from hepad_cli.export import export_dense
    from hepad_cli.models.autoencoder import KerasAutoencoder
    from hepad_cli.models.conv_ae import ConvAutoencoder

    _, model = next(dense_models())
    detector = KerasAutoencoder()
    detector.networks_ = {"model": model}
    events = np.random.default_rng(7).standard_normal((9000, 57)).astype(np.float32)
    expected = keras_mse(model, events)
    np.testing.assert_allclose(detector.score(events), expected, rtol=1e-5)
    np.testing.assert_allclose(export_dense(detector).score(events), expected, rtol=1e-5)

    conv = ConvAutoencoder(latent_dim=2, filters=8)
    conv.networks_ = {"model": conv.build((16, 16, 1))[0]}
    images = np.random.default_rng(8).dirichlet(np.full(256, 0.1), 5000).astype(np.float32)
    images = images.reshape(-1, 16, 16, 1)
    np.testing.assert_allclose(conv.score(images), keras_mse(conv.model_, images), rtol=1e-5)
