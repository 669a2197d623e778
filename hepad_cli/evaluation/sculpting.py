"""Does a cut on the anomaly score sculpt the background? Histograms of a per-event observable (jet mass)
of the background test events before and after cuts that keep fixed background fractions.

A score that is correlated with the jet mass turns a falling QCD mass spectrum into a bump after the cut,
which a bump hunt on the selected events would take for a signal. For each background efficiency ε the
cut is the one ``metrics.threshold_at_fpr`` draws for TPR at FPR = ε; the report gives the
Jensen–Shannon divergence (base 2: 0 = same shape, 1 = disjoint) between the normalised histograms before
and after the cut, the medians, the number of events kept, and the divergence a random selection of the
same size gives (the statistical floor of the finite sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.evaluation import metrics
from hepad_cli.validation import check_int, is_number

KEY = "evaluator.sculpting"
DEFAULT_EFFICIENCIES = (0.5, 0.1, 0.01)
#: Random selections averaged for the statistical floor of the divergence.
RANDOM_SELECTIONS = 20
#: Observables with a unit, for axis labels.
UNITS = {"mass": "jet mass [GeV]", "pt": "jet pT [GeV]", "met": "MET [GeV]", "ht": "HT [GeV]"}


@dataclass(frozen=True)
class SculptingSettings:
    """observable: name of the per-event observable (None: ``mass`` where the data have it); cuts at
    ``background_efficiencies``; histograms of ``bins`` bins over ``range`` (None: the 0.5–99.5 %
    quantiles of the background observable; entries outside go into the outer bins)."""

    observable: str | None = None
    background_efficiencies: tuple[float, ...] | list[float] = DEFAULT_EFFICIENCIES
    bins: int = 20
    range: tuple[float, float] | list[float] | None = None

    def __post_init__(self) -> None:
        if self.observable is not None and not isinstance(self.observable, str):
            raise ConfigError(f"{KEY}.observable must name an observable or be null, got {self.observable!r}")
        efficiencies = self.background_efficiencies
        if (
            not isinstance(efficiencies, list | tuple)
            or not efficiencies
            or any(not is_number(e) or not 0 < e < 1 for e in efficiencies)
        ):
            raise ConfigError(
                f"{KEY}.background_efficiencies must be a non-empty list of numbers in (0, 1), "
                f"e.g. [0.5, 0.1, 0.01]; got {efficiencies!r}"
            )
        check_int(f"{KEY}.bins", self.bins, minimum=2)
        if self.range is not None and (
            not isinstance(self.range, list | tuple)
            or len(self.range) != 2
            or not all(is_number(v) for v in self.range)
            or not self.range[0] < self.range[1]
        ):
            raise ConfigError(f"{KEY}.range must be [low, high] with low < high, or null; got {self.range!r}")

    def observable_for(self, available: set[str]) -> str | None:
        """The observable to report on among those the data have (None: no sculpting report)."""
        if self.observable is None:
            return "mass" if "mass" in available else None
        if self.observable not in available:
            raise ConfigError(
                f"{KEY}.observable={self.observable!r} is not an observable of this dataset; "
                f"it has {sorted(available) or 'none'} (null = mass where available)"
            )
        return self.observable


def js_divergence(counts_p: np.ndarray, counts_q: np.ndarray) -> float:
    """Jensen–Shannon divergence in bits between two histograms (normalised here): 0 to 1."""
    p = np.asarray(counts_p, np.float64) / np.sum(counts_p)
    q = np.asarray(counts_q, np.float64) / np.sum(counts_q)
    m = 0.5 * (p + q)

    def kl_to_m(a: np.ndarray) -> float:
        keep = a > 0
        return float(np.sum(a[keep] * np.log2(a[keep] / m[keep])))

    return 0.5 * kl_to_m(p) + 0.5 * kl_to_m(q)


def histogram_edges(values: np.ndarray, bins: int, value_range=None) -> np.ndarray:
    """Equal-width edges over ``value_range`` or the 0.5–99.5 % quantiles of ``values``."""
    low, high = value_range if value_range is not None else np.quantile(values, [0.005, 0.995])
    if not high > low:
        high = low + 1.0
    return np.linspace(float(low), float(high), bins + 1)


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin; values below or above the edges are counted in the outer bins."""
    return np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0]


def efficiency_key(efficiency: float) -> str:
    return f"{efficiency:g}"


def sculpting_report(
    scores: np.ndarray,
    observable: np.ndarray,
    name: str,
    settings: SculptingSettings,
    min_events: int = 10,
    seed: int = 0,
) -> dict:
    """The auc.json block for one score on the background test events (null where < min_events pass)."""
    from scipy.stats import spearmanr

    scores = np.asarray(scores, np.float64)
    observable = np.asarray(observable, np.float64)
    edges = histogram_edges(observable, settings.bins, settings.range)
    before = histogram(observable, edges)
    rng = np.random.default_rng(seed)
    by_efficiency: dict[str, dict | None] = {}
    for efficiency in settings.background_efficiencies:
        threshold = metrics.threshold_at_fpr(scores, efficiency, min_events)
        selected = scores > threshold if threshold is not None else np.zeros(len(scores), bool)
        n_selected = int(selected.sum())
        if n_selected < min_events:
            by_efficiency[efficiency_key(efficiency)] = None
            continue
        floor = np.mean(
            [
                js_divergence(before, histogram(rng.choice(observable, n_selected, replace=False), edges))
                for _ in range(RANDOM_SELECTIONS)
            ]
        )
        by_efficiency[efficiency_key(efficiency)] = {
            "js_divergence": js_divergence(before, histogram(observable[selected], edges)),
            "js_divergence_random_selection": float(floor),
            "median_before": float(np.median(observable)),
            "median_after": float(np.median(observable[selected])),
            "n_selected": n_selected,
        }
    spearman = spearmanr(scores, observable).statistic if len(scores) > 1 else float("nan")
    return {
        "observable": name,
        "spearman": None if not np.isfinite(spearman) else float(spearman),
        "n_background": int(len(scores)),
        "histogram": {"bins": settings.bins, "range": [float(edges[0]), float(edges[-1])]},
        "by_background_efficiency": by_efficiency,
    }


def plot_sculpting(
    observable: np.ndarray,
    scores_by_label: dict[str, np.ndarray],
    reports: dict[str, dict],
    name: str,
    settings: SculptingSettings,
    path: Path,
    title: str,
    min_events: int = 10,
) -> None:
    """Background observable before and after each cut, one panel per score (density, shared bins)."""
    from hepad_cli.evaluation.plots import BACKGROUND_COLOUR, save_figure, styled_pyplot

    plt = styled_pyplot()
    edges = histogram_edges(observable, settings.bins, settings.range)
    fig, axes = plt.subplots(1, len(scores_by_label), figsize=(8 * len(scores_by_label), 6), squeeze=False)
    colours = plt.get_cmap("viridis")(np.linspace(0.15, 0.85, len(settings.background_efficiencies)))
    for ax, (label, scores) in zip(axes[0], scores_by_label.items(), strict=True):
        ax.hist(
            np.clip(observable, edges[0], edges[-1]),
            bins=edges,
            density=True,
            histtype="stepfilled",
            color=BACKGROUND_COLOUR,
            alpha=0.35,
            label=f"all background ({len(observable):,})",
        )
        for colour, efficiency in zip(colours, settings.background_efficiencies, strict=True):
            entry = reports[label]["by_background_efficiency"][efficiency_key(efficiency)]
            if entry is None:
                continue
            threshold = metrics.threshold_at_fpr(scores, efficiency, min_events)
            kept = observable[scores > threshold]
            ax.hist(
                np.clip(kept, edges[0], edges[-1]),
                bins=edges,
                density=True,
                histtype="step",
                linewidth=2,
                color=colour,
                label=(
                    f"keep {efficiency:.0%} ({entry['n_selected']:,}): JS {entry['js_divergence']:.3f}"
                    f" (random cut {entry['js_divergence_random_selection']:.3f})"
                ),
            )
        spearman = reports[label]["spearman"]
        ax.set_title(f"{label}: Spearman {spearman:.2f}" if spearman is not None else label, fontsize=14)
        ax.set_xlabel(UNITS.get(name, name) + " (outer bins include overflow)")
        ax.set_ylabel("density")
        ax.legend(fontsize=11)
    fig.suptitle(f"{title}: background after cuts on the score", fontsize=15)
    save_figure(fig, path)
