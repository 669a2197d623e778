"""ROC AUC with a bootstrap interval, and signal efficiency at fixed background efficiency."""

from __future__ import annotations

import math

import numpy as np

DEFAULT_FPRS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


def _grouped(background: np.ndarray, signal: np.ndarray):
    """Unique score values and, per event, the index of its value (ties share a group)."""
    scores = np.concatenate([background, signal]).astype(np.float64)
    values, group = np.unique(scores, return_inverse=True)
    return len(values), group[: len(background)], group[len(background) :]


def _weighted_auc(n_groups, bkg_group, sig_group, bkg_weight, sig_weight) -> float:
    """P(signal > background) + ½ P(tie), with per-event weights, in O(n) after grouping."""
    bkg_per_group = np.bincount(bkg_group, weights=bkg_weight, minlength=n_groups)
    sig_per_group = np.bincount(sig_group, weights=sig_weight, minlength=n_groups)
    bkg_below = np.cumsum(bkg_per_group) - bkg_per_group
    total = bkg_per_group.sum() * sig_per_group.sum()
    return (
        float(np.sum(sig_per_group * (bkg_below + 0.5 * bkg_per_group)) / total)
        if total > 0
        else float("nan")
    )


def auc_with_interval(
    background: np.ndarray,
    signal: np.ndarray,
    n_bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
    background_weights: np.ndarray | None = None,
    signal_weights: np.ndarray | None = None,
) -> tuple[float, tuple[float | None, float | None]]:
    """ROC AUC of signal against background and its percentile bootstrap interval ((None, None) when
    ``n_bootstrap`` is 0).

    The bootstrap resamples both samples with Poisson(1) weights, so each replica costs one pass.
    Optional per-event weights (e.g. luminosity) weight both the AUC and every replica.
    """
    n_groups, bkg_group, sig_group = _grouped(background, signal)
    bkg_weight = (
        np.ones(len(bkg_group)) if background_weights is None else np.asarray(background_weights, float)
    )
    sig_weight = np.ones(len(sig_group)) if signal_weights is None else np.asarray(signal_weights, float)
    auc = _weighted_auc(n_groups, bkg_group, sig_group, bkg_weight, sig_weight)
    rng = np.random.default_rng(seed)
    replicas = [
        _weighted_auc(
            n_groups,
            bkg_group,
            sig_group,
            bkg_weight * rng.poisson(1.0, len(bkg_group)),
            sig_weight * rng.poisson(1.0, len(sig_group)),
        )
        for _ in range(n_bootstrap)
    ]
    if not replicas:
        return auc, (None, None)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(replicas, [tail, 100 - tail])
    return auc, (float(low), float(high))


def min_bootstrap_replicas(level: float) -> int:
    """The fewest replicas whose percentile interval at ``level`` has at least one replica in each tail;
    with fewer, the "interval" is the range of a handful of replicas, not a confidence interval."""
    return math.ceil(round(2 / (1 - level), 9))


def threshold_at_fpr(background: np.ndarray, fpr: float, min_background_above: int = 1) -> float | None:
    """The score above which a fraction ``fpr`` of the background lies, or None where unresolved.

    The threshold at FPR f leaves k = floor(f · n_background) background events above it; when k is
    below ``min_background_above`` the sample cannot resolve f and the value is None (never extrapolated).
    """
    descending = np.sort(np.asarray(background, np.float64))[::-1]
    k = int(np.floor(fpr * len(descending)))
    if k < max(min_background_above, 1) or k >= len(descending):
        return None
    return float(descending[k])


def tpr_at_fpr(
    background: np.ndarray, signal: np.ndarray, fprs=DEFAULT_FPRS, min_background_above: int = 1
) -> dict[str, float | None]:
    """Signal efficiency at each background efficiency the test background can resolve (see
    ``threshold_at_fpr``)."""
    signal = np.asarray(signal, np.float64)
    result: dict[str, float | None] = {}
    for fpr in fprs:
        threshold = threshold_at_fpr(background, fpr, min_background_above)
        result[f"{fpr:.0e}"] = None if threshold is None else float(np.mean(signal > threshold))
    return result


def roc_curve_points(background: np.ndarray, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold."""
    from sklearn.metrics import roc_curve

    labels = np.concatenate([np.zeros(len(background)), np.ones(len(signal))])
    fpr, tpr, _ = roc_curve(labels, np.concatenate([background, signal]))
    return fpr, tpr
