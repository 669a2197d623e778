"""The "fuzzy AND" of the CMS data-quality notebook (DESIGN.md, system 4): one small network per channel.

Each channel i (a named group of feature columns, ``feature_groups`` from the data) has its own MLP:
Dense(h, activation) + Dropout(dropout) for h in ``hidden`` → Dense(1) → logit zᵢ, and fᵢ = σ(zᵢ) reads
as "channel i looks good". The global output g = P(lumisection good) combines them:

- ``combination: notebook`` (the Lasagne notebook): g = exp(Σᵢ fᵢ − n) = Πᵢ exp(fᵢ − 1), with fᵢ the
  sigmoid outputs. Each factor exp(fᵢ − 1) lies in (1/e, 1], so g is a product of per-channel factors and
  lies in (e⁻ⁿ, 1]; log fᵢ ≈ fᵢ − 1 near fᵢ = 1, so it approximates the product of probabilities where the
  channels look good. (With log-sigmoid sᵢ = log fᵢ instead, exp(Σ sᵢ − n) would be e⁻ⁿ Πᵢ fᵢ, not a
  product of probabilities: the − n belongs to the sigmoid form only.)
- ``combination: product``: g = exp(Σᵢ log σ(zᵢ)) = Πᵢ fᵢ exactly, a probabilistic AND of the channels.

Training (weak supervision on global labels y, 1 = good, with per-event weights w, e.g. luminosity):
loss = Σ w·[−y log g − (1 − y) log(1 − g)] / Σ w + l2 · maxᵢ Σ‖Wᵢ‖² over the Dense kernels of network i.
Taking the maximum of the per-channel penalties (not their sum) keeps one channel from lowering its
penalty at the cost of another's predictive power, as the notebook explains. The optimizer, rate,
batch size and epochs come from the trainer settings (the notebook: Adadelta, rate 1.0, batch 512).

Scores (higher = more anomalous): ``fuzzy_and_global`` = 1 − g with dropout off (primary);
``fuzzy_and_global_mc`` = 1 − mean of g over ``mc_passes`` passes with dropout on (MC dropout, seeded);
``channel_<name>`` = 1 − fᵢ with dropout off. Scoring runs as NumPy matrix products on the trained weights.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.io import atomic_path, atomic_write_json
from hepad_cli.models.base import Detector
from hepad_cli.models.training import TrainerSettings, fit_keras, seed_everything

log = logging.getLogger(__name__)

COMBINATIONS = ("notebook", "product")
ACTIVATIONS = {
    "sigmoid": lambda a: 0.5 * (1.0 + np.tanh(0.5 * a)),
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0.0),
    "elu": lambda a: np.where(a > 0, a, np.expm1(np.minimum(a, 0.0))),
    "linear": lambda a: a,
}
GLOBAL = "fuzzy_and_global"
GLOBAL_MC = "fuzzy_and_global_mc"


def log_global(logits, combination: str, ops):
    """log g from the (batch, n_channels) logits, with ``ops`` = numpy or keras.ops."""
    n_channels = logits.shape[1]
    if ops is np:
        if combination == "notebook":
            return _sigmoid(logits).sum(axis=1) - n_channels
        return -np.logaddexp(0.0, -logits).sum(axis=1)
    if combination == "notebook":
        return ops.sum(ops.sigmoid(logits), axis=1) - n_channels
    return -ops.sum(ops.softplus(-logits), axis=1)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _trainer_class():
    """The Keras model that trains the channel networks together (defined lazily: keras imports slowly)."""
    import keras
    import tensorflow as tf
    from keras import ops

    class FuzzyAndTrainer(keras.Model):
        """Inputs: one array per channel; targets: (batch, 2) = (global label, weight)."""

        def __init__(self, subnets, combination: str, l2: float, **kwargs):
            super().__init__(**kwargs)
            self.subnets = list(subnets)
            self.combination = combination
            self.l2 = float(l2)
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.log_loss_tracker = keras.metrics.Mean(name="log_loss")
            self.penalty_tracker = keras.metrics.Mean(name="l2_penalty")

        @property
        def metrics(self):
            return [self.loss_tracker, self.log_loss_tracker, self.penalty_tracker]

        def logits(self, inputs, training):
            return ops.concatenate(
                [net(x, training=training) for net, x in zip(self.subnets, inputs, strict=True)], 1
            )

        def call(self, inputs, training=False):
            return ops.exp(log_global(self.logits(inputs, training), self.combination, ops))

        def penalty(self):
            per_channel = [
                ops.sum(
                    ops.stack(
                        [ops.sum(ops.square(w)) for w in net.trainable_weights if w.path.endswith("kernel")]
                    )
                )
                for net in self.subnets
            ]
            return ops.max(ops.stack(per_channel))

        def _terms(self, inputs, targets, training):
            labels, weights = targets[:, 0], targets[:, 1]
            log_g = log_global(self.logits(inputs, training), self.combination, ops)
            # log(1 - g) = log(-expm1(log g)); log g is kept below 0 so that a certain "good" stays finite.
            log_not_g = ops.log(-ops.expm1(ops.minimum(log_g, -1e-7)))
            losses = -(labels * log_g + (1.0 - labels) * log_not_g)
            log_loss = ops.sum(weights * losses) / ops.maximum(ops.sum(weights), 1e-30)
            penalty = self.penalty()
            return log_loss + self.l2 * penalty, log_loss, penalty

        def _update(self, total, log_loss, penalty):
            self.loss_tracker.update_state(total)
            self.log_loss_tracker.update_state(log_loss)
            self.penalty_tracker.update_state(penalty)
            return {metric.name: metric.result() for metric in self.metrics}

        def train_step(self, data):
            inputs, targets = data[0], data[1]
            with tf.GradientTape() as tape:
                total, log_loss, penalty = self._terms(inputs, targets, training=True)
            gradients = tape.gradient(total, self.trainable_weights)
            self.optimizer.apply_gradients(zip(gradients, self.trainable_weights, strict=True))
            return self._update(total, log_loss, penalty)

        def test_step(self, data):
            return self._update(*self._terms(data[0], data[1], training=False))

    return FuzzyAndTrainer


class FuzzyAndDetector(Detector):
    """One sigmoid MLP per channel, combined by a fuzzy AND, trained on global good/bad labels."""

    score_name = GLOBAL
    score_batch_size = 8192

    def __init__(
        self,
        hidden: list[int] | tuple[int, ...] = (150, 50, 10),
        activation: str = "sigmoid",
        dropout: float = 0.25,
        l2: float = 1e-5,
        combination: str = "notebook",
        mc_passes: int = 16,
        trainer: dict | None = None,
        seed: int = 0,
    ) -> None:
        self.hidden = list(hidden) if isinstance(hidden, list | tuple) else hidden
        self.activation = activation
        self.dropout = dropout
        self.l2 = l2
        self.combination = combination
        self.mc_passes = mc_passes
        self.trainer = dict(trainer or {})
        self.seed = seed
        if not isinstance(self.hidden, list) or any(
            isinstance(h, bool) or not isinstance(h, int) or h <= 0 for h in self.hidden
        ):
            raise ConfigError(
                f"model.hidden must be a list of positive integers (e.g. [150, 50, 10]), got {hidden!r}"
            )
        if activation not in ACTIVATIONS:
            raise ConfigError(f"model.activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1) (0.25 in the notebook), got {dropout!r}")
        if isinstance(l2, bool) or not isinstance(l2, int | float) or not np.isfinite(l2) or l2 < 0:
            raise ConfigError(f"model.l2 must be a non-negative number (1e-5 in the notebook), got {l2!r}")
        if combination not in COMBINATIONS:
            raise ConfigError(
                f"model.combination must be 'notebook' (exp(sum f_i - n)) or 'product' (prod f_i), "
                f"got {combination!r}"
            )
        if isinstance(mc_passes, bool) or not isinstance(mc_passes, int) or mc_passes <= 0:
            raise ConfigError(
                f"model.mc_passes must be a positive integer (16 in the notebook), got {mc_passes!r}"
            )
        TrainerSettings.from_config(self.trainer)

    # --- model ---------------------------------------------------------------------------------------

    def build_subnet(self, name: str, n_features: int, seed: int):
        """A plain functional Keras model: features of one channel → its logit (safe to reload)."""
        import keras
        from keras import layers

        inputs = keras.Input((n_features,), name=f"{_safe(name)}_features")
        x = inputs
        for i, size in enumerate(self.hidden):
            x = layers.Dense(size, activation=self.activation, name=f"dense_{i}")(x)
            if self.dropout:
                x = layers.Dropout(self.dropout, seed=seed + i, name=f"dropout_{i}")(x)
        logit = layers.Dense(1, name="logit")(x)
        return keras.Model(inputs, logit, name=f"channel_{_safe(name)}")

    def _split(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.ascontiguousarray(x[:, columns]) for columns in self.feature_groups_.values()]

    def fit(
        self,
        x_train: np.ndarray,
        x_val: np.ndarray | None = None,
        y_train: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        w_train: np.ndarray | None = None,
        w_val: np.ndarray | None = None,
        feature_groups: dict[str, list[int]] | None = None,
    ) -> FuzzyAndDetector:
        if y_train is None:
            raise ConfigError(
                "model=fuzzy_and trains on global good/bad labels, and the data gave none: use data=cms_dqm "
                "with data.training=weak (or another dataset that labels its training events)"
            )
        if not feature_groups:
            raise ConfigError(
                "model=fuzzy_and needs the data to name its channels (feature_groups); it gave none"
            )
        n_features = x_train.shape[1]
        for name, columns in feature_groups.items():
            if not columns or min(columns) < 0 or max(columns) >= n_features:
                raise ConfigError(f"channel {name!r} has columns outside the {n_features} features")
        seed_everything(self.seed)
        self.feature_groups_ = {str(k): [int(c) for c in v] for k, v in feature_groups.items()}
        self.subnets_ = [
            self.build_subnet(name, len(columns), self.seed + 100 * i)
            for i, (name, columns) in enumerate(self.feature_groups_.items())
        ]
        trainer = _trainer_class()(self.subnets_, self.combination, self.l2)
        if x_val is None:
            x_val, y_val, w_val = x_train[:0], y_train[:0], None
        targets = [
            np.column_stack([y, np.ones(len(y)) if w is None else w]).astype(np.float32)
            for y, w in ((y_train, w_train), (y_val, w_val))
        ]
        inputs_train, inputs_val = self._split(x_train), self._split(x_val)
        trainer([x[:1] for x in inputs_train])  # build the weights before compiling
        log.info(
            "fuzzy AND: %d channels %s, %d training rows (%d labelled bad)",
            len(self.subnets_),
            {name: len(c) for name, c in self.feature_groups_.items()},
            len(x_train),
            int((np.asarray(y_train) == 0).sum()),
        )
        self.history_ = fit_keras(
            trainer,
            inputs_train,
            targets[0],
            inputs_val,
            targets[1],
            TrainerSettings.from_config(self.trainer),
            loss=None,
            seed=self.seed,
        )
        self._cache_weights()
        return self

    def _cache_weights(self) -> None:
        """Dense (kernel, bias) pairs of every channel network, float64, for NumPy scoring."""
        self.weights_ = []
        for net in self.subnets_:
            dense = [layer for layer in net.layers if layer.__class__.__name__ == "Dense"]
            self.weights_.append(
                [tuple(np.asarray(w, dtype=np.float64) for w in layer.get_weights()) for layer in dense]
            )

    # --- scoring -------------------------------------------------------------------------------------

    def channel_logits(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """(n, n_channels) logits; with ``rng``, dropout is applied as in training (MC dropout)."""
        act = ACTIVATIONS[self.activation]
        keep = 1.0 - self.dropout
        out = np.empty((len(x), len(self.weights_)))
        for i, (columns, layers) in enumerate(zip(self.feature_groups_.values(), self.weights_, strict=True)):
            h = np.asarray(x[:, columns], dtype=np.float64)
            for kernel, bias in layers[:-1]:
                h = act(h @ kernel + bias)
                if rng is not None and self.dropout:
                    h = h * (rng.random(h.shape) < keep) / keep
            kernel, bias = layers[-1]
            out[:, i] = (h @ kernel + bias)[:, 0]
        return out

    def global_good_probability(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return np.exp(log_global(self.channel_logits(x, rng), self.combination, np))

    def score(self, x: np.ndarray) -> np.ndarray:
        return 1.0 - self.global_good_probability(x)

    def score_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Global score (dropout off), its MC-dropout average, and one score per channel."""
        logits = self.channel_logits(x)
        rng = np.random.default_rng(self.seed)
        mc = np.mean([self.global_good_probability(x, rng) for _ in range(self.mc_passes)], axis=0)
        scores = {GLOBAL: 1.0 - np.exp(log_global(logits, self.combination, np)), GLOBAL_MC: 1.0 - mc}
        for i, name in enumerate(self.feature_groups_):
            scores[f"channel_{name}"] = 1.0 - _sigmoid(logits[:, i])
        return scores

    def extra_report(self, samples, scores_by_name, out_dir: Path, settings) -> dict:
        """Weighted global and per-channel AUCs, channel histograms, the subsystem × channel heat map."""
        from hepad_cli.evaluation.channels import channel_report

        return channel_report(
            samples,
            scores_by_name,
            {"deterministic": GLOBAL, f"mc_dropout_{self.mc_passes}": GLOBAL_MC},
            {name: f"channel_{name}" for name in self.feature_groups_},
            out_dir,
            settings,
            f"fuzzy AND ({self.combination})",
        )

    # --- persistence ---------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self._save_params(directory)
        files = {}
        for name, net in zip(self.feature_groups_, self.subnets_, strict=True):
            files[name] = f"channel_{_safe(name)}.keras"
            with atomic_path(directory / files[name], suffix=".partial.keras") as tmp:
                net.save(tmp)
        atomic_write_json(
            directory / "channels.json",
            {
                "channels": [
                    {"name": n, "columns": c, "file": files[n]} for n, c in self.feature_groups_.items()
                ]
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> FuzzyAndDetector:
        import keras

        directory = Path(directory)
        detector = cls(**cls._read_params(directory))
        channels = json.loads((directory / "channels.json").read_text())["channels"]
        detector.feature_groups_ = {entry["name"]: entry["columns"] for entry in channels}
        detector.subnets_ = [
            keras.saving.load_model(directory / entry["file"], safe_mode=True) for entry in channels
        ]
        detector._cache_weights()
        return detector


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name)
