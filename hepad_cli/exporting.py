"""The export pipeline behind hepad-export: a finished run's detector → firmware or NumPy scorer, and,
with ``emulate=true``, the run's samples scored through the export and compared with the float detector.

The comparison answers the trigger question: which AUC, and which signal efficiency at the trigger's
background rate, survive the exported (fixed-point) detector. Per precision, export.json holds the float
and exported AUC with its interval and TPR at each FPR of the run's evaluator (null where the background
test sample cannot resolve it), the largest score difference, and the share of background events whose
trigger decision flips at ``trigger_fpr`` (each score's threshold set to pass that rate).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from hepad_cli.errors import ConfigError
from hepad_cli.firmware import INPUT_LAYER, FirmwareSettings, FixedPoint
from hepad_cli.io import atomic_write_json
from hepad_cli.validation import check_bool, check_choice, check_int, check_number

log = logging.getLogger(__name__)

FORMATS = ("hls4ml", "numpy")
FIGURE = "export_auc_vs_precision.png"


@dataclass
class ExportSettings:
    """The export's own keys of conf/export.yaml, checked before any work."""

    format: str = "hls4ml"
    scan: list[str] | None = None
    emulate: bool = False
    max_events: int | None = None
    trigger_fpr: float = 1e-5
    progress_bar: bool = True
    firmware: FirmwareSettings = field(default_factory=FirmwareSettings)

    def __post_init__(self) -> None:
        if self.format == "onnx":
            raise ConfigError(
                "format=onnx is not available: hepad-export writes format=hls4ml (firmware) or format=numpy "
                "(the CPU scorer, faster than ONNX Runtime for these networks)"
            )
        check_choice("format", self.format, FORMATS)
        check_bool("emulate", self.emulate)
        check_bool("progress_bar", self.progress_bar)
        check_int("max_events", self.max_events, allow_none=True, hint="null = all")
        check_number("trigger_fpr", self.trigger_fpr, 0, 1, low_open=True, high_open=True, hint="e.g. 1e-5")
        if self.scan is not None:
            if self.format != "hls4ml":
                raise ConfigError("scan lists precisions of format=hls4ml; drop it for format=numpy")
            if not isinstance(self.scan, list) or not self.scan:
                raise ConfigError(
                    "scan must be a non-empty list of ap_fixed types, e.g. "
                    f"scan=[ap_fixed<8,3>,ap_fixed<16,6>], got {self.scan!r}"
                )
            parsed = [str(FixedPoint.parse(text, "scan")) for text in self.scan]
            if len(set(parsed)) != len(parsed):
                raise ConfigError(f"scan lists a precision twice: {self.scan}")
            # Every precision must make a valid configuration, before the first project is written.
            for text in self.scan:
                self.firmware.with_precision(text)

    @property
    def precisions(self) -> list[str]:
        return (
            [str(FixedPoint.parse(p, "scan")) for p in self.scan]
            if self.scan
            else [str(self.firmware.network_type)]
        )

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ExportSettings:
        values = OmegaConf.to_container(cfg, resolve=True)
        firmware_keys = set(FirmwareSettings.__dataclass_fields__)
        firmware = FirmwareSettings(**{k: v for k, v in values.items() if k in firmware_keys})
        own = {
            k: values[k] for k in ("format", "scan", "emulate", "max_events", "trigger_fpr", "progress_bar")
        }
        return cls(**own, firmware=firmware)


def export(cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None) -> dict:
    """Run one export as the composed config says; returns the content of export.json.

    Everything a user can get wrong is checked before the first file is written; a failure after that
    marks the export failed in its status.json.
    """
    from hepad_cli.firmware import score_network
    from hepad_cli.provenance import RunRecord
    from hepad_cli.runs import FinishedRun

    run = FinishedRun.open(cfg.run_dir)
    settings = ExportSettings.from_config(cfg)
    network = score_network(run.detector)
    if settings.emulate:
        run.check_data_files()
    if settings.format == "hls4ml":
        from hepad_cli.firmware import check_firmware

        for precision in settings.precisions:
            check_firmware(network, settings.firmware.with_precision(precision))

    out_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(out_dir, OmegaConf.to_container(cfg, resolve=True), overrides or [])
    timing: dict[str, float] = {}
    try:
        report = {
            "format": settings.format,
            "run_dir": str(run.directory.resolve()),
            "detector": network.detector,
            "score": network.score_name,
            "versions": _versions(),
        }
        samples = float_scores = evaluator = None
        if settings.emulate:
            start = time.perf_counter()
            samples = _scored_samples(run, settings.max_events)
            timing["data"] = time.perf_counter() - start
            start = time.perf_counter()
            float_scores = {name: run.detector.score(x) for name, x in samples.items()}
            timing["float_scores"] = time.perf_counter() - start
            report["events"] = {name: len(x) for name, x in samples.items()}
            evaluator = _evaluator(run.config)
        if settings.format == "numpy":
            scorer, description = _export_numpy(network, out_dir)
            report |= description
            if samples is not None:
                factor = description["score_factor"]
                exported = {name: scorer.score(x) * factor for name, x in samples.items()}
                report["comparison"] = compare_scores(
                    float_scores, exported, "numpy", evaluator, settings.trigger_fpr
                )
        else:
            report |= _firmware_description(network, settings)
            report["precisions"] = {}
            for precision in settings.precisions:
                firmware = settings.firmware.with_precision(precision)
                entry = _export_firmware(
                    network, firmware, out_dir, samples, float_scores, evaluator, settings
                )
                report["precisions"][precision] = entry
                log.info("%s: %s", precision, _summary_line(entry))
            if samples is not None:
                report["figures"] = [FIGURE]
                plot_auc_vs_precision(report, out_dir / FIGURE)
        report["timing_s"] = timing
        atomic_write_json(out_dir / "export.json", report)
        record.add(timing_s=timing)
        record.complete()
        return report
    except BaseException as error:
        record.failed(error)
        raise


# ----------------------------------------------------------------------------------------------------
# Pieces


def _versions() -> dict[str, str | None]:
    from hepad_cli.firmware import compiler_version

    versions = {}
    for name in ("hls4ml", "keras", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["g++"] = compiler_version()
    return versions


def _evaluator(config: DictConfig) -> dict:
    """The run's own metric settings, so exported and run AUCs are computed alike."""
    evaluator = OmegaConf.to_container(config.get("evaluator", {}), resolve=True) or {}
    return {
        "n_bootstrap": int(evaluator.get("n_bootstrap", 200)),
        "confidence_level": float(evaluator.get("confidence_level", 0.95)),
        "fprs": tuple(evaluator.get("fprs", (1e-1, 1e-2, 1e-3, 1e-4, 1e-5))),
        "min_background_above": int(evaluator.get("min_background_above", 10)),
        "seed": int(config.get("seed", 0)),
    }


def _scored_samples(run, max_events: int | None) -> dict[str, np.ndarray]:
    """Background test and every signal of the run; at most ``max_events`` each (seeded subsample)."""
    samples = run.load_samples()
    named = {"background": samples.background_test, **samples.signals}
    if max_events is None:
        return named
    rng = np.random.default_rng(int(run.config.get("seed", 0)))
    return {
        name: x if len(x) <= max_events else x[np.sort(rng.choice(len(x), max_events, replace=False))]
        for name, x in named.items()
    }


def _export_numpy(network, out_dir: Path):
    """scorer.npz (checked against Keras at export) and what export.json says about it."""
    from hepad_cli.export import export_dense

    scorer = export_dense(network.reconstruction_model, out_dir / "scorer.npz")
    # DenseScorer gives the mean squared error; a detector scoring the sum (the VAE) is n times it.
    factor = network.score_factor * network.n_features
    return scorer, {
        "scorer": "scorer.npz",
        "usage": "hepad_cli.export.DenseScorer.load('scorer.npz').score(events)"
        + ("" if factor == 1 else f" × {factor:g} = the detector's score"),
        "score_factor": factor,
        "checked_against_keras": "relative difference ≤ 1e-5 on 256 random events (at export)",
    }


def _firmware_description(network, settings: ExportSettings) -> dict:
    firmware = settings.firmware
    on_chip = (
        f"Σ (x̂ − x)² over the {network.n_features} inputs (Subtract → Multiply → Dense(1) of ones); "
        + (
            f"divided by {network.n_features} after the chip to give the detector's mean"
            if network.reduction == "mean"
            else "the detector's own score (a sum)"
        )
    )
    build = (
        "vitis-run --tcl build_prj.tcl --mode hls"
        if firmware.backend == "Vitis"
        else "vivado_hls -f build_prj.tcl"
    )
    return {
        "score_on_chip": on_chip,
        "settings": {
            "backend": firmware.backend,
            "part": firmware.part,
            "clock_period_ns": firmware.clock_period,
            "io_type": "io_parallel",
            "strategy": firmware.strategy,
            "reuse_factor": firmware.reuse_factor,
            "input_precision": firmware.input_precision or "the network precision",
            "score_precision": firmware.score_precision,
            "layer_precision": firmware.layer_precision,
            "table_size": firmware.table_size,
            "trigger_fpr": settings.trigger_fpr,
        },
        "resources_and_latency": {
            "estimated": False,
            "reason": (
                f"hls4ml {metadata.version('hls4ml')} reports latency and FPGA resources only from a "
                f"{firmware.backend} HLS synthesis of the project (its build(), then "
                "hls4ml.report.read_vivado_report); that needs the vendor tools, which hepad-export does not "
                f"run. Where they are installed: cd <project> && {build}"
            ),
        },
    }


def _export_firmware(network, firmware, out_dir, samples, float_scores, evaluator, settings) -> dict:
    """One precision: the HLS project, and with samples its emulated scores compared with the float ones."""
    from hepad_cli.firmware import firmware_project, layer_ranges

    directory = out_dir / "hls4ml" / firmware.network_type.directory_name
    directory.parent.mkdir(parents=True, exist_ok=True)
    with firmware_project(network, firmware, directory, emulate=samples is not None) as project:
        entry = {
            "project": str(directory.relative_to(out_dir)),
            "layers": project.layers,
            "warnings": project.warnings,
        }
        if samples is not None:
            entry["compile_seconds"] = project.compile_seconds
            start = time.perf_counter()
            fixed = {name: project.score(x, settings.progress_bar) for name, x in samples.items()}
            seconds = time.perf_counter() - start
            entry["emulation_seconds_per_event"] = seconds / max(sum(map(len, samples.values())), 1)
            entry["comparison"] = compare_scores(
                float_scores, fixed, "fixed", evaluator, settings.trigger_fpr
            )
            entry["value_ranges"] = layer_ranges(network, firmware, samples.values())
            entry["warnings"] += _overflow_warnings(entry["value_ranges"], firmware)
    return entry


def _overflow_warnings(ranges: dict[str, dict], firmware: FirmwareSettings) -> list[str]:
    """One warning per layer whose float values do not fit its type, with the type that would hold them."""
    warnings = []
    for layer, entry in ranges.items():
        if entry["share_outside"] == 0:
            continue
        kind = firmware.result_type(layer)
        wider = FixedPoint(
            kind.width + max(entry["integer_bits_needed"] - kind.integer, 0),
            max(entry["integer_bits_needed"], kind.integer),
            kind.signed,
            kind.quantisation,
            kind.overflow,
        )
        key = "input_precision" if layer == INPUT_LAYER else f"+layer_precision.{layer}"
        warnings.append(
            f"{entry['share_outside']:.2%} of the float values of layer {layer} lie outside {kind} "
            f"[{kind.lowest:g}, {kind.highest:g}] (largest |value| {entry['max_abs']:.4g}) and wrap or "
            f"saturate on chip: {key}={wider} holds them"
            + (", or train on scaled inputs (data.scaling=standard)" if layer == INPUT_LAYER else "")
        )
    return warnings


def _summary_line(entry: dict) -> str:
    comparison = entry.get("comparison")
    if not comparison:
        return f"project written to {entry['project']}"
    aucs = ", ".join(
        f"{name} AUC {r['auc_float']:.3f} → {r['auc_fixed']:.3f}" for name, r in comparison["signals"].items()
    )
    return f"{aucs}; largest score difference {comparison['max_abs_score_difference']:.3g}"


# ----------------------------------------------------------------------------------------------------
# Float against exported scores


def trigger_threshold(background: np.ndarray, fpr: float) -> float | None:
    """The score above which a share ``fpr`` of background passes (``tpr_at_fpr``'s convention)."""
    descending = np.sort(np.asarray(background, np.float64))[::-1]
    k = int(np.floor(fpr * len(descending)))
    if k < 1 or k >= len(descending):
        return None
    return float(descending[k])


def compare_scores(
    float_scores: dict[str, np.ndarray],
    exported: dict[str, np.ndarray],
    label: str,
    evaluator: dict,
    trigger_fpr: float,
) -> dict:
    """Float against exported scores of the same events: AUC, TPR at FPR, differences, decision flips.

    ``label`` names the exported kind in the keys ("fixed" → ``auc_fixed``). The two need not share a
    scale for AUC and TPR; the differences are in the detector's units.
    """
    from hepad_cli.evaluation.metrics import auc_with_interval, tpr_at_fpr

    level = evaluator["confidence_level"]
    interval_key = f"interval_{round(level * 100)}"
    differences = np.concatenate([exported[name] - float_scores[name] for name in float_scores])
    reference = np.concatenate([float_scores[name] for name in float_scores])
    background_float, background_exported = float_scores["background"], exported["background"]
    result = {
        "max_abs_score_difference": float(np.max(np.abs(differences))) if differences.size else 0.0,
        "max_relative_score_difference": float(
            np.max(np.abs(differences) / np.maximum(np.abs(reference), np.finfo(np.float64).tiny))
        )
        if differences.size
        else 0.0,
        "median_abs_score_difference": float(np.median(np.abs(differences))) if differences.size else 0.0,
        "trigger": _decision_flips(background_float, background_exported, label, trigger_fpr, evaluator),
        "signals": {},
    }
    for name in float_scores:
        if name == "background":
            continue
        entry: dict = {}
        for kind, scores in (("float", float_scores), (label, exported)):
            auc, interval = auc_with_interval(
                scores["background"], scores[name], evaluator["n_bootstrap"], evaluator["seed"], level
            )
            entry[f"auc_{kind}"] = auc
            entry[f"auc_{kind}_{interval_key}"] = list(interval)
        entry["auc_change"] = entry[f"auc_{label}"] - entry["auc_float"]
        for kind, scores in (("float", float_scores), (label, exported)):
            entry[f"tpr_at_fpr_{kind}"] = tpr_at_fpr(
                scores["background"], scores[name], evaluator["fprs"], evaluator["min_background_above"]
            )
        entry["n_signal"] = len(float_scores[name])
        entry["n_background"] = len(background_float)
        result["signals"][name] = entry
    return result


def _decision_flips(background_float, background_exported, label: str, fpr: float, evaluator: dict) -> dict:
    """Background events passing one trigger but not the other, each threshold set to pass ``fpr``."""
    n = len(background_float)
    k = int(np.floor(fpr * n))
    entry = {"fpr": fpr, "n_background": n}
    if k < max(evaluator["min_background_above"], 1) or k >= n:
        needed = int(np.ceil(max(evaluator["min_background_above"], 1) / fpr))
        return entry | {
            "background_flip_share": None,
            "why_null": f"{n} background test events leave {k} above the threshold; resolving FPR {fpr:g} "
            f"needs at least {needed} (evaluator.min_background_above)",
        }
    threshold_float = trigger_threshold(background_float, fpr)
    threshold_exported = trigger_threshold(background_exported, fpr)
    passes_float = background_float > threshold_float
    passes_exported = background_exported > threshold_exported
    flips = int(np.count_nonzero(passes_float != passes_exported))
    return entry | {
        "threshold_float": threshold_float,
        f"threshold_{label}": threshold_exported,
        "passing_float": int(passes_float.sum()),
        f"passing_{label}": int(passes_exported.sum()),
        "background_flips": flips,
        "background_flip_share": flips / n,
        # 1.0: the exported trigger fires on the same background events as the float one; 0.0: on others.
        "float_triggered_kept_share": float(
            np.count_nonzero(passes_float & passes_exported) / passes_float.sum()
        )
        if passes_float.any()
        else None,
    }


# ----------------------------------------------------------------------------------------------------
# Figure


def plot_auc_vs_precision(report: dict, path: Path) -> None:
    """AUC of each signal against the precision (fixed point: points with intervals; float: dashed)."""
    from hepad_cli.evaluation.plots import save_figure, styled_pyplot

    plt = styled_pyplot()
    precisions = list(report["precisions"])
    order = sorted(precisions, key=lambda p: (FixedPoint.parse(p).width, FixedPoint.parse(p).integer))
    positions = np.arange(len(order))
    first = report["precisions"][order[0]]["comparison"]["signals"]
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(order) + 4), 6))
    # Signals side by side at each precision, so that their intervals do not hide each other.
    offsets = np.linspace(-0.15, 0.15, len(first)) if len(first) > 1 else np.zeros(1)
    for i, signal in enumerate(first):
        colour = colours(i % 10)
        entries = [report["precisions"][p]["comparison"]["signals"][signal] for p in order]
        interval_key = next(k for k in entries[0] if k.startswith("auc_fixed_interval"))
        aucs = np.array([e["auc_fixed"] for e in entries])
        # An interval is null when no bootstrap ran (evaluator.n_bootstrap=0): no error bar then.
        bounds = np.array(
            [e[interval_key] or (auc, auc) for e, auc in zip(entries, aucs, strict=True)], float
        )
        low, high = aucs - bounds[:, 0], bounds[:, 1] - aucs
        ax.errorbar(
            positions + offsets[i],
            aucs,
            yerr=[np.maximum(low, 0), np.maximum(high, 0)],
            color=colour,
            marker="o",
            linewidth=2,
            capsize=4,
            label=signal,
        )
        ax.axhline(first[signal]["auc_float"], color=colour, linestyle="--", linewidth=1.2)
    ax.plot([], [], color="0.3", linestyle="--", linewidth=1.2, label="float detector (dashed)")
    ax.set_xticks(positions, order, rotation=20 if len(order) > 3 else 0, fontsize=12)
    ax.set_xlabel("network precision")
    ax.set_ylabel("ROC AUC")
    ax.set_title(f"{report['detector']}: AUC after fixed-point emulation (hls4ml)", fontsize=14)
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.legend(fontsize=11, loc="best")
    save_figure(fig, path)
