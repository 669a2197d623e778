"""The variational autoencoder of the jet-feature notebook (reference system 2), generalised.

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

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.models.activations import check_activation
from hepad_cli.models.base import check_latent_dim
from hepad_cli.models.keras_detector import KerasDetector
from hepad_cli.validation import check_choice, check_int_list, check_number

SCORES = ("reconstruction", "kl", "total")


class VariationalAutoencoder(KerasDetector):
    """VAE on any event shape; scores reconstruction error, KL term or their sum (see the module doc)."""

    has_latent_space = True
    reconstructs_input = True
    loss_names = ("loss", "reconstruction_loss", "kl_loss")

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
        super().__init__(trainer=trainer, seed=seed)
        self.latent_dim = latent_dim
        self.hidden = list(hidden) if isinstance(hidden, list | tuple) else hidden
        self.decoder_hidden = (
            list(decoder_hidden) if isinstance(decoder_hidden, list | tuple) else decoder_hidden
        )
        self.activation = activation
        self.beta = beta
        self.reconstruction = reconstruction
        self.scores = list(scores) if isinstance(scores, list | tuple) else scores
        check_latent_dim(latent_dim)
        check_int_list("model.hidden", self.hidden)
        if decoder_hidden is not None:
            check_int_list("model.decoder_hidden", self.decoder_hidden)
        check_activation("model.activation", activation)
        check_number("model.beta", beta, low=0, hint="1.0 in the notebook")
        check_choice("model.reconstruction", reconstruction, ("sum", "mean"), hint="'sum' is the notebook's")
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

    @property
    def score_name(self) -> str:
        return f"vae_{self.scores[0]}"

    @property
    def score_names(self) -> list[str]:
        return [f"vae_{name}" for name in self.scores]

    # --- networks and training ------------------------------------------------------------------------

    def build_networks(self, event_shape: tuple[int, ...]) -> dict:
        """encoder: x → (μ, log σ²); decoder: z → x̂. Plain functional Keras models, safe to reload."""
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
        return {"encoder": encoder, "decoder": decoder}

    def forward(self, networks, inputs, training, seed_generator):
        """Training samples z = μ + σ·ε (seeded); returns the reconstruction, μ and log σ²."""
        import keras
        from keras import ops

        mu, log_var = networks["encoder"](inputs, training=training)
        epsilon = keras.random.normal(ops.shape(mu), dtype=mu.dtype, seed=seed_generator)
        z = mu + ops.exp(0.5 * log_var) * epsilon
        return networks["decoder"](z, training=training), mu, log_var

    def loss_terms(self, inputs, targets, outputs, networks) -> dict:
        from keras import ops

        output, mu, log_var = outputs
        squared = ops.reshape(ops.square(output - inputs), (ops.shape(inputs)[0], -1))
        reconstruction = (
            ops.sum(squared, axis=1) if self.reconstruction == "sum" else ops.mean(squared, axis=1)
        )
        kl = -0.5 * ops.sum(1.0 + log_var - ops.square(mu) - ops.exp(log_var), axis=1)
        reconstruction, kl = ops.mean(reconstruction), ops.mean(kl)
        return {"loss": reconstruction + self.beta * kl, "reconstruction_loss": reconstruction, "kl_loss": kl}

    # --- scoring -------------------------------------------------------------------------------------

    def score_batch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per-event reconstruction error and KL term, float64, with z = μ."""
        mu, log_var = (np.asarray(t, dtype=np.float64) for t in self.predict("encoder", x))
        output = np.asarray(self.predict("decoder", mu.astype(np.float32)), dtype=np.float64)
        squared = ((output - x) ** 2).reshape(len(x), -1)
        reconstruction = squared.sum(axis=1) if self.reconstruction == "sum" else squared.mean(axis=1)
        kl = -0.5 * np.sum(1.0 + log_var - mu**2 - np.exp(log_var), axis=1)
        terms = {"reconstruction": reconstruction, "kl": kl, "total": reconstruction + self.beta * kl}
        return {f"vae_{name}": terms[name] for name in self.scores}

    def encode(self, x: np.ndarray) -> np.ndarray:
        """μ of each event: (n, latent_dim)."""
        parts = [self.predict("encoder", batch)[0] for batch in self.batches(x)]
        return np.concatenate(parts) if parts else np.zeros((0, self.latent_dim), np.float32)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """Decoder output at z = μ, same shape as x."""
        parts = [self.predict("decoder", self.predict("encoder", batch)[0]) for batch in self.batches(x)]
        return np.concatenate(parts) if parts else np.zeros_like(x)

    @property
    def encoder_(self):
        return self.networks_["encoder"]

    @property
    def decoder_(self):
        return self.networks_["decoder"]
