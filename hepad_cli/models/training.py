"""The Keras training recipe (trainer config group): callbacks, seed, progress bar, numeric precision,
several accelerators, and device-resident training data — on every Keras backend."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from functools import cache

import numpy as np

from hepad_cli.errors import ConfigError, TrainingError
from hepad_cli.validation import check_bool, check_choice, check_int, check_number

OPTIMIZERS = ("adam", "adadelta", "sgd", "rmsprop")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DISTRIBUTIONS = ("none", "data_parallel")
RESIDENT = ("auto", "true", "false")
#: History key of each epoch's wall time in seconds.
EPOCH_SECONDS = "epoch_seconds"
#: With device_resident=auto, training data stay on an accelerator when they take at most this share of
#: its memory (the rest is left for activations and the optimizer).
RESIDENT_MEMORY_SHARE = 0.4

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainerSettings:
    """epochs: maximum; early_stopping_patience / reduce_lr_patience in epochs (0 turns them off)."""

    epochs: int = 50
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    epsilon: float = 1e-7
    early_stopping_patience: int = 10
    reduce_lr_patience: int = 2
    reduce_lr_factor: float = 0.1
    min_learning_rate: float = 1e-6
    progress_bar: bool = True
    precision: str = "float32"
    distribute: str = "none"
    device_resident: str = "auto"
    steps_per_execution: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            check_int(f"trainer.{name}", getattr(self, name))
        for name in ("early_stopping_patience", "reduce_lr_patience"):
            check_int(f"trainer.{name}", getattr(self, name), minimum=0)
        for name in ("learning_rate", "min_learning_rate", "epsilon"):
            check_number(f"trainer.{name}", getattr(self, name), low=0, low_open=True)
        check_number("trainer.reduce_lr_factor", self.reduce_lr_factor, 0, 1, low_open=True, high_open=True)
        check_choice("trainer.optimizer", self.optimizer, OPTIMIZERS)
        check_bool("trainer.progress_bar", self.progress_bar)
        check_choice("trainer.precision", self.precision, PRECISIONS)
        check_choice("trainer.distribute", self.distribute, DISTRIBUTIONS)
        # YAML reads true/false as booleans; the setting also takes "auto".
        if isinstance(self.device_resident, bool):
            object.__setattr__(self, "device_resident", str(self.device_resident).lower())
        check_choice("trainer.device_resident", self.device_resident, RESIDENT)
        check_int("trainer.steps_per_execution", self.steps_per_execution)

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


def accelerators() -> list[str]:
    """The accelerators (GPUs) the active Keras backend sees; empty on a CPU-only machine."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices() if d.platform != "cpu"]
    if backend == "torch":
        import torch

        return [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    if backend == "tensorflow":
        import tensorflow as tf

        return [device.name for device in tf.config.list_logical_devices("GPU")]
    return []


def accelerator_memory_bytes() -> int | None:
    """Memory of the first accelerator where the backend reports it (JAX, PyTorch), else None."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = next(d for d in jax.devices() if d.platform != "cpu")
            return int((device.memory_stats() or {}).get("bytes_limit", 0)) or None
        if backend == "torch":
            import torch

            return int(torch.cuda.get_device_properties(0).total_memory)
    except (StopIteration, RuntimeError, AttributeError):
        return None
    return None


def compute_record() -> dict:
    """Which Keras backend and devices a fit ran on (for run_info.json)."""
    import keras

    found = accelerators()
    return {
        "keras_backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "accelerators": found,
        "device": found[0] if found else "cpu",
    }


def use_device_resident(settings: TrainerSettings, nbytes: int) -> bool:
    """Keep the training arrays on the accelerator (batches gathered there, no host copy per step)?

    ``auto``: yes when an accelerator is visible and the arrays take at most RESIDENT_MEMORY_SHARE of its
    memory (4 GB where the backend does not report its memory); ``true`` / ``false`` force it.
    """
    if settings.device_resident == "false":
        return False
    if settings.distribute != "none":
        if settings.device_resident == "true":
            raise ConfigError(
                "trainer.device_resident=true works on one device; with trainer.distribute=data_parallel "
                "the batches are split over the devices by Keras: use trainer.device_resident=auto"
            )
        return False
    if settings.device_resident == "true":
        return True
    if not accelerators():
        return False
    memory = accelerator_memory_bytes()
    return nbytes <= (RESIDENT_MEMORY_SHARE * memory if memory else 4e9)


@contextmanager
def training_context(settings: TrainerSettings) -> Iterator[None]:
    """Numeric precision and device distribution while networks are built and trained; restored after,
    so that jobs of a sweep run one after another do not inherit them."""
    import keras

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(settings.precision)
    try:
        if settings.distribute == "none":
            yield
        else:
            with _data_parallel():
                yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


@contextmanager
def _data_parallel() -> Iterator[None]:
    """Every visible device trains on its share of each batch: Keras' distribution API on JAX, a
    MirroredStrategy on TensorFlow."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        devices = keras.distribution.list_devices()
        log.info("data parallel over %d devices: %s", len(devices), devices)
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield
        finally:
            keras.distribution.set_distribution(None)
    elif backend == "tensorflow":
        import tensorflow as tf

        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        log.info("data parallel over %d devices: %s", len(devices), devices)
        with _mirrored_strategy(tuple(devices)).scope():
            yield
    else:
        raise ConfigError(
            "trainer.distribute=data_parallel needs KERAS_BACKEND=jax or tensorflow "
            f"(this run uses {backend}); use trainer.distribute=none"
        )


@cache
def _mirrored_strategy(devices: tuple[str, ...]):
    """One MirroredStrategy per device set and process: a second one in the same process reuses the
    collective-op keys of the first and its all-reduces fail."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(devices=list(devices))


def fit_keras(
    model,
    x_train,
    y_train,
    x_val,
    y_val,
    settings: TrainerSettings,
    callbacks: list | None = None,
    validation_batch_size: int | None = None,
) -> dict[str, list[float]]:
    """Compile and fit ``model`` (its loss is its own ``compute_loss``); validation on background only,
    in batches of ``validation_batch_size`` (default: the training batch size; no gradients are kept, so
    larger batches only save per-step overhead); ``callbacks`` run after the trainer's own; returns the
    per-epoch history."""
    import keras

    options = {"learning_rate": settings.learning_rate}
    if settings.optimizer != "sgd":  # the only one without an epsilon
        options["epsilon"] = settings.epsilon
    optimizer = {
        "adam": keras.optimizers.Adam,
        "adadelta": keras.optimizers.Adadelta,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[settings.optimizer](**options)
    model.compile(optimizer=optimizer, steps_per_execution=settings.steps_per_execution)
    extra_callbacks = list(callbacks or [])
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
    callbacks += extra_callbacks
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        validation_batch_size=max(settings.batch_size, validation_batch_size or 0),
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
    """A Keras callback: a tqdm bar per epoch over its batches, one log line per epoch, and the epoch's
    wall time (training and validation) in the history as ``epoch_seconds``."""
    import time

    import keras
    from tqdm.auto import tqdm

    class EpochProgress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()
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
            logs = logs if logs is not None else {}
            # Runs before Keras' History callback, which then records it with the losses.
            logs[EPOCH_SECONDS] = time.perf_counter() - self.started
            log.info(
                "epoch %d/%d  loss %.5g  val_loss %.5g  lr %.3g",
                epoch + 1,
                epochs,
                logs.get("loss", float("nan")),
                logs.get("val_loss", float("nan")),
                float(logs.get("learning_rate", self.model.optimizer.learning_rate)),
            )

    return EpochProgress()
