"""What every Keras autoencoder shares: one network ``model`` (with an ``encoder`` part), MSE loss, and the
per-event reconstruction error as score. Subclasses build the network (``build``)."""

from __future__ import annotations

import numpy as np

from hepad_cli.models.keras_detector import KerasDetector


class KerasAutoencoder(KerasDetector):
    """Subclasses define ``build(event_shape) -> (autoencoder, encoder)``; score = per-event MSE."""

    score_name = "reconstruction_mse"
    has_latent_space = True
    reconstructs_input = True

    def build(self, event_shape: tuple[int, ...]):
        raise NotImplementedError

    def build_networks(self, event_shape: tuple[int, ...]) -> dict:
        autoencoder, _ = self.build(event_shape)
        return {"model": autoencoder}

    def forward(self, networks, inputs, training, seed_generator):
        return networks["model"](inputs, training=training)

    def loss_terms(self, inputs, targets, outputs, networks) -> dict:
        from keras import ops

        return {"loss": ops.mean(ops.square(outputs - inputs))}

    def score_batch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per-event mean squared reconstruction error (float64)."""
        reconstruction = np.asarray(self.predict("model", x), dtype=np.float64)
        return {self.score_name: np.mean((reconstruction - x).reshape(len(x), -1) ** 2, axis=1)}

    @property
    def encoder_(self):
        return self.networks_["model"].get_layer("encoder")

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        parts = [self.predict("model", batch) for batch in self.batches(x)]
        return np.concatenate(parts) if parts else np.zeros_like(x)

    def encode(self, x: np.ndarray) -> np.ndarray:
        parts = [np.asarray(self.encoder_.predict_on_batch(batch), np.float32) for batch in self.batches(x)]
        return np.concatenate(parts).reshape(len(x), -1) if parts else np.zeros((0, 0), np.float32)

    @property
    def model_(self):
        """The trained autoencoder (input → reconstruction)."""
        return self.networks_["model"]
