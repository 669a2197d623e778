"""Score every test sample with a fitted detector and write the run's metrics, scores and figures."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.evaluation import metrics, plots
from hepad_cli.evaluation.sculpting import SculptingSettings
from hepad_cli.io import atomic_path
from hepad_cli.report import SignalResult
from hepad_cli.validation import check_bool, check_int, check_number, is_number

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluatorSettings:
    n_bootstrap: int = 200
    confidence_level: float = 0.95
    fprs: tuple[float, ...] | list[float] = metrics.DEFAULT_FPRS
    min_background_above: int = 10
    latent_max_points: int = 4000
    reconstruction_examples: int = 2
    plots: bool = True
    latency_repeats: int = 20
    latency_bulk_size: int = 4096
    latency_bulk_repeats: int = 3
    sculpting: SculptingSettings | dict = field(default_factory=SculptingSettings)
    decorrelate: str | None = None
    decorrelation_bins: int = 10
    style: str = "ROOT"
    label: str | None = None
    energy: str | None = None
    formats: tuple[str, ...] | list[str] = ("png",)
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.sculpting, dict):
            object.__setattr__(self, "sculpting", SculptingSettings(**self.sculpting))
        if self.decorrelate is not None and not isinstance(self.decorrelate, str):
            raise ConfigError(
                "evaluator.decorrelate must name an observable (e.g. mass) or be null; "
                f"got {self.decorrelate!r}"
            )
        check_int("evaluator.decorrelation_bins", self.decorrelation_bins)
        check_int("evaluator.n_bootstrap", self.n_bootstrap, minimum=0)
        for name in (
            "latency_repeats",
            "latency_bulk_size",
            "latency_bulk_repeats",
            "min_background_above",
            "latent_max_points",
        ):
            check_int(f"evaluator.{name}", getattr(self, name))
        check_int("evaluator.reconstruction_examples", self.reconstruction_examples, minimum=0)
        check_bool("evaluator.plots", self.plots)
        check_number("evaluator.confidence_level", self.confidence_level, 0, 1, low_open=True, high_open=True)
        fewest = metrics.min_bootstrap_replicas(self.confidence_level)
        if 0 < self.n_bootstrap < fewest:
            raise ConfigError(
                f"evaluator.n_bootstrap={self.n_bootstrap} is too few for a "
                f"{self.confidence_level * 100:g}% interval (each tail needs a replica): use 0 for no "
                f"interval or at least {fewest}"
            )
        if not isinstance(self.fprs, list | tuple) or any(
            not is_number(f) or not 0 < f < 1 for f in self.fprs
        ):
            raise ConfigError(f"evaluator.fprs must be a list of numbers in (0, 1), got {self.fprs!r}")
        self.figure_style  # noqa: B018 - checks style, label, energy and formats

    @property
    def figure_style(self) -> plots.FigureStyle:
        """Look, experiment label and file formats of the run's figures."""
        return plots.FigureStyle(self.style, self.label, self.energy, tuple(self.formats))


def score_samples_by_name(
    detector, named_samples: dict[str, np.ndarray]
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """{score name: {sample: scores}} for every score the detector offers (``score_all``), primary
    (``score_name``) first, and the scoring time per event of each sample."""
    primary = detector.score_name
    by_name: dict[str, dict[str, np.ndarray]] = {primary: {}}
    timing = {}
    for sample, x in named_samples.items():
        start = time.perf_counter()
        result = dict(detector.score_all(x))
        if primary not in result:
            raise RuntimeError(
                f"{type(detector).__name__}.score_all gave {sorted(result)}, "
                f"not its primary score {primary!r}"
            )
        timing[sample] = (time.perf_counter() - start) / max(len(x), 1)
        for name, values in result.items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (len(x),):
                raise RuntimeError(
                    f"{type(detector).__name__} score {name!r} has shape {values.shape} for {len(x)} events"
                )
            if not np.isfinite(values).all():
                raise RuntimeError(
                    f"{type(detector).__name__} produced NaN or infinite {name} scores for {sample}"
                )
            by_name.setdefault(name, {})[sample] = values
    return by_name, timing


def inference_latency(detector, x: np.ndarray, settings: EvaluatorSettings) -> dict[str, dict]:
    """Per-event time of ``detector.score`` (seconds): one event per call, and one bulk call.

    Median over ``latency_repeats`` calls on a single event (after one warm-up call), and median over
    ``latency_bulk_repeats`` calls on the first ``latency_bulk_size`` events divided by their number.
    """
    one = np.ascontiguousarray(x[:1])
    bulk = np.ascontiguousarray(x[: settings.latency_bulk_size])
    detector.score(one)  # warm-up: lazy graph building and caches are not what a trigger pays per event

    def median_seconds(batch: np.ndarray, repeats: int) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            detector.score(batch)
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    single = median_seconds(one, settings.latency_repeats)
    bulk_total = median_seconds(bulk, settings.latency_bulk_repeats)
    return {
        "batch_of_one": {"seconds_per_event": single, "repeats": settings.latency_repeats},
        "bulk": {
            "seconds_per_event": bulk_total / max(len(bulk), 1),
            "batch_size": int(len(bulk)),
            "repeats": settings.latency_bulk_repeats,
        },
        "method": "median wall time of detector.score (time.perf_counter), after one warm-up call",
    }


def signal_metrics(scores: dict[str, np.ndarray], settings: EvaluatorSettings) -> dict[str, SignalResult]:
    """AUC with its bootstrap interval and TPR at fixed FPR of every signal against the background."""
    background = scores["background"]
    result = {}
    for name, values in scores.items():
        if name == "background":
            continue
        auc, interval = metrics.auc_with_interval(
            background, values, settings.n_bootstrap, settings.seed, settings.confidence_level
        )
        result[name] = SignalResult(
            auc=auc,
            auc_interval=interval,
            confidence_percent=round(settings.confidence_level * 100),
            tpr_at_fpr=metrics.tpr_at_fpr(background, values, settings.fprs, settings.min_background_above),
            n_signal=int(len(values)),
            n_background=int(len(background)),
        )
    return result


def write_scores(
    path: Path,
    scores: dict[str, np.ndarray],
    score_name: str,
    observables: dict,
    extra_scores: dict[str, dict[str, np.ndarray]] | None = None,
    attributes: dict | None = None,
    decorrelated: dict[str, np.ndarray] | None = None,
) -> None:
    """scores.h5: score and origin of every scored event, plus per-event observables where known.

    ``extra_scores`` ({score name: {sample: scores}}) are written as ``score_<name>`` beside ``score``;
    ``attributes`` are added to the file's attributes.
    ``decorrelated`` ({sample: scores}), the primary score made flat in an observable, as
    ``score_decorrelated``.
    """
    import h5py

    names = list(scores)
    with atomic_path(path, suffix=".partial.h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("score", data=np.concatenate([scores[n] for n in names]))
        for extra_name, extra in (extra_scores or {}).items():
            f.create_dataset(f"score_{extra_name}", data=np.concatenate([extra[n] for n in names]))
        if extra_scores:
            f.attrs["extra_score_names"] = list(extra_scores)
        if decorrelated is not None:
            f.create_dataset("score_decorrelated", data=np.concatenate([decorrelated[n] for n in names]))
        f.create_dataset(
            "origin",
            data=np.concatenate([np.full(len(scores[n]), i, dtype=np.int16) for i, n in enumerate(names)]),
        )
        f.attrs["origin_names"] = names
        f.attrs["score_name"] = score_name
        f.attrs["higher_is_more_anomalous"] = True
        for name, value in (attributes or {}).items():
            f.attrs[name] = value
        keys = sorted({key for name in names for key in observables.get(name, {})})
        for key in keys:
            if all(key in observables.get(n, {}) for n in names):
                f.create_dataset(key, data=np.concatenate([observables[n][key] for n in names]))


def write_extra_histograms(
    out_dir: Path, extra_scores: dict[str, dict[str, np.ndarray]], title: str
) -> list[str]:
    """loss_hist_<name>.png for every score beyond the primary one."""
    written = []
    for name, scores in extra_scores.items():
        plots.plot_score_histograms(scores, name.replace("_", " "), out_dir / f"loss_hist_{name}.png", title)
        written.append(f"loss_hist_{name}.png")
    return written


def write_figures(
    out_dir: Path,
    detector,
    samples,
    scores,
    signal_results,
    settings: EvaluatorSettings,
    title: str,
    radius: float | None,
    references: list | None = None,
) -> list[str]:
    """The run's figures; ``references`` (ReferenceCurve) are drawn dashed on roc.png."""
    written = []
    label = detector.score_name.replace("_", " ")
    plots.plot_score_histograms(scores, label, out_dir / "loss_hist.png", title)
    written.append("loss_hist.png")
    curves = {name: metrics.roc_curve_points(scores["background"], scores[name]) for name in signal_results}
    plots.plot_roc(
        curves, {n: r.auc for n, r in signal_results.items()}, out_dir / "roc.png", title, references
    )
    written.append("roc.png")
    if detector.history_:
        plots.plot_history(detector.history_, out_dir / "history.png", title)
        written.append("history.png")
    if detector.has_latent_space:
        latent = {
            name: detector.encode(x[: settings.latent_max_points])
            for name, x in samples.named_test_samples().items()
        }
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
        plots.plot_latent(
            latent, axis_labels, out_dir / "latent.png", title, settings.latent_max_points, settings.seed
        )
        written.append("latent.png")
    if detector.reconstructs_input and samples.representation == "image":
        n = max(settings.reconstruction_examples, 1)
        tests = samples.named_test_samples()
        subset = {name: x[: max(n, 500)] for name, x in tests.items()}
        plots.plot_reconstructions(
            subset,
            {k: detector.reconstruct(v) for k, v in subset.items()},
            out_dir / "reconstructions.png",
            radius or 1.0,
            settings.reconstruction_examples,
        )
        written.append("reconstructions.png")
    return written
