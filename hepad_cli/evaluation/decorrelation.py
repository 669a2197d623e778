"""A second anomaly score that is flat in an observable (jet mass) on background, beside the raw one.

A per-observable-bin quantile transform, in the spirit of designed-decorrelated taggers (a cut at fixed
efficiency in every bin of the observable). Fitted on background validation events, split into ``bins``
bins of equal population in the observable:

1. In each bin, the median and the interquartile range of the score give a location and a scale,
   interpolated linearly between the bins' median observable values (the location is extrapolated
   linearly beyond the outer ones, so the wide outer bins do not keep a trend inside them); the score
   becomes the residual (score − location) / scale.
2. In each bin the transform keeps the residuals of the background events (at most ``MAX_POINTS`` order
   statistics). An event's decorrelated score is the fraction of its bin's background residuals below its
   own, interpolated linearly between neighbouring bins by the event's observable value.

On background it is uniform in [0, 1] at every value of the observable, so a cut on it keeps the same
fraction everywhere and does not sculpt the observable. Beyond the smallest and largest residual of a bin
it continues linearly, so the order of very anomalous events is kept (values above 1 lie above every
background residual that was fitted).

Fitted on background validation events only and saved in the run's model directory as
``decorrelation.json`` (plain JSON), so a tool that applies a finished run applies it too:

    from hepad_cli.evaluation import decorrelation
    transform = decorrelation.load(run_dir / "model")       # None: the run has no decorrelated score
    flat = transform.apply(scores, observables[transform.observable])
    flat = decorrelation.apply(run_dir / "model", scores, observables)   # the same in one call
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hepad_cli.errors import DataError
from hepad_cli.io import atomic_write_json

FILE = "decorrelation.json"
FORMAT = "hepad-decorrelation"
FORMAT_VERSION = 1
#: Background scores kept per bin (order statistics): enough for a smooth fraction, small on disk.
MAX_POINTS = 1000


@dataclass
class ScoreDecorrelation:
    """edges (n_bins + 1): observable bin edges; centres (n_bins): each bin's median observable value;
    location, scale (n_bins): median and interquartile range of the scores in each bin;
    reference_residuals[b]: sorted background residuals of bin b; n_fitted: background events fitted on."""

    observable: str
    edges: np.ndarray
    centres: np.ndarray
    location: np.ndarray
    scale: np.ndarray
    reference_residuals: list[np.ndarray]
    n_fitted: int

    def residuals(self, scores: np.ndarray, observable: np.ndarray) -> np.ndarray:
        """(score − location) / scale at each event's observable value (step 1 of the module docstring)."""
        location = np.interp(observable, self.centres, self.location)
        if len(self.centres) > 1:  # linear continuation beyond the outer bin centres
            for end, inner, beyond in (
                (0, 1, observable < self.centres[0]),
                (-1, -2, observable > self.centres[-1]),
            ):
                slope = (self.location[end] - self.location[inner]) / (
                    self.centres[end] - self.centres[inner]
                )
                location[beyond] = self.location[end] + slope * (observable[beyond] - self.centres[end])
        return (scores - location) / np.interp(observable, self.centres, self.scale)

    def _fractions(self, residuals: np.ndarray) -> np.ndarray:
        """(n_bins, n): fraction of each bin's background residuals below each one, continued linearly."""
        out = np.empty((len(self.reference_residuals), len(residuals)))
        for b, reference in enumerate(self.reference_residuals):
            levels = (np.arange(len(reference)) + 0.5) / len(reference)
            span = reference[-1] - reference[0]
            span = span if span > 0 else 1.0
            fraction = np.interp(residuals, reference, levels)
            below, above = residuals < reference[0], residuals > reference[-1]
            fraction[below] = levels[0] + (residuals[below] - reference[0]) / span
            fraction[above] = levels[-1] + (residuals[above] - reference[-1]) / span
            out[b] = fraction
        return out

    def apply(self, scores: np.ndarray, observable: np.ndarray) -> np.ndarray:
        """Decorrelated scores (n,) of events with raw ``scores`` and values of the ``observable``."""
        scores = np.asarray(scores, np.float64)
        observable = np.asarray(observable, np.float64)
        if scores.shape != observable.shape or scores.ndim != 1:
            raise DataError(
                f"decorrelation needs one {self.observable!r} value per score, got shapes "
                f"{observable.shape} and {scores.shape}"
            )
        fractions = self._fractions(self.residuals(scores, observable))
        position = np.interp(observable, self.centres, np.arange(len(self.centres), dtype=np.float64))
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, len(self.centres) - 1)
        weight = position - low
        events = np.arange(len(scores))
        return (1 - weight) * fractions[low, events] + weight * fractions[high, events]

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "observable": self.observable,
            "fitted_on": "background validation events",
            "fitted_on_events": self.n_fitted,
            "edges": self.edges.tolist(),
            "centres": self.centres.tolist(),
            "location": self.location.tolist(),
            "scale": self.scale.tolist(),
            "reference_residuals": [r.tolist() for r in self.reference_residuals],
        }


def fit(scores: np.ndarray, observable_values: np.ndarray, observable: str, bins: int) -> ScoreDecorrelation:
    """The transform, fitted on background events (their raw scores and observable values) only."""
    scores = np.asarray(scores, np.float64)
    values = np.asarray(observable_values, np.float64)
    if len(scores) != len(values) or len(scores) < 2 * bins:
        raise DataError(
            f"decorrelation in {bins} bins of {observable!r} needs at least 2 background validation events "
            f"per bin, got {len(scores)} events: lower evaluator.decorrelation_bins or use more events"
        )
    # Quantile edges that are observed values ("inverted_cdf"); repeated values collapse their bins.
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1), method="inverted_cdf"))
    if len(edges) < 2:
        raise DataError(f"the background {observable!r} takes a single value: nothing to decorrelate from")
    index = np.clip(np.searchsorted(edges[1:-1], values, side="right"), 0, len(edges) - 2)
    populations = np.bincount(index, minlength=len(edges) - 1)
    if populations.min() < 2:
        raise DataError(
            f"a bin of {observable!r} holds {populations.min()} background validation events; "
            "lower evaluator.decorrelation_bins"
        )
    in_bin = [index == b for b in range(len(edges) - 1)]
    centres = np.array([np.median(values[rows]) for rows in in_bin])
    # np.interp needs increasing centres; equal medians of neighbouring bins are nudged apart.
    centres = np.maximum.accumulate(centres)
    centres = centres + np.arange(len(centres)) * 1e-9 * np.maximum(np.abs(centres), 1.0)
    location = np.array([np.median(scores[rows]) for rows in in_bin])
    spread = np.array([np.subtract(*np.quantile(scores[rows], [0.75, 0.25])) for rows in in_bin])
    overall = np.subtract(*np.quantile(scores, [0.75, 0.25]))
    scale = np.where(spread > 0, spread, overall if overall > 0 else 1.0)
    transform = ScoreDecorrelation(observable, edges, centres, location, scale, [], int(len(scores)))
    residuals = transform.residuals(scores, values)
    for rows in in_bin:
        ordered = np.sort(residuals[rows])
        if len(ordered) > MAX_POINTS:
            ordered = ordered[np.linspace(0, len(ordered) - 1, MAX_POINTS).round().astype(int)]
        transform.reference_residuals.append(ordered)
    return transform


def save(transform: ScoreDecorrelation, directory: str | Path) -> Path:
    """Write ``decorrelation.json`` into the model directory (atomically)."""
    path = Path(directory) / FILE
    atomic_write_json(path, transform.to_dict())
    return path


def load(directory: str | Path) -> ScoreDecorrelation | None:
    """The transform saved in a model directory; None when the run did not decorrelate its score."""
    path = Path(directory) / FILE
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
        if stored.get("format") != FORMAT or stored.get("version") != FORMAT_VERSION:
            raise ValueError(f"format {stored.get('format')!r} version {stored.get('version')!r}")
        return ScoreDecorrelation(
            observable=str(stored["observable"]),
            edges=np.asarray(stored["edges"], np.float64),
            centres=np.asarray(stored["centres"], np.float64),
            location=np.asarray(stored["location"], np.float64),
            scale=np.asarray(stored["scale"], np.float64),
            reference_residuals=[np.asarray(r, np.float64) for r in stored["reference_residuals"]],
            n_fitted=int(stored["fitted_on_events"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path} is not a readable hepad decorrelation file ({error})") from None


def apply(
    directory: str | Path, scores: np.ndarray, observables: Mapping[str, np.ndarray]
) -> np.ndarray | None:
    """Decorrelated scores with the transform saved in ``directory`` (None when there is none);
    ``observables`` maps observable names to per-event values and must hold the transform's one."""
    transform = load(directory)
    if transform is None:
        return None
    if transform.observable not in observables:
        raise DataError(
            f"the decorrelated score needs the observable {transform.observable!r} of every event; "
            f"the events come with {sorted(observables) or 'no observables'}"
        )
    return transform.apply(scores, observables[transform.observable])
