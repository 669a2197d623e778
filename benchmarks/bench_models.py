"""Figures 4-6: conv AE training, trigger inference one event at a time, bulk scoring."""

from __future__ import annotations

import os
import time

import numpy as np
from bench_common import Figure, Seconds, Settings, Side, fmt_rate, fmt_seconds, side_by_side

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def auc(background: np.ndarray, signal: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(background)), np.ones(len(signal))]
    return float(roc_auc_score(labels, np.r_[background, signal]))


def mse(reconstruction: np.ndarray, x: np.ndarray) -> np.ndarray:
    difference = np.asarray(reconstruction, np.float64).reshape(len(x), -1) - x.reshape(len(x), -1)
    return np.mean(difference**2, axis=1)


# ----------------------------------------------------------------------------------------------------
# 4. conv AE training


#: Top-vs-QCD AUC of the validation-selected model that counts as "a good detector" (full mode).
TARGET_AUC = 0.85
#: Epochs each side trains; the notebook recipe reaches the target in 4-5.
MAX_EPOCHS = 8


def training_data(settings: Settings) -> tuple[dict[str, np.ndarray], str]:
    """Background train/val/test and top images: the cached default Pythia samples (random in smoke)."""
    if settings.smoke:
        from toptagging_file import random_jets

        from hepad_cli.data.images import jet_images

        rng = np.random.default_rng(2)
        background = jet_images(random_jets(320, rng)[0])[..., None]
        signal = jet_images(random_jets(64, rng)[0][:, ::-1][:, :200].copy())[..., None]
        return {
            "train": background[:192],
            "val": background[192:256],
            "test": background[256:],
            "signal": signal,
        }, "random images (smoke)"
    from bench_data import pythia_samples

    from hepad_cli.config import compose
    from hepad_cli.experiment import instantiate_node

    pythia_samples(settings)  # generated once, shared with figure 1
    cfg = compose(f"paths.data_dir={settings.cache_dir / 'pythia-default'}", "data.signals=[top]", "seed=0")
    samples = instantiate_node(cfg.data).load()
    return {
        "train": samples.background_train,
        "val": samples.background_val,
        "test": samples.background_test,
        "signal": samples.signals["top"],
    }, "the default Pythia sample: QCD train 3600, val 1200, test 1200; top 1500; 16×16 images"


class TimeToAUC:
    """Training wall time until the validation-selected model (lowest validation loss so far) reaches a
    target AUC. During the fit a Keras callback only adds up each epoch's wall time and keeps a copy of
    the trainable weights whenever the validation loss improves; the AUCs are computed after the fit, so
    that scoring between epochs does not slow the next epoch down."""

    def __init__(self, score, data: dict[str, np.ndarray], target: float):
        import keras

        self.score, self.data, self.target = score, data, target
        self.reached: tuple[float, int] | None = None
        self.trace: list[tuple[float, float]] = []

        class EpochClock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds, self.best_val = 0.0, np.inf
                self.epochs: list[tuple[float, int]] = []  # (seconds so far, snapshot selected)
                self.snapshots: list[list[np.ndarray]] = []

            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds += time.perf_counter() - self.started
                val_loss = float((logs or {}).get("val_loss", np.inf))
                if val_loss < self.best_val:
                    self.best_val = val_loss
                    self.snapshots.append([np.array(v) for v in self.model.trainable_variables])
                self.epochs.append((self.seconds, len(self.snapshots) - 1))

        self.callback = EpochClock()

    def evaluate(self) -> None:
        """The selected model's AUC after each epoch; ``reached`` = (seconds, epoch) of the first that
        reaches the target."""
        variables = self.callback.model.trainable_variables
        aucs = []
        for snapshot in self.callback.snapshots:
            for variable, weights in zip(variables, snapshot, strict=True):
                variable.assign(weights)
            aucs.append(auc(self.score(self.data["test"]), self.score(self.data["signal"])))
        for number, (seconds, selected) in enumerate(self.callback.epochs, start=1):
            value = aucs[selected] if selected >= 0 else 0.5  # no finite validation loss yet
            self.trace.append((round(seconds, 2), round(value, 4)))
            if self.reached is None and value >= self.target:
                self.reached = (seconds, number)

    def seconds(self) -> Seconds:
        return Seconds(self.reached[0] if self.reached else np.inf)


def figure_training(settings: Settings) -> Figure:
    """Time to a good detector: training wall time until the validation-selected model reaches the target
    AUC (top vs QCD), hepad's default trainer against the top-jet notebook's recipe, same network."""
    import keras

    from hepad_cli.config import compose
    from hepad_cli.models.conv_ae import ConvAutoencoder

    data, description = training_data(settings)
    target = TARGET_AUC if not settings.smoke else 0.0
    max_epochs = settings.size(MAX_EPOCHS, 2)
    defaults = compose()
    trainer = {**dict(defaults.trainer), "epochs": max_epochs, "progress_bar": False}
    model_settings = {
        k: v for k, v in dict(defaults.model).items() if k not in ("_target_", "trainer", "seed")
    }
    runs: dict[str, list[TimeToAUC]] = {"notebook": [], "ours": []}
    seeds = iter(range(1000))

    def notebook():
        """The top-jet notebook: its network (no mean-image start), Adam with Keras defaults, batch 32, MSE,
        model.fit."""
        keras.utils.set_random_seed(next(seeds))
        notebook_network = {**model_settings, "start_from_mean_image": False}
        model, _ = ConvAutoencoder(**notebook_network).build(data["train"].shape[1:])
        model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
        clock = TimeToAUC(lambda x: mse(model.predict_on_batch(x), x), data, target)
        model.fit(
            data["train"],
            data["train"],
            batch_size=32,
            epochs=max_epochs,
            validation_data=(data["val"], data["val"]),
            shuffle=True,
            verbose=0,
            callbacks=[clock.callback],
        )
        clock.evaluate()
        runs["notebook"].append(clock)
        keras.backend.clear_session()
        return clock.seconds()

    def ours():
        detector = ConvAutoencoder(**model_settings, trainer=trainer, seed=next(seeds))
        clock = TimeToAUC(detector.score, data, target)
        detector.fit(data["train"], data["val"], callbacks=[clock.callback])
        clock.evaluate()
        runs["ours"].append(clock)
        keras.backend.clear_session()
        return clock.seconds()

    times = side_by_side(settings.heavy_repeats, {"notebook": notebook, "ours": ours}, warmup=False)
    baseline = Side("notebook recipe: batch 32, Adam 1e-3", times["notebook"])
    fast = Side(
        f"hepad default trainer (batch {trainer['batch_size']}, Adam {trainer['learning_rate']:g}, "
        f"epsilon {trainer['epsilon']:g})",
        times["ours"],
    )
    ratio = baseline.median / fast.median if np.isfinite(fast.median) else 0.0
    epochs = {name: [c.reached[1] if c.reached else None for c in clocks] for name, clocks in runs.items()}

    def text(side: Side, name: str) -> str:
        if not np.isfinite(side.median):
            return f"AUC {target} not reached in {max_epochs} epochs"
        return f"{side.median:.1f} s to AUC {target} (epochs {epochs[name]})"

    return Figure(
        name="training",
        what=f"conv AE: training time until the validation-selected model reaches AUC {target}",
        baseline=baseline,
        ours=fast,
        ratio=ratio,
        target="≥ 3× faster to the same AUC",
        met=ratio >= 3 if not settings.smoke else None,
        baseline_text=text(baseline, "notebook"),
        ours_text=text(fast, "ours"),
        notes=[
            f"{description}; median over {settings.heavy_repeats} seeds, each side alternating, "
            f"{max_epochs} epochs each",
            f"hepad trainer: {trainer}",
            "time = training and validation wall time of the epochs up to the first whose "
            "validation-selected model reaches the target; the AUCs are computed after the fit",
        ],
        extra={
            "target_auc": target,
            "traces": {name: [c.trace for c in clocks] for name, clocks in runs.items()},
            "epochs_to_target": epochs,
        },
    )


# ----------------------------------------------------------------------------------------------------
# 5 and 6. dense AE inference


def dense_autoencoder(n_features: int = 57):
    """The ADC2021 challenge example's dense AE, 57→16→3→16→57, built from Keras layers directly."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(3)
    return keras.Sequential(
        [
            keras.Input((n_features,)),
            layers.Dense(16, activation="relu"),
            layers.Dense(3),
            layers.Dense(16, activation="relu"),
            layers.Dense(n_features),
        ],
        name="dense_ae",
    )


def numpy_floor(model):
    """The floor: the same weights as plain NumPy matrix products, written the straightforward way."""
    w0, b0, w1, b1, w2, b2, w3, b3 = (np.asarray(v) for v in model.get_weights())

    def score(event: np.ndarray) -> float:
        h = np.maximum(event @ w0 + b0, 0)
        h = h @ w1 + b1
        h = np.maximum(h @ w2 + b2, 0)
        reconstruction = h @ w3 + b3
        return float(np.mean((reconstruction - event) ** 2))

    return score


def figure_trigger(settings: Settings) -> Figure:
    from hepad_cli.export import DenseScorer, export_dense

    model = dense_autoencoder()
    path = settings.work_dir / "dense_ae_scorer.npz"
    export_dense(model, path)
    scorer = DenseScorer.load(path)
    floor = numpy_floor(model)
    events = np.random.default_rng(4).standard_normal((20_000, 57)).astype(np.float32)

    # Correctness: the exported scorer (batch and one-event paths) against Keras, relative.
    n_check = settings.size(2000, 200)
    keras_scores = mse(model.predict(events[:n_check], verbose=0), events[:n_check])
    one = np.array([scorer.score_one(e) for e in events[:n_check]])
    worst = float(
        max(
            np.max(np.abs(scorer.score(events[:n_check]) - keras_scores) / keras_scores),
            np.max(np.abs(one - keras_scores) / keras_scores),
        )
    )

    n_predict, n_call, n_fast = settings.size(40, 3), settings.size(400, 20), settings.size(20_000, 500)

    def per_event(function, n: int):
        def run() -> float:
            start = time.perf_counter()
            for event in events[:n]:
                function(event)
            return Seconds((time.perf_counter() - start) / n)

        return run

    times = side_by_side(
        settings.repeats,
        {
            "predict": per_event(lambda e: model.predict(e[None], verbose=0), n_predict),
            "call": per_event(lambda e: model(e[None], training=False), n_call),
            "floor": per_event(floor, n_fast),
            "ours": per_event(scorer.score_one, n_fast),
        },
    )
    latency = {name: float(np.median(values)) for name, values in times.items()}
    ratio = latency["ours"] / latency["floor"]
    ours = Side("exported NumPy scorer, score_one", times["ours"], unit="s/event")
    return Figure(
        name="trigger",
        what="trigger inference, 1 event (dense AE 57→16→3→16→57)",
        baseline=Side("plain NumPy matrix products (floor)", times["floor"], unit="s/event"),
        ours=ours,
        ratio=ratio,
        target="≤ 2× floor, scores to 1e-5",
        met=ratio <= 2 and worst <= 1e-5,
        baseline_text=f"floor {fmt_seconds(latency['floor'])}",
        ours_text=fmt_seconds(latency["ours"]),
        notes=[
            f"Keras predict {fmt_seconds(latency['predict'])}, direct call {fmt_seconds(latency['call'])}: "
            f"ours is {latency['predict'] / latency['ours']:.0f}× faster than predict, "
            f"{latency['call'] / latency['ours']:.0f}× than the direct call",
            f"scores vs Keras: max relative difference {worst:.1e} over {n_check} events",
            f"weights file {path.stat().st_size} bytes",
        ],
        extra={
            "latency_seconds": latency,
            "samples": times,
            "max_relative_difference": worst,
            "weights_file_bytes": path.stat().st_size,
        },
    )


def figure_bulk(settings: Settings) -> list[Figure]:
    from hepad_cli.export import export_dense
    from hepad_cli.models.autoencoder import KerasAutoencoder
    from hepad_cli.models.conv_ae import ConvAutoencoder

    figures = []
    # Dense AE (the trigger models): detector.score (the pipeline's path) vs predict with its batch 32.
    model = dense_autoencoder()
    detector = KerasAutoencoder()
    detector.networks_ = {"model": model}
    scorer = export_dense(model)
    events = np.random.default_rng(5).standard_normal((settings.size(400_000, 20_000), 57)).astype(np.float32)
    # Conv AE (the default pipeline's detector): random weights, the cost does not depend on them.
    conv = ConvAutoencoder(latent_dim=2)
    conv.networks_ = {"model": conv.build((16, 16, 1))[0]}
    rng = np.random.default_rng(6)
    images = rng.random((settings.size(40_000, 1000), 16, 16, 1), dtype=np.float32)
    images /= images.sum(axis=(1, 2, 3), keepdims=True)

    for name, what, x, keras_model, ours_label, ours_score, extra_sides in (
        (
            "bulk",
            "bulk scoring, dense AE 57→16→3→16→57",
            events,
            model,
            "KerasAutoencoder.score",
            detector.score,
            {"numpy": scorer.score},
        ),
        (
            "bulk_conv",
            "bulk scoring, conv AE (16×16 images)",
            images,
            conv.model_,
            "ConvAutoencoder.score",
            conv.score,
            {},
        ),
    ):
        expected = mse(keras_model.predict(x[:2000], verbose=0), x[:2000])
        worst = float(np.max(np.abs(ours_score(x[:2000]) - expected) / expected))
        sides = {
            "predict": lambda m=keras_model, x=x: mse(m.predict(x, verbose=0), x),
            "ours": lambda f=ours_score, x=x: f(x),
        }
        sides |= {key: (lambda f=f, x=x: f(x)) for key, f in extra_sides.items()}
        times = side_by_side(settings.repeats, sides)
        baseline = Side("model.predict (batch 32) + MSE", times["predict"], per_sample=len(x))
        ours = Side(ours_label, times["ours"], per_sample=len(x))
        ratio = ours.rate / baseline.rate
        notes = [f"{len(x)} events; scores vs predict: max relative difference {worst:.1e}"]
        if "numpy" in times:
            numpy_rate = len(x) / float(np.median(times["numpy"]))
            notes.append(f"exported NumPy scorer (DenseScorer.score): {fmt_rate(numpy_rate, 'events')}")
        figures.append(
            Figure(
                name=name,
                what=what,
                baseline=baseline,
                ours=ours,
                ratio=ratio,
                target="≥ 4×",
                met=ratio >= 4 and worst <= 1e-5,
                baseline_text=fmt_rate(baseline.rate, "events"),
                ours_text=fmt_rate(ours.rate, "events"),
                notes=notes,
                extra={"samples": times, "max_relative_difference": worst},
            )
        )
    return figures
