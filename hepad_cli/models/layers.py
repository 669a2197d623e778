"""Keras layers of hepad's own, registered so that saved models load in Keras' safe mode."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="hepad")
class LogitOffset(keras.layers.Layer):
    """Adds a learnable offset to each logit (each pixel before the softmax over pixels).

    Set to log of the mean training image, it makes the untrained decoder output the mean background
    image instead of a flat one, so training starts from the typical jet shape (see ConvAutoencoder).
    """

    def build(self, input_shape):
        self.offset = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="offset")

    def call(self, logits):
        return logits + keras.ops.cast(self.offset, logits.dtype)
