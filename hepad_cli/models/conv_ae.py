"""The convolutional autoencoder of the top-jet image notebook (reference system 1 of docs/design.md)."""

from __future__ import annotations

from hepad_cli.errors import ConfigError
from hepad_cli.models.autoencoder import KerasAutoencoder
from hepad_cli.models.base import check_latent_dim
from hepad_cli.validation import check_int


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
        trainer: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(trainer=trainer, seed=seed)
        self.latent_dim = latent_dim
        self.filters = filters
        self.kernel_size = kernel_size
        check_latent_dim(latent_dim)
        check_int("model.filters", filters)
        check_int("model.kernel_size", kernel_size)

    def build(self, event_shape: tuple[int, ...]):
        import keras
        from keras import layers

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
                layers.Softmax(),
                layers.Reshape(event_shape),
            ],
            name="decoder",
        )
        inputs = keras.Input(event_shape)
        autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="conv_ae")
        return autoencoder, encoder
