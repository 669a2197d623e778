"""The detector zoo: VAE, dense AE, IsolationForest, one-class SVM, Gaussian mixture.

Each is checked against a straightforward reference, for separation on a clearly different signal, for
save/load without pickle, and (through the pipeline) for seeing background training events only.
"""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from sklearn.metrics import roc_auc_score

from hepad_cli.errors import ConfigError
from hepad_cli.models.dense_ae import DenseAutoencoder
from hepad_cli.models.keras_detector import KerasDetector
from hepad_cli.models.sklearn_detectors import (
    GaussianMixtureDetector,
    IsolationForestDetector,
    OneClassSVMDetector,
)
from hepad_cli.models.vae import VariationalAutoencoder

TINY_TRAINER = {"epochs": 3, "batch_size": 64, "progress_bar": False}


def correlated_background(n: int, n_features: int, rng: np.random.Generator) -> np.ndarray:
    """Standardised-looking features on a low-dimensional manifold plus noise (what an AE can learn)."""
    latent = rng.normal(size=(n, 3))
    mixing = np.random.default_rng(100).normal(size=(3, n_features))
    return (latent @ mixing / np.sqrt(3) + 0.3 * rng.normal(size=(n, n_features))).astype(np.float32)


def clearly_different_signal(n: int, n_features: int, rng: np.random.Generator) -> np.ndarray:
    """Off the background manifold: shifted and wider in every feature."""
    return (2.0 + 1.5 * rng.normal(size=(n, n_features))).astype(np.float32)


@pytest.fixture(scope="module")
def feature_data():
    rng = np.random.default_rng(0)
    background = correlated_background(1400, 16, rng)
    return background[:800], background[800:1000], background[1000:], clearly_different_signal(300, 16, rng)


def detector_zoo():
    return {
        "vae": VariationalAutoencoder(
            latent_dim=3, hidden=[16], trainer={**TINY_TRAINER, "epochs": 20}, seed=1
        ),
        "dense_ae": DenseAutoencoder(
            latent_dim=3, encoder_hidden=[12], trainer={**TINY_TRAINER, "epochs": 20}, seed=1
        ),
        "iforest": IsolationForestDetector(seed=1),
        "ocsvm": OneClassSVMDetector(nu=0.1, max_train_events=500, seed=1),
        "gmm": GaussianMixtureDetector(n_components=2, seed=1),
    }


@pytest.mark.parametrize("name", ["vae", "dense_ae", "iforest", "ocsvm", "gmm"])
def test_every_detector_separates_a_clearly_different_signal(name, feature_data):
    train, val, test, signal = feature_data
    detector = detector_zoo()[name].fit(train, val)
    scores = {"background": detector.score(test), "signal": detector.score(signal)}
    auc = roc_auc_score(
        np.r_[np.zeros(len(test)), np.ones(len(signal))], np.r_[scores["background"], scores["signal"]]
    )
    assert auc > 0.7, (name, auc)
    all_scores = detector.score_all(signal)
    assert list(all_scores) == detector.score_names
    for values in all_scores.values():
        assert values.shape == (len(signal),) and np.isfinite(values).all()


@pytest.mark.parametrize("name", ["vae", "dense_ae", "iforest", "ocsvm", "gmm"])
def test_save_and_load_give_the_same_scores_without_pickle(name, feature_data, tmp_path):
    train, val, test, _ = feature_data
    detector = detector_zoo()[name]
    if isinstance(detector, KerasDetector):
        detector.trainer["epochs"] = 2
    detector.fit(train[:300], val)
    detector.save(tmp_path)
    for path in tmp_path.iterdir():
        assert path.suffix in (".json", ".npz", ".keras", ".skops"), path  # no pickle, no joblib
    loaded = type(detector).load(tmp_path)
    np.testing.assert_allclose(loaded.score(test), detector.score(test), rtol=1e-6, atol=1e-9)


# --- scikit-learn detectors against scikit-learn itself ---------------------------------------------


def _any_python_function(x):
    return x


def test_a_saved_estimator_holding_other_types_is_refused(feature_data, tmp_path):
    """skops loads only the types a detector declares: a file with anything else is not loaded."""
    import skops.io
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from hepad_cli.errors import DataError

    train = feature_data[0]
    detector = GaussianMixtureDetector(n_components=2, seed=0).fit(train)
    detector.save(tmp_path)
    foreign = make_pipeline(FunctionTransformer(_any_python_function)).fit(train)
    skops.io.dump(foreign, tmp_path / "estimator.skops")
    with pytest.raises(DataError, match="refusing to load"):
        GaussianMixtureDetector.load(tmp_path)


@pytest.mark.parametrize("max_features", [1.0, 0.5])
def test_isolation_forest_scores_equal_scikit_learn(feature_data, max_features):
    from sklearn.ensemble import IsolationForest

    train, _, test, signal = feature_data
    detector = IsolationForestDetector(max_features=max_features, seed=4).fit(train)
    reference = IsolationForest(max_features=max_features, random_state=4).fit(train)
    x = np.r_[test, signal]
    np.testing.assert_allclose(detector.score(x), -reference.score_samples(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", ["rbf", "linear", "poly", "sigmoid"])
def test_one_class_svm_scores_equal_scikit_learn_on_the_subsample(feature_data, kernel):
    from sklearn.svm import OneClassSVM

    train, _, test, signal = feature_data
    detector = OneClassSVMDetector(kernel=kernel, max_train_events=300, seed=2).fit(train)
    assert detector.n_train_events_ == 300
    rows = np.sort(np.random.default_rng(2).choice(len(train), 300, replace=False))
    reference = OneClassSVM(kernel=kernel).fit(train[rows].astype(np.float64))
    x = np.r_[test, signal].astype(np.float64)
    expected = -reference.decision_function(x)
    np.testing.assert_allclose(detector.score(x), expected, rtol=1e-8, atol=1e-8 * np.abs(expected).max())


def test_one_class_svm_uses_every_event_below_the_subsample_size(feature_data):
    train = feature_data[0][:200]
    assert OneClassSVMDetector(max_train_events=10_000).fit(train).n_train_events_ == 200
    assert OneClassSVMDetector(max_train_events=None).fit(train).n_train_events_ == 200


def test_gaussian_mixture_score_is_the_negative_log_likelihood(feature_data):
    from scipy.stats import multivariate_normal

    train, _, test, _ = feature_data
    detector = GaussianMixtureDetector(n_components=2, seed=0).fit(train)
    model = detector.model_
    density = sum(
        w * multivariate_normal(m, c).pdf(test)
        for w, m, c in zip(model.weights_, model.means_, model.covariances_, strict=True)
    )
    np.testing.assert_allclose(detector.score(test), -np.log(density), rtol=1e-8)


# --- VAE ---------------------------------------------------------------------------------------------


def _dense(x: np.ndarray, layer, activation=None) -> np.ndarray:
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
    out = x @ kernel + bias
    if activation == "elu":
        out = np.where(out > 0, out, np.expm1(np.minimum(out, 0)))
    return out


def test_vae_scores_equal_a_numpy_forward_pass(feature_data):
    train, val, test, _ = feature_data
    vae = VariationalAutoencoder(latent_dim=4, hidden=[10], beta=0.5, trainer=TINY_TRAINER, seed=3).fit(
        train, val
    )
    x = test.astype(np.float64)
    hidden = _dense(x, vae.encoder_.get_layer("encoder_dense_0"), "elu")
    mu = _dense(hidden, vae.encoder_.get_layer("latent_mu"))
    log_var = _dense(hidden, vae.encoder_.get_layer("latent_log_var"))
    output = _dense(
        _dense(mu, vae.decoder_.get_layer("decoder_dense_0"), "elu"), vae.decoder_.get_layer("decoder_output")
    )
    reconstruction = ((output - x) ** 2).sum(axis=1)
    kl = -0.5 * (1 + log_var - mu**2 - np.exp(log_var)).sum(axis=1)
    scores = vae.score_all(test)
    assert list(scores) == ["vae_reconstruction", "vae_kl", "vae_total"]
    np.testing.assert_allclose(scores["vae_reconstruction"], reconstruction, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores["vae_kl"], kl, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores["vae_total"], reconstruction + 0.5 * kl, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(vae.score(test), scores["vae_reconstruction"])
    np.testing.assert_allclose(vae.encode(test), mu, rtol=1e-4, atol=1e-5)


def test_vae_history_keeps_the_kl_and_reconstruction_terms_apart(feature_data):
    train, val, _, _ = feature_data
    vae = VariationalAutoencoder(beta=2.0, trainer=TINY_TRAINER, seed=0).fit(train, val)
    history = vae.history_
    assert {
        "loss",
        "reconstruction_loss",
        "kl_loss",
        "val_loss",
        "val_reconstruction_loss",
        "val_kl_loss",
    } <= set(history)
    for prefix in ("", "val_"):
        np.testing.assert_allclose(
            history[f"{prefix}loss"],
            np.add(history[f"{prefix}reconstruction_loss"], 2.0 * np.asarray(history[f"{prefix}kl_loss"])),
            rtol=1e-5,
        )
    assert all(kl > 0 for kl in history["kl_loss"])


def test_vae_same_seed_same_scores_and_images_are_flattened():
    rng = np.random.default_rng(3)
    images = rng.dirichlet(np.full(64, 0.2), 200).reshape(200, 8, 8, 1).astype(np.float32)
    first = VariationalAutoencoder(latent_dim=2, trainer=TINY_TRAINER, seed=7).fit(images[:150], images[150:])
    second = VariationalAutoencoder(latent_dim=2, trainer=TINY_TRAINER, seed=7).fit(
        images[:150], images[150:]
    )
    np.testing.assert_array_equal(first.score(images), second.score(images))
    assert first.reconstruct(images[:5]).shape == (5, 8, 8, 1)
    assert first.encode(images[:5]).shape == (5, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": ["elbo"]}, "model.scores"),
        ({"scores": []}, "model.scores"),
        ({"beta": -1}, "model.beta"),
        ({"hidden": [10, 0]}, "model.hidden"),
        ({"activation": "elo"}, "model.activation"),
        ({"reconstruction": "max"}, "model.reconstruction"),
        ({"latent_dim": 0}, "model.latent_dim"),
        ({"trainer": {"epochs": 0}}, "trainer.epochs"),
    ],
)
def test_vae_bad_settings_fail_before_any_work(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        VariationalAutoencoder(**kwargs)


@pytest.mark.parametrize("cls", [VariationalAutoencoder, DenseAutoencoder])
def test_latent_dim_larger_than_the_input_is_refused(cls, feature_data):
    with pytest.raises(ConfigError, match="latent_dim=20 is larger than the input"):
        cls(latent_dim=20, trainer=TINY_TRAINER).fit(feature_data[0], feature_data[1])


# --- dense AE presets --------------------------------------------------------------------------------


def _model_config(name: str):
    with initialize_config_module("hepad_cli.conf", version_base="1.3"):
        return compose("config", overrides=[f"model={name}"]).model


@pytest.mark.parametrize(
    ("preset", "sizes", "n_parameters"),
    [
        ("dense_ae_notebook", [8, 57], 57 * 8 + 8 + 8 * 57 + 57),
        ("dense_ae", [8, 57], 57 * 8 + 8 + 8 * 57 + 57),
        # 57 -> 16 -> 3 -> 8 -> 16 -> 57 without biases except on the output layer, as the example code.
        ("dense_ae_challenge", [16, 3, 8, 16, 57], 57 * 16 + 16 * 3 + 3 * 8 + 8 * 16 + 16 * 57 + 57),
    ],
)
def test_dense_ae_presets_have_the_notebook_architectures(preset, sizes, n_parameters):
    import keras

    detector = instantiate(_model_config(preset), _convert_="all")
    model, encoder = detector.build((57,))
    layers = model.get_layer("encoder").layers + model.get_layer("decoder").layers
    dense = [layer for layer in layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == sizes
    assert model.count_params() == n_parameters
    assert encoder.output_shape == (None, detector.latent_dim)


def test_dense_ae_input_size_comes_from_the_data_and_score_is_the_mse():
    rng = np.random.default_rng(1)
    x = correlated_background(300, 57, rng)
    detector = DenseAutoencoder(latent_dim=8, trainer=TINY_TRAINER, seed=0).fit(x[:200], x[200:])
    reconstruction = detector.reconstruct(x).astype(np.float64)
    np.testing.assert_allclose(detector.score(x), ((reconstruction - x) ** 2).mean(axis=1), rtol=1e-5)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (IsolationForestDetector, {"n_estimators": 0}, "model.n_estimators"),
        (IsolationForestDetector, {"max_samples": 1.5}, "model.max_samples"),
        (OneClassSVMDetector, {"nu": 0}, "model.nu"),
        (OneClassSVMDetector, {"kernel": "cubic"}, "model.kernel"),
        (OneClassSVMDetector, {"max_train_events": 0}, "model.max_train_events"),
        (GaussianMixtureDetector, {"covariance_type": "dense"}, "model.covariance_type"),
        (DenseAutoencoder, {"encoder_hidden": [-3]}, "model.encoder_hidden"),
        (DenseAutoencoder, {"use_bias": "yes"}, "model.use_bias"),
    ],
)
def test_bad_detector_settings_name_the_key(cls, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        cls(**kwargs)


def test_gaussian_mixture_with_more_components_than_events_is_refused():
    with pytest.raises(ConfigError, match="n_components=8 exceeds the 5 background training events"):
        GaussianMixtureDetector(n_components=8).fit(np.zeros((5, 3), np.float32))


# --- through the pipeline: background training events only -------------------------------------------


@pytest.mark.parametrize("model", ["vae", "dense_ae", "iforest", "ocsvm", "gmm"])
def test_every_detector_is_fitted_on_background_training_events_only(model, tmp_path, monkeypatch):
    from hepad_cli.experiment import run
    from tests.data.test_hls4ml import toy_jet_features, toy_labels, write_openml_cache

    rng = np.random.default_rng(8)
    labels = toy_labels(rng, 80, 80, 30)
    write_openml_cache(tmp_path / "data", toy_jet_features(labels, rng), labels)
    with initialize_config_module("hepad_cli.conf", version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "data=hls4ml",
                f"model={model}",
                f"data.data_dir={tmp_path / 'data'}",
                "data.download=false",
                "trainer.epochs=1",
                "trainer.progress_bar=false",
                "evaluator.n_bootstrap=0",
                "evaluator.plots=false",
            ],
        )
    cls = instantiate(cfg.model, _convert_="all").__class__
    seen = []
    original_fit = cls.fit

    def recording_fit(self, train, val=None):
        seen.append((train.copy(), None if val is None else val.copy()))
        return original_fit(self, train, val)

    monkeypatch.setattr(cls, "fit", recording_fit)
    report = run(cfg, tmp_path / "run")
    samples = instantiate(cfg.data, _convert_="all").load()
    ((x_train, x_val),) = seen
    np.testing.assert_array_equal(x_train, samples.background_train)
    np.testing.assert_array_equal(x_val, samples.background_val)
    signal_rows = {row.tobytes() for x in samples.signals.values() for row in x}
    test_rows = {row.tobytes() for row in samples.background_test}
    for row in np.r_[x_train, x_val]:
        assert row.tobytes() not in signal_rows and row.tobytes() not in test_rows
    assert set(report.signals) == {"w", "z", "top"}
    latency = report.inference_seconds_per_event
    assert latency["batch_of_one"]["seconds_per_event"] > 0 and latency["bulk"]["seconds_per_event"] > 0


def test_vae_nan_loss_stops_training_with_a_clear_error():
    from hepad_cli.errors import TrainingError

    x = (np.random.default_rng(0).normal(size=(300, 16)) * 1e18).astype(np.float32)
    with pytest.raises(TrainingError, match="TerminateOnNaN"):
        VariationalAutoencoder(trainer=TINY_TRAINER).fit(x[:200], x[200:])
