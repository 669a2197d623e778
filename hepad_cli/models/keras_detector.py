"""One base owns training for every Keras detector, on every Keras backend (TensorFlow, JAX, PyTorch).

``KerasDetector`` does, once: seeding, compile and fit with the trainer settings (callbacks, progress
bar, history), batched scoring, and save/load of every network in Keras' safe ``.keras`` format. A
detector provides only (the pattern of PyOD's deep-detector base):

- ``build_networks(event_shape) -> {name: keras.Model}``: the networks, saved as ``<name>.keras``;
- ``forward(networks, inputs, training, seed_generator)``: the training forward pass (any structure);
- ``loss_terms(inputs, targets, outputs, networks) -> {"loss": total, other named terms}``, written with
  ``keras.ops`` so it runs on every backend; every term is reported per epoch in ``history_``;
- ``score_batch(x) -> {score name: (n,) float64}``: the scores of one batch of events.

Training runs through ``keras.Model.fit`` with ``compute_loss`` overridden (no backend-specific
gradient code), so the same detector trains under any ``KERAS_BACKEND``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hepad_cli.data.samples import TrainingSet
from hepad_cli.errors import ConfigError
from hepad_cli.io import atomic_path, atomic_write_json
from hepad_cli.models.base import Detector
from hepad_cli.models.training import (
    TrainerSettings,
    compute_record,
    fit_keras,
    seed_everything,
    training_context,
    use_device_resident,
)

STATE_FILE = "state.json"


class KerasDetector(Detector):
    """Base of the Keras detectors; see the module docstring for what a subclass provides."""

    #: Named loss terms the subclass's ``loss_terms`` returns ("loss" is the one minimised).
    loss_names: ClassVar[tuple[str, ...]] = ("loss",)
    score_batch_size: ClassVar[int] = 4096
    takes_epoch_callbacks: ClassVar[bool] = True

    def __init__(self, trainer: dict | None = None, seed: int = 0) -> None:
        self.trainer = dict(trainer or {})
        self.seed = seed
        TrainerSettings.from_config(self.trainer)

    # --- what a subclass provides ------------------------------------------------------------------

    def build_networks(self, event_shape: tuple[int, ...]) -> dict[str, Any]:
        raise NotImplementedError

    def forward(self, networks: dict, inputs, training: bool, seed_generator):
        raise NotImplementedError

    def loss_terms(self, inputs, targets, outputs, networks: dict) -> dict:
        raise NotImplementedError

    def score_batch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # Optional hooks: what the detector takes from its training set before building (e.g. channel
    # groups), the arrays fit sees, extra state to save, and work after fitting or loading.
    def prepare(self, train: TrainingSet) -> None:
        """Learn settings from the training set before the networks are built (none by default)."""

    def training_arrays(self, data: TrainingSet) -> tuple[Any, Any]:
        """(inputs, targets) that ``fit`` passes to the networks: the events alone by default."""
        return data.x, None

    def extra_state(self) -> dict:
        return {}

    def restore_state(self, state: dict) -> None:
        """Set what ``extra_state`` saved (nothing by default)."""

    def on_networks_ready(self) -> None:
        """Called after fit and after load (e.g. to cache weights for NumPy scoring)."""

    # --- training ----------------------------------------------------------------------------------

    def fit(
        self,
        train: np.ndarray | TrainingSet,
        val: np.ndarray | TrainingSet | None = None,
        *,
        callbacks: list | None = None,
    ):
        """Train on background; ``callbacks``: extra Keras callbacks (per-epoch loggers, benchmarks)."""
        settings = TrainerSettings.from_config(self.trainer)
        train = train if isinstance(train, TrainingSet) else TrainingSet(train)
        if val is None:
            val = TrainingSet(
                train.x[:0],
                None if train.labels is None else train.labels[:0],
                None if train.weights is None else train.weights[:0],
                train.column_groups,
            )
        elif not isinstance(val, TrainingSet):
            val = TrainingSet(val)
        if not self.needs_labels and train.labels is not None:
            raise ConfigError(f"{type(self).__name__} trains on background only and takes no labels")
        with training_context(settings):
            self.compute_ = compute_record() | {
                "precision": settings.precision,
                "distribute": settings.distribute,
            }
            seed_everything(self.seed)
            self.prepare(train)
            self.event_shape_ = tuple(int(v) for v in train.x.shape[1:])
            self.networks_ = self.build_networks(self.event_shape_)
            inputs, targets = self.training_arrays(train)
            val_inputs, val_targets = self.training_arrays(val)
            n_train = len(train.x)
            nbytes = sum(leaf.nbytes for leaf in _leaves((inputs, targets, val_inputs, val_targets)))
            self.device_resident_ = use_device_resident(settings, nbytes)
            self.compute_["device_resident"] = self.device_resident_
            if self.device_resident_:
                # Train and validation arrays live on the device; fit only sees event numbers.
                resident = _concatenate((inputs, targets), (val_inputs, val_targets))
                model = training_model(self, resident)
                indices = np.arange(n_train + len(val.x), dtype=np.int32)
                inputs, targets, val_inputs, val_targets = indices[:n_train], None, indices[n_train:], None
            else:
                model = training_model(self)
            self.history_ = fit_keras(
                model,
                inputs,
                targets,
                val_inputs,
                val_targets,
                settings,
                callbacks=callbacks,
                validation_batch_size=self.score_batch_size,
            )
        if settings.distribute != "none":
            self.networks_ = {name: _undistributed(network) for name, network in self.networks_.items()}
        self.on_networks_ready()
        return self

    # --- scoring -----------------------------------------------------------------------------------

    def predict(self, name: str, batch):
        """Network ``name`` on one batch, as float32 NumPy arrays whatever the layers' compute precision
        (Keras' compiled predict step, no per-call pipeline)."""
        outputs = self.networks_[name].predict_on_batch(batch)
        if isinstance(outputs, list | tuple):
            return [np.asarray(o, dtype=np.float32) for o in outputs]
        return np.asarray(outputs, dtype=np.float32)

    def batches(self, x: np.ndarray):
        for start in range(0, len(x), self.score_batch_size):
            yield np.asarray(x[start : start + self.score_batch_size], dtype=np.float32)

    def score_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        parts = [self.score_batch(batch) for batch in self.batches(x)]
        return {
            name: np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)
            for name in self.score_names
        }

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.score_all(x)[self.score_name]

    # --- persistence -------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self._save_params(directory)
        for name, network in self.networks_.items():
            with atomic_path(directory / f"{name}.keras", suffix=".partial.keras") as tmp:
                network.save(tmp)
        atomic_write_json(
            directory / STATE_FILE,
            {"networks": list(self.networks_), "event_shape": list(self.event_shape_), **self.extra_state()},
        )

    @classmethod
    def load(cls, directory: str | Path) -> KerasDetector:
        import keras

        import hepad_cli.models.layers  # noqa: F401  (registers hepad's layers for safe-mode loading)

        directory = Path(directory)
        detector = cls(**cls._read_params(directory))
        state = json.loads((directory / STATE_FILE).read_text())
        detector.networks_ = {
            name: keras.saving.load_model(directory / f"{name}.keras", safe_mode=True)
            for name in state.pop("networks")
        }
        detector.event_shape_ = tuple(state.pop("event_shape"))
        detector.restore_state(state)
        detector.on_networks_ready()
        return detector


def training_model(detector: KerasDetector, resident=None):
    """A keras.Model around the detector's networks whose loss is the detector's ``loss_terms``.

    With ``resident`` = (inputs, targets) arrays, these are copied once into non-trainable variables (on
    the accelerator, where there is one) and the model is fed event numbers: each batch is gathered on
    the device, so only 4 bytes per event cross from the host per step.
    """
    import keras
    from keras import ops, tree

    # Arrays are kept as a flat list of variables (Keras tracks lists on every backend) and the structure
    # (inputs, targets) is rebuilt around the gathered batches.
    leaves = [] if resident is None else tree.flatten(resident)

    class TrainingModel(keras.Model):
        def __init__(self, networks: dict, **kwargs):
            super().__init__(name=f"{type(detector).__name__}_training", **kwargs)
            self.networks = networks
            self.seed_generator = keras.random.SeedGenerator(detector.seed)
            self.term_trackers = [keras.metrics.Mean(name=name) for name in detector.loss_names]
            self.resident_events = [
                keras.Variable(leaf, trainable=False, dtype=str(leaf.dtype), name=f"resident_{i}")
                for i, leaf in enumerate(leaves)
                if leaf is not None
            ]

        def batch(self, x, y):
            """The events (and targets) of a batch: gathered on the device in resident mode."""
            if resident is None:
                return x, y
            indices = ops.cast(x, "int32")
            gathered = iter([ops.take(v, indices, axis=0) for v in self.resident_events])
            return tree.pack_sequence_as(
                resident, [None if leaf is None else next(gathered) for leaf in leaves]
            )

        @property
        def metrics(self):
            return self.term_trackers

        def call(self, inputs, training=False):
            inputs, _ = self.batch(inputs, None)
            return detector.forward(self.networks, inputs, training, self.seed_generator)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            x, y = self.batch(x, y)
            # Loss terms in float32 whatever the compute precision of the layers.
            x, y_pred = (tree.map_structure(_float32, structure) for structure in (x, y_pred))
            terms = detector.loss_terms(x, y, y_pred, self.networks)
            for tracker in self.term_trackers:
                tracker.update_state(terms[tracker.name])
            return terms["loss"]

        def compute_metrics(self, x, y, y_pred, sample_weight=None):
            return {tracker.name: tracker.result() for tracker in self.term_trackers}

    return TrainingModel(detector.networks_)


def _undistributed(network):
    """The same network with the same weights, built outside any distribution strategy: scoring and
    saving then run on one device, as for a network trained without one."""
    import keras

    copy = keras.models.clone_model(network)
    copy.set_weights(network.get_weights())
    return copy


def _float32(tensor):
    from keras import ops

    return None if tensor is None else ops.cast(tensor, "float32")


def _leaves(structure) -> list[np.ndarray]:
    """The arrays of a nested (tuple / list) structure, Nones skipped."""
    if structure is None:
        return []
    if isinstance(structure, list | tuple):
        return [leaf for item in structure for leaf in _leaves(item)]
    return [structure]


def _concatenate(first, second):
    """Leaf-wise concatenation of two structures of arrays of the same shape (None stays None)."""
    if first is None:
        return None
    if isinstance(first, list | tuple):
        return type(first)(_concatenate(a, b) for a, b in zip(first, second, strict=True))
    return np.ascontiguousarray(np.concatenate([first, second]))
