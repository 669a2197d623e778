import numpy as np
import pytest

from hepad_cli.errors import ConfigError
from hepad_cli.models.conv_ae import ConvAutoencoder
from hepad_cli.models.pca import PCAReconstruction


def images(n: int, seed: int, concentration: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(64, concentration), n).reshape(n, 8, 8, 1).astype(np.float32)


def test_pca_score_matches_a_straightforward_reconstruction_error():
    from sklearn.decomposition import PCA

    x = images(300, 0)
    detector = PCAReconstruction(latent_dim=3).fit(x)
    flat = x.reshape(300, -1).astype(np.float64)
    reference = PCA(3, svd_solver="full").fit(flat)
    residual = flat - reference.inverse_transform(reference.transform(flat))
    np.testing.assert_allclose(detector.score(x), (residual**2).mean(1), rtol=1e-6, atol=1e-12)
    assert detector.encode(x).shape == (300, 3)


def test_pca_round_trips_through_save_and_load(tmp_path):
    x = images(100, 1)
    detector = PCAReconstruction(latent_dim=2).fit(x)
    detector.save(tmp_path)
    np.testing.assert_array_equal(PCAReconstruction.load(tmp_path).score(x), detector.score(x))


def test_latent_dim_larger_than_the_input_is_refused():
    with pytest.raises(ConfigError, match="latent_dim=65 is larger than the input"):
        PCAReconstruction(latent_dim=65).fit(images(100, 2))
    with pytest.raises(ConfigError, match="positive integer"):
        PCAReconstruction(latent_dim=0)


TINY_TRAINER = {"epochs": 2, "batch_size": 32, "progress_bar": False}


def test_conv_ae_same_seed_gives_identical_scores_and_reloads_safely(tmp_path):
    x = images(160, 3)
    first = ConvAutoencoder(latent_dim=2, filters=8, trainer=TINY_TRAINER, seed=5).fit(x[:120], x[120:])
    second = ConvAutoencoder(latent_dim=2, filters=8, trainer=TINY_TRAINER, seed=5).fit(x[:120], x[120:])
    np.testing.assert_array_equal(first.score(x), second.score(x))
    assert set(first.history_) >= {"loss", "val_loss"}
    first.save(tmp_path)
    np.testing.assert_allclose(ConvAutoencoder.load(tmp_path).score(x), first.score(x), rtol=1e-6)
    # Output is a softmax over pixels: every reconstruction is a normalised image.
    np.testing.assert_allclose(first.reconstruct(x[:5]).sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)


def test_conv_ae_score_is_the_per_event_mean_squared_error():
    x = images(64, 4)
    detector = ConvAutoencoder(latent_dim=2, filters=8, trainer=TINY_TRAINER, seed=1).fit(x[:48], x[48:])
    reconstruction = detector.reconstruct(x).astype(np.float64)
    expected = ((reconstruction - x) ** 2).reshape(64, -1).mean(1)
    np.testing.assert_allclose(detector.score(x), expected, rtol=1e-5)


def test_adam_epsilon_below_the_pixel_gradients_lets_the_conv_ae_weights_move():
    # Normalised 8x8 images: pixels ~1/64, so the MSE gradients are far below Adam's default epsilon 1e-7,
    # which then shrinks every step; trainer.epsilon=1e-12 lets Adam take steps of about the learning rate.
    x = images(128, 6)

    def encoder_kernel(learning_rate: float, epsilon: float) -> np.ndarray:
        trainer = {**TINY_TRAINER, "epochs": 1, "learning_rate": learning_rate, "epsilon": epsilon}
        detector = ConvAutoencoder(latent_dim=2, filters=8, trainer=trainer, seed=2).fit(x[:96], x[96:])
        encoder = detector.networks_["model"].get_layer("encoder")
        return np.asarray(encoder.layers[1].kernel)  # the second convolution

    initial = encoder_kernel(1e-30, 1e-12)  # the same seed's starting weights, moved by nothing visible
    moved_default = np.median(np.abs(encoder_kernel(1e-3, 1e-7) - initial))
    moved_small = np.median(np.abs(encoder_kernel(1e-3, 1e-12) - initial))
    assert moved_small > 1e-4, moved_small  # three steps of about 1e-3
    assert moved_small > 20 * moved_default, (moved_small, moved_default)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trainer": {"epochs": "ten"}}, "trainer.epochs"),
        ({"trainer": {"batch_size": 0}}, "trainer.batch_size"),
        ({"trainer": {"epoch": 3}}, "unknown trainer keys"),
        ({"trainer": {"epsilon": 0}}, "trainer.epsilon"),
        ({"filters": -1}, "model.filters"),
    ],
)
def test_bad_training_settings_fail_before_any_work(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ConvAutoencoder(**kwargs)


def test_conv_ae_refuses_images_it_cannot_halve_twice():
    x = np.random.default_rng(0).random((20, 10, 10, 1)).astype(np.float32)
    with pytest.raises(ConfigError, match="divisible by 4"):
        ConvAutoencoder(trainer=TINY_TRAINER).fit(x, x)


def test_a_keras_model_holding_code_is_refused_and_its_code_never_runs(tmp_path):
    """Keras safe mode: a Lambda layer's Python code (here: it writes a file) is not deserialised."""
    import keras

    x = images(64, 6)
    ConvAutoencoder(latent_dim=2, filters=8, trainer=TINY_TRAINER, seed=1).fit(x[:48], x[48:]).save(tmp_path)
    marker = tmp_path / "the-code-ran"
    inputs = keras.Input((8, 8, 1))
    writes_a_file = keras.layers.Lambda(
        lambda t, path: (open(path, "w").write("ran"), t)[1],  # noqa: SIM115 - the point is a side effect
        arguments={"path": str(marker)},
    )
    outputs = writes_a_file(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "model.keras")  # in place of the detector's network
    marker.unlink()  # building the model above ran the lambda once, here in the test
    with pytest.raises(ValueError, match="safe_mode"):
        ConvAutoencoder.load(tmp_path)
    assert not marker.exists()
