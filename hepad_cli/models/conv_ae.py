"""The convolutional autoencoder of the top-jet image notebook (reference system 1 of docs/design.md)."""

from __future__ import annotations

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.models.autoencoder import KerasAutoencoder
from hepad_cli.models.base import check_latent_dim
from hepad_cli.validation import check_bool, check_int


class ConvAutoencoder(KerasAutoencoder):
    """Conv2D(f,k,s2,relu)×2 → Dense(latent) → Dense(4·4·f) → Conv2DTranspose(f,k,s2) →
    Conv2DTranspose(1,k,s2) → softmax over the pixels, so the output is a normalised image like the input.
    Input images (n, size, size, 1) with size divisible by 4.
    """

    def __init__(
        self,
        latent_dim: int = 2,
        filters: int = 128,
        kernel_size: int = 3,
        start_from_mean_image: bool = False,
        trainer: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(trainer=trainer, seed=seed)
        self.latent_dim = latent_dim
        self.filters = filters
        self.kernel_size = kernel_size
        self.start_from_mean_image = check_bool("model.start_from_mean_image", start_from_mean_image)
        check_latent_dim(latent_dim)
        check_int("model.filters", filters)
        check_int("model.kernel_size", kernel_size)

    def prepare(self, train) -> None:
        # The mean background training image, whose logarithm starts the decoder's output logits.
        self.mean_image_ = train.x.mean(axis=0, dtype=np.float64) if self.start_from_mean_image else None

    def build_networks(self, event_shape: tuple[int, ...]) -> dict:
        networks = super().build_networks(event_shape)
        if self.start_from_mean_image:
            offset = networks["model"].get_layer("decoder").get_layer("mean_image_logits")
            offset.set_weights([np.log(self.mean_image_.reshape(-1) + 1e-6).astype(np.float32)])
        return networks

    def build(self, event_shape: tuple[int, ...]):
        import keras
        from keras import layers

        from hepad_cli.models.layers import LogitOffset

        if len(event_shape) != 3 or event_shape[0] != event_shape[1] or event_shape[2] != 1:
            raise ConfigError(
                f"model=conv_ae needs square one-channel images (size, size, 1), got {event_shape}"
            )
        size = event_shape[0]
        if size % 4:
            raise ConfigError(
                f"model=conv_ae needs data.image.size divisible by 4 (two stride-2 layers), got {size}"
            )
        check_latent_dim(self.latent_dim, size * size)
        reduced = size // 4
        f, k = self.filters, self.kernel_size

        encoder = keras.Sequential(
            [
                keras.Input(event_shape),
                layers.Conv2D(f, k, strides=2, padding="same", activation="relu"),
                layers.Conv2D(f, k, strides=2, padding="same", activation="relu"),
                layers.Flatten(),
                layers.Dense(self.latent_dim, name="latent"),
            ],
            name="encoder",
        )
        decoder = keras.Sequential(
            [
                keras.Input((self.latent_dim,)),
                layers.Dense(reduced * reduced * f, activation="relu"),
                layers.Reshape((reduced, reduced, f)),
                layers.Conv2DTranspose(f, k, strides=2, padding="same", activation="relu"),
                layers.Conv2DTranspose(1, k, strides=2, padding="same"),
                layers.Reshape((size * size,)),
                *([LogitOffset(name="mean_image_logits")] if self.start_from_mean_image else []),
                layers.Softmax(),
                layers.Reshape(event_shape),
            ],
            name="decoder",
        )
        inputs = keras.Input(event_shape)
        autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="conv_ae")
        return autoencoder, encoder
