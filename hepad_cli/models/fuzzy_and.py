"""The "fuzzy AND" of the CMS data-quality notebook (reference system 4): one small network per channel.

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

import logging
import re
from pathlib import Path

import numpy as np

from hepad_cli.data.samples import TrainingSet
from hepad_cli.errors import ConfigError
from hepad_cli.models.activations import check_activation, numpy_activation
from hepad_cli.models.keras_detector import KerasDetector
from hepad_cli.validation import check_choice, check_int, check_int_list, check_number

log = logging.getLogger(__name__)

COMBINATIONS = ("notebook", "product")
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


class FuzzyAndDetector(KerasDetector):
    """One sigmoid MLP per channel, combined by a fuzzy AND, trained on global good/bad labels."""

    score_name = GLOBAL
    needs_labels = True
    loss_names = ("loss", "log_loss", "l2_penalty")
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
        super().__init__(trainer=trainer, seed=seed)
        self.hidden = list(hidden) if isinstance(hidden, list | tuple) else hidden
        self.activation = activation
        self.dropout = dropout
        self.l2 = l2
        self.combination = combination
        self.mc_passes = mc_passes
        check_int_list("model.hidden", self.hidden, hint="e.g. [150, 50, 10]")
        check_activation("model.activation", activation)
        check_number("model.dropout", dropout, 0, 1, high_open=True, hint="0.25 in the notebook")
        check_number("model.l2", l2, low=0, hint="1e-5 in the notebook")
        check_choice(
            "model.combination",
            combination,
            COMBINATIONS,
            hint="notebook = exp(sum f_i - n), product = prod f_i",
        )
        check_int("model.mc_passes", mc_passes, hint="16 in the notebook")

    @property
    def score_names(self) -> list[str]:
        return [GLOBAL, GLOBAL_MC, *(f"channel_{name}" for name in self.feature_groups_)]

    # --- networks and training ------------------------------------------------------------------------

    def prepare(self, train: TrainingSet) -> None:
        if train.labels is None:
            raise ConfigError(
                "model=fuzzy_and trains on global good/bad labels, and the data gave none: use data=cms_dqm "
                "with data.training=weak (or another dataset that labels its training events)"
            )
        if not train.column_groups:
            raise ConfigError(
                "model=fuzzy_and needs the data to name its channels (feature_groups); it gave none"
            )
        n_features = train.x.shape[1]
        for name, columns in train.column_groups.items():
            if not columns or min(columns) < 0 or max(columns) >= n_features:
                raise ConfigError(f"channel {name!r} has columns outside the {n_features} features")
        self.feature_groups_ = {str(k): [int(c) for c in v] for k, v in train.column_groups.items()}
        log.info(
            "fuzzy AND: %d channels %s, %d training rows (%d labelled bad)",
            len(self.feature_groups_),
            {name: len(c) for name, c in self.feature_groups_.items()},
            len(train.x),
            int((np.asarray(train.labels) == 0).sum()),
        )

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

    def build_networks(self, event_shape: tuple[int, ...]) -> dict:
        return {
            f"channel_{_safe(name)}": self.build_subnet(name, len(columns), self.seed + 100 * i)
            for i, (name, columns) in enumerate(self.feature_groups_.items())
        }

    def training_arrays(self, data: TrainingSet):
        """Inputs: one array per channel; targets: (n, 2) = (global label, weight)."""
        weights = np.ones(len(data.x)) if data.weights is None else data.weights
        targets = np.column_stack([data.labels, weights]).astype(np.float32)
        return self._split(data.x), targets

    def forward(self, networks, inputs, training, seed_generator):
        from keras import ops

        return ops.concatenate(
            [net(x, training=training) for net, x in zip(networks.values(), inputs, strict=True)], 1
        )

    def loss_terms(self, inputs, targets, outputs, networks) -> dict:
        from keras import ops

        labels, weights = targets[:, 0], targets[:, 1]
        log_g = log_global(outputs, self.combination, ops)
        # log(1 - g) = log(-expm1(log g)); log g is kept below 0 so that a certain "good" stays finite.
        log_not_g = ops.log(-ops.expm1(ops.minimum(log_g, -1e-7)))
        losses = -(labels * log_g + (1.0 - labels) * log_not_g)
        log_loss = ops.sum(weights * losses) / ops.maximum(ops.sum(weights), 1e-30)
        per_channel = [
            ops.sum(
                ops.stack(
                    [ops.sum(ops.square(w)) for w in net.trainable_weights if w.path.endswith("kernel")]
                )
            )
            for net in networks.values()
        ]
        penalty = ops.max(ops.stack(per_channel))
        return {"loss": log_loss + self.l2 * penalty, "log_loss": log_loss, "l2_penalty": penalty}

    def _split(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.ascontiguousarray(x[:, columns]) for columns in self.feature_groups_.values()]

    def on_networks_ready(self) -> None:
        """Dense (kernel, bias) pairs of every channel network, float64, for NumPy scoring."""
        self.weights_ = []
        for net in self.networks_.values():
            dense = [layer for layer in net.layers if layer.__class__.__name__ == "Dense"]
            self.weights_.append(
                [tuple(np.asarray(w, dtype=np.float64) for w in layer.get_weights()) for layer in dense]
            )

    def extra_state(self) -> dict:
        return {"channels": [{"name": n, "columns": c} for n, c in self.feature_groups_.items()]}

    def restore_state(self, state: dict) -> None:
        self.feature_groups_ = {entry["name"]: entry["columns"] for entry in state["channels"]}

    @property
    def subnets_(self) -> list:
        return list(self.networks_.values())

    # --- scoring -------------------------------------------------------------------------------------

    def channel_logits(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """(n, n_channels) logits; with ``rng``, dropout is applied as in training (MC dropout)."""
        act = numpy_activation(self.activation)
        keep = 1.0 - self.dropout
        out = np.empty((len(x), len(self.weights_)))
        for i, (columns, layers) in enumerate(zip(self.feature_groups_.values(), self.weights_, strict=True)):
            h = np.asarray(x[:, columns], dtype=np.float64)
            for kernel, bias in layers[:-1]:
                h = h @ kernel + bias
                h = h if act is None else act(h)
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


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name)
