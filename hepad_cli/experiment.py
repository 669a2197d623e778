"""The one pipeline: data → fit on background → score → evaluate → files in the run directory."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hepad_cli.io import atomic_write_json

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None) -> dict:
    """Run one experiment described by the composed config; returns the content of auc.json."""
    from hepad_cli.data.samples import assert_background_only
    from hepad_cli.evaluation.report import (
        EvaluatorSettings,
        inference_latency,
        score_samples_by_name,
        signal_metrics,
        write_extra_histograms,
        write_figures,
        write_scores,
    )
    from hepad_cli.provenance import RunRecord

    out_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(out_dir, OmegaConf.to_container(cfg, resolve=True), overrides or [])
    timing: dict[str, float] = {}
    warnings: list[str] = []
    try:
        # Constructors validate their settings, so config mistakes fail before any data or training work.
        evaluator = EvaluatorSettings(**OmegaConf.to_container(cfg.evaluator, resolve=True), seed=cfg.seed)
        dataset = _build(cfg.data)
        detector = _build(cfg.model)

        start = time.perf_counter()
        samples = dataset.load()
        timing["data"] = time.perf_counter() - start
        record.add(data=samples.provenance, counts=samples.counts())
        log.info("events: %s", samples.counts())
        copies = signals_identical_to_background(samples.provenance)
        for name in copies:
            warnings.append(
                f"signal '{name}' comes from a file byte-identical to the background file: "
                "expect AUC near 0.5 (and below it where training events are scored)"
            )
            log.warning(warnings[-1])
        assert_background_only(
            samples.background_train, {k: v for k, v in samples.signals.items() if k not in copies}
        )

        start = time.perf_counter()
        # fit_extras: {} unless the data carry labels for weak supervision (the detector must then take them).
        detector.fit(samples.background_train, samples.background_val, **samples.fit_extras(detector))
        timing["fit"] = time.perf_counter() - start
        detector.save(out_dir / "model")

        start = time.perf_counter()
        scores_by_name, per_event = score_samples_by_name(detector, samples)
        timing["score"] = time.perf_counter() - start
        scores = scores_by_name[detector.score_name]
        extra_scores = {name: v for name, v in scores_by_name.items() if name != detector.score_name}
        results = signal_metrics(scores, evaluator)
        results_by_name = {detector.score_name: results} | {
            name: signal_metrics(values, evaluator) for name, values in extra_scores.items()
        }
        write_scores(out_dir / "scores.h5", scores, detector.score_name, samples.observables, extra_scores)
        start = time.perf_counter()
        latency = inference_latency(detector, samples.background_test, evaluator)
        timing["latency"] = time.perf_counter() - start
        figures = []
        if evaluator.plots:
            title = f"{_class_name(cfg.model)} on {_class_name(cfg.data)}"
            radius = cfg.data.get("image", {}).get("radius") if "image" in cfg.data else None
            figures = write_figures(out_dir, detector, samples, scores, results, evaluator, title, radius)
            figures += write_extra_histograms(out_dir, extra_scores, title)
        # Optional detector hook (e.g. per-channel reports): entries go into auc.json, figures into the list.
        extra = (
            detector.extra_report(samples, scores_by_name, out_dir, evaluator)
            if hasattr(detector, "extra_report")
            else {}
        )
        figures += extra.pop("figures", [])

        unverified = [entry["path"] for entry in samples.provenance if not entry.get("verified", False)]
        report = {
            "score": detector.score_name,
            "signals": results,
            **({"scores_by_name": results_by_name} if extra_scores else {}),
            **({"supervision": samples.supervision} if samples.supervision else {}),
            **extra,
            "events": samples.counts(),
            "data_verified": not unverified,
            "unverified_files": unverified,
            "warnings": warnings,
            "scoring_seconds_per_event": per_event,
            "inference_seconds_per_event": latency,
            "timing_s": timing,
            "figures": figures,
        }
        atomic_write_json(out_dir / "auc.json", report)
        record.add(timing_s=timing)
        record.complete()
        return report
    except BaseException as error:
        record.failed(error)
        raise
    finally:
        _release_tensorflow()


def _class_name(node: DictConfig) -> str:
    return str(node.get("_target_", "")).rsplit(".", 1)[-1]


def _build(node: DictConfig):
    """instantiate(), but a user error raised by a constructor surfaces as itself, not wrapped."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from hepad_cli.errors import user_errors

    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as error:
        if isinstance(error.__cause__, user_errors()):
            raise error.__cause__ from None
        raise


def signals_identical_to_background(provenance: list[dict]) -> list[str]:
    """Signals whose file has the same checksum as a background file (a mix-up, or a closure test)."""
    background = {entry["md5"] for entry in provenance if entry.get("sample") == "background"}
    return [
        entry["sample"]
        for entry in provenance
        if entry.get("sample") not in (None, "background") and entry.get("md5") in background
    ]


def _release_tensorflow() -> None:
    """Free Keras graphs between jobs that run one after another in one process."""
    import gc
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session(free_memory=True)
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
    gc.collect()
