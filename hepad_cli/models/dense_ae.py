"""Dense autoencoder of the trigger notebooks (reference system 3 of docs/design.md), sizes configurable.

Encoder: Flatten → Dense(h, act) for h in ``encoder_hidden`` → Dense(latent_dim, latent_activation).
Decoder: Dense(h, act) for h in ``decoder_hidden`` (default: ``encoder_hidden`` reversed) →
Dense(n_features, output_activation) (with bias) → reshaped to the input shape. ``latent_dim`` is the
bottleneck; the input size comes from the data. Score = per-event mean squared error, as ``mse_loss`` in
the notebooks.

Presets (conf/model/): ``dense_ae_notebook`` 57→8→57 with ReLU on the latent and on the output, and
``dense_ae_challenge`` 57→16→3→8→16→57 without biases in the hidden layers, as in the ADC2021 example
code (``Dense_AE.ipynb``).
"""

from __future__ import annotations

import numpy as np

from hepad_cli.models.activations import check_activation
from hepad_cli.models.autoencoder import KerasAutoencoder
from hepad_cli.models.base import check_latent_dim
from hepad_cli.validation import check_bool, check_int_list


class DenseAutoencoder(KerasAutoencoder):
    """A stack of Dense layers around a ``latent_dim`` bottleneck; works on any event shape."""

    def __init__(
        self,
        latent_dim: int = 8,
        encoder_hidden: list[int] | tuple[int, ...] = (),
        decoder_hidden: list[int] | tuple[int, ...] | None = None,
        activation: str = "relu",
        latent_activation: str = "linear",
        output_activation: str = "linear",
        use_bias: bool = True,
        trainer: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(trainer=trainer, seed=seed)
        self.latent_dim = latent_dim
        self.encoder_hidden = (
            list(encoder_hidden) if isinstance(encoder_hidden, list | tuple) else encoder_hidden
        )
        self.decoder_hidden = (
            list(decoder_hidden) if isinstance(decoder_hidden, list | tuple) else decoder_hidden
        )
        self.activation = activation
        self.latent_activation = latent_activation
        self.output_activation = output_activation
        self.use_bias = use_bias
        check_latent_dim(latent_dim)
        check_int_list("model.encoder_hidden", self.encoder_hidden)
        if decoder_hidden is not None:
            check_int_list("model.decoder_hidden", self.decoder_hidden)
        check_activation("model.activation", activation)
        check_activation("model.latent_activation", latent_activation)
        check_activation("model.output_activation", output_activation)
        check_bool("model.use_bias", use_bias)

    def build(self, event_shape: tuple[int, ...]):
        import keras
        from keras import layers

        n_features = int(np.prod(event_shape))
        check_latent_dim(self.latent_dim, n_features)
        encoder_layers = [keras.Input(event_shape), layers.Flatten()]
        encoder_layers += [
            layers.Dense(size, activation=self.activation, use_bias=self.use_bias)
            for size in self.encoder_hidden
        ]
        encoder_layers.append(
            layers.Dense(
                self.latent_dim, activation=self.latent_activation, use_bias=self.use_bias, name="latent"
            )
        )
        encoder = keras.Sequential(encoder_layers, name="encoder")
        decoder_hidden = self.decoder_hidden if self.decoder_hidden is not None else self.encoder_hidden[::-1]
        decoder_layers = [keras.Input((self.latent_dim,))]
        decoder_layers += [
            layers.Dense(size, activation=self.activation, use_bias=self.use_bias) for size in decoder_hidden
        ]
        decoder_layers += [
            layers.Dense(n_features, activation=self.output_activation, name="output"),
            layers.Reshape(event_shape),
        ]
        decoder = keras.Sequential(decoder_layers, name="decoder")
        inputs = keras.Input(event_shape)
        autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="dense_ae")
        return autoencoder, encoder
