"""The variational autoencoder of the jet-feature notebook (DESIGN.md, reference system 2), generalised.

Encoder: Flatten → Dense(h, act) for h in ``hidden`` → (μ, log σ²), each Dense(latent_dim).
Decoder: Dense(h, act) for h in ``decoder_hidden`` (default: ``hidden`` reversed) → Dense(n_features)
→ reshaped to the input shape. Any input shape works: images are flattened.

Loss per event = reconstruction + β·KL, with reconstruction the sum (``reconstruction="sum"``, as in the
notebook) or mean of squared errors over the features and KL = −½ Σ (1 + log σ² − μ² − σ²) against a unit
Gaussian prior; the batch loss is the mean over events. Training samples z = μ + σ·ε (seeded); the history
keeps ``reconstruction_loss`` and ``kl_loss`` next to ``loss`` (and their ``val_`` versions).

Scores (higher = more anomalous), computed deterministically with z = μ: ``reconstruction`` (the squared
error as in the loss), ``kl`` (the KL term of the event) and ``total`` (reconstruction + β·KL). ``scores``
lists those reported; the first one is the primary score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.io import atomic_path
from hepad_cli.models.base import Detector, check_latent_dim
from hepad_cli.models.training import TrainerSettings, fit_keras, seed_everything

SCORES = ("reconstruction", "kl", "total")
ACTIVATIONS = ("elu", "relu", "tanh", "sigmoid", "selu", "gelu", "swish", "leaky_relu", "linear")


def _check_sizes(name: str, sizes: object) -> list[int]:
    if not isinstance(sizes, list | tuple) or any(
        isinstance(h, bool) or not isinstance(h, int) or h <= 0 for h in sizes
    ):
        raise ConfigError(f"model.{name} must be a list of positive integers (e.g. [10]), got {sizes!r}")
    return list(sizes)


def _check_activation(name: str, value: object) -> str:
    if value not in ACTIVATIONS:
        raise ConfigError(f"model.{name} must be one of {list(ACTIVATIONS)}, got {value!r}")
    return str(value)


def _vae_model_class():
    """The Keras model training encoder + decoder with the VAE loss (defined lazily: keras imports slowly)."""
    import keras
    import tensorflow as tf
    from keras import ops

    class VAETrainer(keras.Model):
        """Wraps the encoder and decoder; custom train/test steps track the loss and its two terms."""

        def __init__(self, encoder, decoder, beta: float, reduction: str, seed: int, **kwargs):
            super().__init__(**kwargs)
            self.encoder = encoder
            self.decoder = decoder
            self.beta = float(beta)
            self.reduction = reduction
            self.sampling_seed = keras.random.SeedGenerator(seed)
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
            self.kl_tracker = keras.metrics.Mean(name="kl_loss")

        @property
        def metrics(self):
            return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

        def call(self, x, training=False):
            mu, _ = self.encoder(x, training=training)
            return self.decoder(mu, training=training)

        def _terms(self, x, training: bool):
            mu, log_var = self.encoder(x, training=training)
            epsilon = keras.random.normal(ops.shape(mu), seed=self.sampling_seed)
            z = mu + ops.exp(0.5 * log_var) * epsilon
            output = self.decoder(z, training=training)
            squared = ops.reshape(ops.square(output - x), (ops.shape(x)[0], -1))
            reconstruction = (
                ops.sum(squared, axis=1) if self.reduction == "sum" else ops.mean(squared, axis=1)
            )
            kl = -0.5 * ops.sum(1.0 + log_var - ops.square(mu) - ops.exp(log_var), axis=1)
            reconstruction, kl = ops.mean(reconstruction), ops.mean(kl)
            return reconstruction + self.beta * kl, reconstruction, kl

        def _update(self, total, reconstruction, kl):
            self.loss_tracker.update_state(total)
            self.reconstruction_tracker.update_state(reconstruction)
            self.kl_tracker.update_state(kl)
            return {metric.name: metric.result() for metric in self.metrics}

        def train_step(self, data):
            x = data[0] if isinstance(data, tuple) else data
            with tf.GradientTape() as tape:
                total, reconstruction, kl = self._terms(x, training=True)
            gradients = tape.gradient(total, self.trainable_weights)
            self.optimizer.apply_gradients(zip(gradients, self.trainable_weights, strict=True))
            return self._update(total, reconstruction, kl)

        def test_step(self, data):
            x = data[0] if isinstance(data, tuple) else data
            return self._update(*self._terms(x, training=False))

    return VAETrainer


class VariationalAutoencoder(Detector):
    """VAE on any event shape; scores reconstruction error, KL term or their sum (see the module doc)."""

    score_batch_size = 4096

    def __init__(
        self,
        latent_dim: int = 5,
        hidden: list[int] | tuple[int, ...] = (10,),
        decoder_hidden: list[int] | tuple[int, ...] | None = None,
        activation: str = "elu",
        beta: float = 1.0,
        reconstruction: str = "sum",
        scores: list[str] | tuple[str, ...] = ("reconstruction", "kl", "total"),
        trainer: dict | None = None,
        seed: int = 0,
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden = list(hidden) if isinstance(hidden, list | tuple) else hidden
        self.decoder_hidden = (
            list(decoder_hidden) if isinstance(decoder_hidden, list | tuple) else decoder_hidden
        )
        self.activation = activation
        self.beta = beta
        self.reconstruction = reconstruction
        self.scores = list(scores) if isinstance(scores, list | tuple) else scores
        self.trainer = dict(trainer or {})
        self.seed = seed
        check_latent_dim(latent_dim)
        _check_sizes("hidden", self.hidden)
        if decoder_hidden is not None:
            _check_sizes("decoder_hidden", self.decoder_hidden)
        _check_activation("activation", activation)
        if isinstance(beta, bool) or not isinstance(beta, int | float) or not np.isfinite(beta) or beta < 0:
            raise ConfigError(f"model.beta must be a non-negative number (1.0 in the notebook), got {beta!r}")
        if reconstruction not in ("sum", "mean"):
            raise ConfigError(
                f"model.reconstruction must be 'sum' (the notebook) or 'mean', got {reconstruction!r}"
            )
        if (
            not isinstance(self.scores, list)
            or not self.scores
            or any(s not in SCORES for s in self.scores)
            or len(set(self.scores)) != len(self.scores)
        ):
            raise ConfigError(
                f"model.scores must be a non-empty list of distinct names from {list(SCORES)} "
                f"(the first is the primary score), got {scores!r}"
            )
        TrainerSettings.from_config(self.trainer)

    @property
    def score_name(self) -> str:
        return f"vae_{self.scores[0]}"

    @property
    def score_names(self) -> list[str]:
        return [f"vae_{name}" for name in self.scores]

    # --- model ---------------------------------------------------------------------------------------

    def build(self, event_shape: tuple[int, ...]):
        """(encoder, decoder) as plain functional Keras models: only standard layers, safe to reload."""
        import keras
        from keras import layers

        n_features = int(np.prod(event_shape))
        check_latent_dim(self.latent_dim, n_features)
        inputs = keras.Input(event_shape, name="event")
        x = layers.Flatten()(inputs)
        for i, size in enumerate(self.hidden):
            x = layers.Dense(size, activation=self.activation, name=f"encoder_dense_{i}")(x)
        mu = layers.Dense(self.latent_dim, name="latent_mu")(x)
        log_var = layers.Dense(self.latent_dim, name="latent_log_var")(x)
        encoder = keras.Model(inputs, [mu, log_var], name="encoder")

        latent = keras.Input((self.latent_dim,), name="z")
        y = latent
        decoder_hidden = self.decoder_hidden if self.decoder_hidden is not None else self.hidden[::-1]
        for i, size in enumerate(decoder_hidden):
            y = layers.Dense(size, activation=self.activation, name=f"decoder_dense_{i}")(y)
        y = layers.Dense(n_features, name="decoder_output")(y)
        decoder = keras.Model(latent, layers.Reshape(event_shape)(y), name="decoder")
        return encoder, decoder

    def fit(self, x_train: np.ndarray, x_val: np.ndarray | None = None) -> VariationalAutoencoder:
        seed_everything(self.seed)
        self.event_shape_ = tuple(int(v) for v in x_train.shape[1:])
        self.encoder_, self.decoder_ = self.build(self.event_shape_)
        trainer = _vae_model_class()(self.encoder_, self.decoder_, self.beta, self.reconstruction, self.seed)
        trainer(x_train[:1])  # build the wrapper's weights before compiling
        x_val = x_train[:0] if x_val is None else x_val
        self.history_ = fit_keras(
            trainer,
            x_train,
            x_train,
            x_val,
            x_val,
            TrainerSettings.from_config(self.trainer),
            loss=None,
            seed=self.seed,
        )
        return self

    # --- scoring -------------------------------------------------------------------------------------

    def _batches(self, x: np.ndarray):
        for start in range(0, len(x), self.score_batch_size):
            yield x[start : start + self.score_batch_size]

    def _terms(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Per-event reconstruction error and KL term, float64, with z = μ."""
        mu, log_var = (np.asarray(t, dtype=np.float64) for t in self.encoder_(batch, training=False))
        output = np.asarray(self.decoder_(mu.astype(np.float32), training=False), dtype=np.float64)
        squared = ((output - batch) ** 2).reshape(len(batch), -1)
        reconstruction = squared.sum(axis=1) if self.reconstruction == "sum" else squared.mean(axis=1)
        kl = -0.5 * np.sum(1.0 + log_var - mu**2 - np.exp(log_var), axis=1)
        return {"reconstruction": reconstruction, "kl": kl, "total": reconstruction + self.beta * kl}

    def score_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every configured score, keyed by its reported name (primary first)."""
        parts = [self._terms(batch) for batch in self._batches(x)]
        return {
            f"vae_{name}": np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)
            for name in self.scores
        }

    def score(self, x: np.ndarray) -> np.ndarray:
        parts = [self._terms(batch)[self.scores[0]] for batch in self._batches(x)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """μ of each event: (n, latent_dim)."""
        parts = [np.asarray(self.encoder_(batch, training=False)[0]) for batch in self._batches(x)]
        return np.concatenate(parts) if parts else np.zeros((0, self.latent_dim), np.float32)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """Decoder output at z = μ, same shape as x."""
        parts = [
            np.asarray(self.decoder_(self.encoder_(batch, training=False)[0], training=False))
            for batch in self._batches(x)
        ]
        return np.concatenate(parts) if parts else np.zeros_like(x)

    # --- persistence ---------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self._save_params(directory)
        for name, model in (("encoder", self.encoder_), ("decoder", self.decoder_)):
            with atomic_path(directory / f"{name}.keras", suffix=".partial.keras") as tmp:
                model.save(tmp)

    @classmethod
    def load(cls, directory: str | Path) -> VariationalAutoencoder:
        import keras

        directory = Path(directory)
        detector = cls(**cls._read_params(directory))
        detector.encoder_ = keras.saving.load_model(directory / "encoder.keras", safe_mode=True)
        detector.decoder_ = keras.saving.load_model(directory / "decoder.keras", safe_mode=True)
        detector.event_shape_ = tuple(int(v) for v in detector.encoder_.input_shape[1:])
        return detector
