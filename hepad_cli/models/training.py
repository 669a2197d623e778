"""The Keras training recipe (trainer config group): callbacks, seed, progress bar."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields

import numpy as np

from hepad_cli.errors import ConfigError, TrainingError
from hepad_cli.validation import check_bool, check_choice, check_int, check_number

OPTIMIZERS = ("adam", "adadelta", "sgd", "rmsprop")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainerSettings:
    """epochs: maximum; early_stopping_patience / reduce_lr_patience in epochs (0 turns them off)."""

    epochs: int = 50
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    early_stopping_patience: int = 10
    reduce_lr_patience: int = 2
    reduce_lr_factor: float = 0.1
    min_learning_rate: float = 1e-6
    progress_bar: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            check_int(f"trainer.{name}", getattr(self, name))
        for name in ("early_stopping_patience", "reduce_lr_patience"):
            check_int(f"trainer.{name}", getattr(self, name), minimum=0)
        for name in ("learning_rate", "min_learning_rate"):
            check_number(f"trainer.{name}", getattr(self, name), low=0, low_open=True)
        check_number("trainer.reduce_lr_factor", self.reduce_lr_factor, 0, 1, low_open=True, high_open=True)
        check_choice("trainer.optimizer", self.optimizer, OPTIMIZERS)
        check_bool("trainer.progress_bar", self.progress_bar)

    @classmethod
    def from_config(cls, config: dict | None) -> TrainerSettings:
        config = dict(config or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(f"unknown trainer keys {unknown}; known keys: {sorted(known)}")
        return cls(**config)

    def as_dict(self) -> dict:
        return asdict(self)


def seed_everything(seed: int) -> None:
    """Fix Python, NumPy and the active Keras backend's randomness, and ask that backend for
    deterministic ops (only the active backend is imported)."""
    import keras

    keras.utils.set_random_seed(int(seed))
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)


def fit_keras(model, x_train, y_train, x_val, y_val, settings: TrainerSettings) -> dict[str, list[float]]:
    """Compile and fit ``model`` (its loss is its own ``compute_loss``); validation on background only;
    returns the per-epoch history."""
    import keras

    optimizer = {
        "adam": keras.optimizers.Adam,
        "adadelta": keras.optimizers.Adadelta,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[settings.optimizer](learning_rate=settings.learning_rate)
    model.compile(optimizer=optimizer)
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if settings.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=settings.early_stopping_patience, restore_best_weights=True
            )
        )
    if settings.reduce_lr_patience:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=settings.reduce_lr_factor,
                patience=settings.reduce_lr_patience,
                min_lr=settings.min_learning_rate,
                min_delta=0.0,
            )
        )
    callbacks.append(epoch_progress_callback(settings.epochs, enabled=settings.progress_bar))
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    ).history
    history = {key: [float(v) for v in values] for key, values in history.items()}
    losses = np.array(history.get("loss", []) + history.get("val_loss", []))
    if losses.size == 0 or not np.isfinite(losses).all():
        raise TrainingError(
            "the training loss became NaN or infinite (TerminateOnNaN stopped the fit): "
            "lower trainer.learning_rate or check the inputs for extreme values"
        )
    return history


def epoch_progress_callback(epochs: int, enabled: bool = True):
    """A Keras callback: a tqdm bar per epoch over its batches, and one log line per epoch."""
    import keras
    from tqdm.auto import tqdm

    class EpochProgress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.bar = tqdm(
                total=self.params.get("steps"),
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="batch",
                leave=False,
                disable=not enabled,
            )

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            if logs and batch % 20 == 0:
                self.bar.set_postfix(loss=f"{float(logs.get('loss', float('nan'))):.4g}")

        def on_epoch_end(self, epoch, logs=None):
            self.bar.close()
            logs = logs or {}
            log.info(
                "epoch %d/%d  loss %.5g  val_loss %.5g  lr %.3g",
                epoch + 1,
                epochs,
                logs.get("loss", float("nan")),
                logs.get("val_loss", float("nan")),
                float(logs.get("learning_rate", self.model.optimizer.learning_rate)),
            )

    return EpochProgress()
