"""Score every test sample with a fitted detector and write the run's metrics, scores and figures."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.evaluation import metrics, plots
from hepad_cli.io import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluatorSettings:
    n_bootstrap: int = 200
    confidence_level: float = 0.95
    fprs: tuple[float, ...] | list[float] = metrics.DEFAULT_FPRS
    min_background_above: int = 1
    latent_max_points: int = 4000
    reconstruction_examples: int = 2
    plots: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n_bootstrap, int) or self.n_bootstrap < 0:
            raise ConfigError(f"evaluator.n_bootstrap must be a non-negative integer, got {self.n_bootstrap!r}")
        if not 0 < self.confidence_level < 1:
            raise ConfigError(f"evaluator.confidence_level must be in (0, 1), got {self.confidence_level!r}")
        if any(not 0 < f < 1 for f in self.fprs):
            raise ConfigError(f"evaluator.fprs must lie in (0, 1), got {list(self.fprs)}")


def score_samples(detector, samples) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Anomaly score of every test event per sample, and the scoring time per event (seconds)."""
    scores, timing = {}, {}
    for name, x in samples.named_test_samples().items():
        start = time.perf_counter()
        scores[name] = np.asarray(detector.score(x), dtype=np.float64)
        timing[name] = (time.perf_counter() - start) / max(len(x), 1)
        if scores[name].shape != (len(x),):
            raise RuntimeError(f"{type(detector).__name__}.score returned shape {scores[name].shape} for {len(x)} events")
        if not np.isfinite(scores[name]).all():
            raise RuntimeError(f"{type(detector).__name__} produced NaN or infinite scores for {name}")
    return scores, timing


def signal_metrics(scores: dict[str, np.ndarray], settings: EvaluatorSettings) -> dict[str, dict]:
    background = scores["background"]
    result = {}
    for name, values in scores.items():
        if name == "background":
            continue
        auc, interval = metrics.auc_with_interval(background, values, settings.n_bootstrap, settings.seed,
                                                  settings.confidence_level)
        result[name] = {
            "auc": auc,
            f"auc_interval_{round(settings.confidence_level * 100)}": list(interval),
            "tpr_at_fpr": metrics.tpr_at_fpr(background, values, settings.fprs, settings.min_background_above),
            "n_signal": int(len(values)),
            "n_background": int(len(background)),
        }
    return result


def write_scores(path: Path, scores: dict[str, np.ndarray], score_name: str, observables: dict) -> None:
    """scores.h5: score and origin of every scored event, plus per-event observables where known."""
    import h5py

    names = list(scores)
    with atomic_path(path, suffix=".partial.h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("score", data=np.concatenate([scores[n] for n in names]))
        f.create_dataset("origin", data=np.concatenate(
            [np.full(len(scores[n]), i, dtype=np.int16) for i, n in enumerate(names)]))
        f.attrs["origin_names"] = names
        f.attrs["score_name"] = score_name
        f.attrs["higher_is_more_anomalous"] = True
        keys = sorted({key for name in names for key in observables.get(name, {})})
        for key in keys:
            if all(key in observables.get(n, {}) for n in names):
                f.create_dataset(key, data=np.concatenate([observables[n][key] for n in names]))


def write_figures(out_dir: Path, detector, samples, scores, signal_results, settings: EvaluatorSettings,
                  title: str, radius: float | None) -> list[str]:
    written = []
    label = getattr(detector, "score_name", "anomaly score").replace("_", " ")
    plots.plot_score_histograms(scores, label, out_dir / "loss_hist.png", title)
    written.append("loss_hist.png")
    curves = {name: metrics.roc_curve_points(scores["background"], scores[name]) for name in signal_results}
    plots.plot_roc(curves, {n: r["auc"] for n, r in signal_results.items()}, out_dir / "roc.png", title)
    written.append("roc.png")
    if getattr(detector, "history_", None):
        plots.plot_history(detector.history_, out_dir / "history.png", title)
        written.append("history.png")
    if hasattr(detector, "encode"):
        latent = {name: detector.encode(x[: settings.latent_max_points])
                  for name, x in samples.named_test_samples().items()}
        axis_labels = ("latent 1", "latent 2")
        if latent["background"].shape[1] > 2:
            # Project on the two leading principal directions of the background's latent codes.
            centre = latent["background"].mean(0)
            _, _, directions = np.linalg.svd(latent["background"] - centre, full_matrices=False)
            latent = {n: (z - centre) @ directions[:2].T for n, z in latent.items()}
            axis_labels = ("latent PC 1 (background)", "latent PC 2 (background)")
        elif latent["background"].shape[1] == 1:
            latent = {n: np.column_stack([z[:, 0], scores[n][: len(z)]]) for n, z in latent.items()}
            axis_labels = ("latent 1", label)
        plots.plot_latent(latent, axis_labels, out_dir / "latent.png", title, settings.latent_max_points, settings.seed)
        written.append("latent.png")
    if hasattr(detector, "reconstruct") and samples.representation == "image":
        n = max(settings.reconstruction_examples, 1)
        tests = samples.named_test_samples()
        subset = {name: x[: max(n, 500)] for name, x in tests.items()}
        plots.plot_reconstructions(subset, {k: detector.reconstruct(v) for k, v in subset.items()},
                                   out_dir / "reconstructions.png", radius or 1.0, settings.reconstruction_examples)
        written.append("reconstructions.png")
    return written
