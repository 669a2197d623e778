"""Reference observables: how well one physics observable alone (jet mass, N-subjettiness τ32) separates
each signal from the background test sample, beside the detector's own ROC.

A reference is a cut on one observable on the side where the signal lies (chosen per signal, from the
signal itself): it is a yardstick for the detector, not an anomaly detector. A detector that a single
observable beats is not finding anything the observable does not already say.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hepad_cli.evaluation import metrics

#: Observables used as references where the data have them, with their labels for figures.
REFERENCE_OBSERVABLES = {"mass": "jet mass", "tau32": "τ32"}


@dataclass(frozen=True)
class ReferenceCurve:
    """One observable's ROC against one signal: the cut side, AUC and (FPR, TPR) points."""

    observable: str
    signal: str
    signal_side: str
    auc: float
    auc_interval: tuple[float, float]
    fpr: np.ndarray
    tpr: np.ndarray

    @property
    def label(self) -> str:
        return REFERENCE_OBSERVABLES.get(self.observable, self.observable)


def reference_curves(
    observables: dict[str, dict[str, np.ndarray]], signals: list[str], settings
) -> list[ReferenceCurve]:
    """Every reference observable the background and a signal both carry, against that signal."""
    curves = []
    background = observables.get("background", {})
    for name in REFERENCE_OBSERVABLES:
        if name not in background:
            continue
        for signal in signals:
            if name not in observables.get(signal, {}):
                continue
            bkg = np.asarray(background[name], np.float64)
            sig = np.asarray(observables[signal][name], np.float64)
            auc, _ = metrics.auc_with_interval(bkg, sig, 0)
            side = "above" if auc >= 0.5 else "below"
            sign = 1.0 if side == "above" else -1.0
            auc, interval = metrics.auc_with_interval(
                sign * bkg, sign * sig, settings.n_bootstrap, settings.seed, settings.confidence_level
            )
            fpr, tpr = metrics.roc_curve_points(sign * bkg, sign * sig)
            curves.append(ReferenceCurve(name, signal, side, auc, interval, fpr, tpr))
    return curves


def reference_report(curves: list[ReferenceCurve], confidence_level: float) -> dict:
    """The auc.json block: {observable: {signal: {"auc", "auc_interval_<cl>", "signal_side"}}}."""
    report: dict[str, dict] = {}
    for curve in curves:
        report.setdefault(curve.observable, {})[curve.signal] = {
            "auc": curve.auc,
            f"auc_interval_{round(confidence_level * 100)}": list(curve.auc_interval),
            "signal_side": curve.signal_side,
        }
    return report
