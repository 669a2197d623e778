"""The physics checks of a run, beside the detector's metrics: background sculpting, the decorrelated score
and the reference observables. The pipeline calls these; each part lives in its own module
(``sculpting``, ``decorrelation``, ``references``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.evaluation import decorrelation
from hepad_cli.evaluation.references import ReferenceCurve, reference_curves, reference_report
from hepad_cli.evaluation.sculpting import plot_sculpting, sculpting_report

log = logging.getLogger(__name__)


@dataclass
class PhysicsResults:
    """auc.json blocks (``sections``: mass_sculpting, decorrelated, reference_observables; absent ones
    are not set), the reference curves for roc.png, and the figures written."""

    sections: dict = field(default_factory=dict)
    reference_curves: list[ReferenceCurve] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


def _common_observables(samples, names: list[str]) -> set[str]:
    sets = [set(samples.observables.get(name, {})) for name in names]
    return set.intersection(*sets) if sets else set()


def check_observables(settings, samples) -> None:
    """The observables the settings name exist in the data (checked right after loading, before fitting)."""
    settings.sculpting.observable_for(set(samples.observables.get("background", {})))
    if settings.decorrelate is None:
        return
    if samples.val_labels is not None:
        raise ConfigError(
            "evaluator.decorrelate is fitted on background validation events only, and this validation "
            f"sample holds labelled anomalous events ({samples.supervision}): use background-only training "
            "data (for cms_dqm: data.training=good_only) or evaluator.decorrelate=null"
        )
    needed = _common_observables(samples, list(samples.named_test_samples())) & set(
        samples.background_val_observables
    )
    if settings.decorrelate not in needed:
        raise ConfigError(
            f"evaluator.decorrelate={settings.decorrelate!r} is not an observable of every sample of this "
            f"dataset; available: {sorted(needed) or 'none'} (null = no decorrelated score)"
        )


def decorrelated_scores(
    detector, samples, settings, model_dir: Path, primary_scores: dict[str, np.ndarray]
) -> dict[str, np.ndarray] | None:
    """Fit the decorrelation on background validation events only, save it beside the model, and apply it
    to every test sample's primary scores. None when ``evaluator.decorrelate`` is null."""
    name = settings.decorrelate
    if name is None:
        return None
    validation_scores = np.asarray(detector.score(samples.background_val), np.float64)
    transform = decorrelation.fit(
        validation_scores, samples.background_val_observables[name], name, settings.decorrelation_bins
    )
    decorrelation.save(transform, model_dir)
    log.info("decorrelation in %s fitted on %d background validation events", name, transform.n_fitted)
    return {
        sample: transform.apply(scores, samples.observables[sample][name])
        for sample, scores in primary_scores.items()
    }


def physics_checks(
    samples, primary_scores, decorrelated, decorrelated_results, settings, out_dir: Path, title: str
) -> PhysicsResults:
    """Sculpting of the background observable by the raw (and decorrelated) score, and the reference
    observables' ROC curves. ``decorrelated_results``: SignalResult per signal of the decorrelated score."""
    results = PhysicsResults()
    background = samples.observables.get("background", {})
    signals = [name for name in primary_scores if name != "background"]
    curves = reference_curves(samples.observables, signals, settings)
    if curves:
        results.reference_curves = curves
        results.sections["reference_observables"] = reference_report(curves, settings.confidence_level)
    name = settings.sculpting.observable_for(set(background))
    scores_by_label = {"raw score": primary_scores["background"]}
    if decorrelated is not None:
        scores_by_label["decorrelated score"] = decorrelated["background"]
    reports = {}
    if name is not None:
        reports = {
            label: sculpting_report(
                scores,
                background[name],
                name,
                settings.sculpting,
                settings.min_background_above,
                settings.seed,
            )
            for label, scores in scores_by_label.items()
        }
        results.sections["mass_sculpting"] = reports["raw score"]
        if settings.plots:
            plot_sculpting(
                background[name],
                scores_by_label,
                reports,
                name,
                settings.sculpting,
                out_dir / "sculpting.png",
                title,
                settings.min_background_above,
            )
            results.figures.append("sculpting.png")
    if decorrelated is not None:
        results.sections["decorrelated"] = {
            "observable": settings.decorrelate,
            "fitted_on": "background validation events",
            "signals": {signal: result.to_dict() for signal, result in decorrelated_results.items()},
            **({"mass_sculpting": reports["decorrelated score"]} if reports else {}),
        }
    return results
