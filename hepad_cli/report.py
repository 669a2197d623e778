"""auc.json, the report of one run: the only code that writes and reads it.

``RunReport`` is written by the pipeline at the end of a complete run and read back by the sweep summary,
the Optuna objective, and any tool that applies a finished run. The file's keys are the output contract
documented in the README; readers never parse it by string elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hepad_cli.errors import DataError
from hepad_cli.io import atomic_write_json

FILE = "auc.json"


class ReportError(DataError):
    """An auc.json that is missing, truncated or not in the report's layout."""


def _fraction(value: Any, what: str, allow_none: bool = False) -> float | None:
    """A finite number in [0, 1] read from the file (AUC, TPR, interval ends), or None where allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{what} is {value!r}, not a number in [0, 1]")
    return float(value)


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} is {value!r}, not a count")
    return value


@dataclass
class SignalResult:
    """Separation of one signal from the background test sample by one score; the interval ends are None
    when no bootstrap ran (evaluator.n_bootstrap=0)."""

    auc: float
    auc_interval: tuple[float | None, float | None]
    confidence_percent: int
    tpr_at_fpr: dict[str, float | None]
    n_signal: int
    n_background: int

    def to_dict(self) -> dict:
        return {
            "auc": self.auc,
            f"auc_interval_{self.confidence_percent}": list(self.auc_interval),
            "tpr_at_fpr": self.tpr_at_fpr,
            "n_signal": self.n_signal,
            "n_background": self.n_background,
        }

    @classmethod
    def from_dict(cls, entry: dict, name: str = "signal") -> SignalResult:
        """The entry as written by to_dict; ValueError/KeyError/TypeError name what is malformed."""
        interval_key = next(k for k in entry if k.startswith("auc_interval_"))
        low, high = entry[interval_key]
        tprs = entry["tpr_at_fpr"]
        if not isinstance(tprs, dict):
            raise ValueError(f"{name} tpr_at_fpr is {tprs!r}, not a mapping")
        return cls(
            auc=_fraction(entry["auc"], f"{name} auc"),
            auc_interval=(
                _fraction(low, f"{name} {interval_key}", allow_none=True),
                _fraction(high, f"{name} {interval_key}", allow_none=True),
            ),
            confidence_percent=int(interval_key.rsplit("_", 1)[1]),
            tpr_at_fpr={
                str(k): _fraction(v, f"{name} tpr_at_fpr[{k}]", allow_none=True) for k, v in tprs.items()
            },
            n_signal=_count(entry["n_signal"], f"{name} n_signal"),
            n_background=_count(entry["n_background"], f"{name} n_background"),
        )


# Keys the report owns; anything else in the file is a detector's own section (``sections``).
_CORE_KEYS = (
    "score",
    "signals",
    "scores_by_name",
    "supervision",
    "inverted",
    "trained_on",
    "mass_sculpting",
    "decorrelated",
    "reference_observables",
    "events",
    "data_verified",
    "unverified_files",
    "warnings",
    "scoring_seconds_per_event",
    "inference_seconds_per_event",
    "timing_s",
    "figures",
    "run_id",
)


@dataclass
class RunReport:
    """What auc.json holds. ``signals``: the primary score's results per signal; ``scores_by_name``: every
    score's results (detectors with several scores); ``sections``: detector-specific entries.

    Physics checks: ``inverted`` (the inverse task, trained on the signal ``trained_on``),
    ``mass_sculpting`` (the background observable after cuts on the score), ``decorrelated`` (the
    decorrelated score's results and sculpting), ``reference_observables`` (one observable's AUC per
    signal); the README documents their layout."""

    score: str
    signals: dict[str, SignalResult]
    events: dict[str, int]
    data_verified: bool
    unverified_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scores_by_name: dict[str, dict[str, SignalResult]] | None = None
    supervision: str | None = None
    inverted: bool = False
    trained_on: str | None = None
    mass_sculpting: dict[str, Any] | None = None
    decorrelated: dict[str, Any] | None = None
    reference_observables: dict[str, Any] | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    scoring_seconds_per_event: dict[str, float] = field(default_factory=dict)
    inference_seconds_per_event: dict[str, Any] = field(default_factory=dict)
    timing_s: dict[str, float] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    run_id: str | None = None  # the run that wrote it, as in its status.json and run_info.json

    def mean_auc(self) -> float:
        """The mean AUC over the signals (what an optimising sweeper maximises)."""
        return sum(r.auc for r in self.signals.values()) / len(self.signals)

    def auc_line(self) -> str:
        """'top AUC 0.879, w AUC 0.642, ...': the primary score's AUC per signal, as the commands print it."""
        return ", ".join(f"{name} AUC {result.auc:.3f}" for name, result in self.signals.items())

    def stronger_references(self) -> dict[str, dict[str, float]]:
        """{signal: {observable: its AUC}} where a cut on that observable alone beats the primary score."""
        stronger: dict[str, dict[str, float]] = {}
        for observable, by_signal in (self.reference_observables or {}).items():
            for signal, reference in by_signal.items():
                result = self.signals.get(signal)
                if result is not None and reference is not None and reference["auc"] > result.auc:
                    stronger.setdefault(signal, {})[observable] = reference["auc"]
        return stronger

    def bulk_seconds_per_event(self) -> float | None:
        """Bulk per-event scoring time as the run measured it (median of repeated calls)."""
        value = (self.inference_seconds_per_event.get("bulk") or {}).get("seconds_per_event")
        return float(value) if isinstance(value, int | float) else None

    def sculpting_js_divergence(self, background_efficiency: str = "0.1") -> float | None:
        """JS divergence of the background observable after the cut keeping that background fraction."""
        entry = (self.mass_sculpting or {}).get("by_background_efficiency", {}).get(background_efficiency)
        return float(entry["js_divergence"]) if entry else None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "score": self.score,
            "signals": {name: r.to_dict() for name, r in self.signals.items()},
        }
        if self.scores_by_name:
            out["scores_by_name"] = {
                score: {name: r.to_dict() for name, r in results.items()}
                for score, results in self.scores_by_name.items()
            }
        if self.supervision:
            out["supervision"] = self.supervision
        out["inverted"] = self.inverted
        if self.trained_on is not None:
            out["trained_on"] = self.trained_on
        for key in ("mass_sculpting", "decorrelated", "reference_observables"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out |= self.sections
        out |= {
            "events": self.events,
            "data_verified": self.data_verified,
            "unverified_files": self.unverified_files,
            "warnings": self.warnings,
            "scoring_seconds_per_event": self.scoring_seconds_per_event,
            "inference_seconds_per_event": self.inference_seconds_per_event,
            "timing_s": self.timing_s,
            "figures": self.figures,
        }
        if self.run_id is not None:
            out["run_id"] = self.run_id
        return out

    def write(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, data: dict) -> RunReport:
        if not isinstance(data, dict):
            raise ValueError(f"the file holds a {type(data).__name__}, not a report")
        if not isinstance(data["signals"], dict) or not data["signals"]:
            raise ValueError(f"'signals' is {data['signals']!r}, not a mapping of signal results")
        if not isinstance(data["data_verified"], bool):
            raise ValueError(f"'data_verified' is {data['data_verified']!r}, not true or false")
        return cls(
            score=str(data["score"]),
            signals={
                name: SignalResult.from_dict(e, f"signal {name!r}") for name, e in data["signals"].items()
            },
            events={str(k): _count(v, f"events[{k}]") for k, v in dict(data["events"]).items()},
            data_verified=data["data_verified"],
            unverified_files=list(data.get("unverified_files", [])),
            warnings=list(data.get("warnings", [])),
            scores_by_name={
                score: {
                    name: SignalResult.from_dict(e, f"{score} signal {name!r}") for name, e in results.items()
                }
                for score, results in data["scores_by_name"].items()
            }
            if data.get("scores_by_name")
            else None,
            supervision=data.get("supervision"),
            inverted=bool(data.get("inverted", False)),
            trained_on=data.get("trained_on"),
            mass_sculpting=data.get("mass_sculpting"),
            decorrelated=data.get("decorrelated"),
            reference_observables=data.get("reference_observables"),
            sections={k: v for k, v in data.items() if k not in _CORE_KEYS},
            scoring_seconds_per_event=dict(data.get("scoring_seconds_per_event", {})),
            inference_seconds_per_event=dict(data.get("inference_seconds_per_event", {})),
            timing_s=dict(data.get("timing_s", {})),
            figures=list(data.get("figures", [])),
            run_id=data.get("run_id"),
        )

    @classmethod
    def read(cls, directory: str | Path) -> RunReport:
        """The report of the run in ``directory``; ReportError names what is wrong with the file."""
        path = Path(directory) / FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ReportError(f"{path} does not exist: the run did not complete") from None
        except (OSError, ValueError) as error:
            raise ReportError(f"{path} is unreadable or truncated ({error})") from None
        try:
            return cls.from_dict(data)
        except KeyError as error:
            raise ReportError(
                f"{path} is not a hepad run report (no key {error}); was it edited by hand?"
            ) from None
        except (TypeError, ValueError, StopIteration, AttributeError) as error:
            reason = error or "no auc_interval entry"
            raise ReportError(
                f"{path} is not a hepad run report ({reason}); was it edited by hand?"
            ) from None
