"""The one pipeline, in named stages: build → load → check → fit → score → evaluate → write.

No stage knows which dataset or detector it runs: datasets implement ``read`` (hepad_cli.data.dataset),
detectors the ``Detector`` contract (hepad_cli.models.base), and the stages ask the detector's declared
capabilities. docs/design.md describes the layers.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from hepad_cli.report import RunReport

log = logging.getLogger(__name__)

MODEL_DIR = "model"


@dataclass
class Scored:
    """Every score of every test sample: {score name: {sample: (n,) scores}}, primary first."""

    by_name: dict[str, dict[str, np.ndarray]]
    primary: str
    seconds_per_event: dict[str, float]
    #: The primary score made flat in an observable on background (evaluator.decorrelate), per sample.
    decorrelated: dict[str, np.ndarray] | None = None

    @property
    def primary_scores(self) -> dict[str, np.ndarray]:
        return self.by_name[self.primary]

    @property
    def extra_scores(self) -> dict[str, dict[str, np.ndarray]]:
        return {name: v for name, v in self.by_name.items() if name != self.primary}


@dataclass
class Stopwatch:
    timing_s: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        yield
        self.timing_s[name] = time.perf_counter() - start


def run(cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None) -> RunReport:
    """Run one experiment described by the composed config; returns the report written to auc.json."""
    from hepad_cli.evaluation.physics import check_observables, decorrelated_scores
    from hepad_cli.evaluation.plots import figure_style
    from hepad_cli.provenance import RunRecord
    from hepad_cli.tracking import HISTORY_FILE, Trackers, write_history

    out_dir.mkdir(parents=True, exist_ok=True)
    # Claims the directory: an earlier run's files are moved aside, a live run's directory is refused.
    record = RunRecord(out_dir, OmegaConf.to_container(cfg, resolve=True), overrides or [])
    clock = Stopwatch()
    trackers = Trackers([])
    try:
        trackers = Trackers.start(cfg, out_dir, overrides or [])
        evaluator, dataset, detector = build(cfg)
        with clock.stage("data"):
            samples = dataset.load()
        record.add(data=samples.provenance, counts=samples.counts())
        log.info("events: %s", samples.counts())
        warnings = check(samples)
        check_observables(evaluator, samples)
        with clock.stage("fit"):
            fit(detector, samples, **trackers.fit_arguments(detector))
        if detector.history_:
            write_history(out_dir / HISTORY_FILE, detector.history_)
        record.add(compute=detector.compute_ or {"device": "cpu", "keras_backend": None})
        save_model(detector, samples, out_dir / MODEL_DIR, OmegaConf.to_container(cfg.data, resolve=True))
        with clock.stage("score"):
            scored = score(detector, samples.named_test_samples())
            scored.decorrelated = decorrelated_scores(
                detector, samples, evaluator, out_dir / MODEL_DIR, scored.primary_scores
            )
        warnings += constant_score_warnings(scored)
        with figure_style(evaluator.figure_style):
            report = evaluate(cfg, detector, samples, scored, evaluator, out_dir, warnings, clock)
        report.run_id = record.run_id  # ties auc.json to this run's status.json and run_info.json
        write(report, scored, samples.observables, samples.provenance, out_dir)
        record.add(timing_s=clock.timing_s)
        trackers.complete(report, out_dir)
        record.complete()
        return report
    except BaseException as error:
        trackers.failed(error, out_dir)
        record.failed(error)  # removes this run's partial results first
        raise
    finally:
        _release_keras()


def build(cfg: DictConfig):
    """Evaluator settings, dataset and detector from the config; constructors validate their settings, so
    config mistakes fail here, before any data or training work."""
    from hepad_cli.evaluation.evaluate import EvaluatorSettings
    from hepad_cli.validation import check_seed

    check_seed("seed", cfg.seed)
    evaluator = EvaluatorSettings(**OmegaConf.to_container(cfg.evaluator, resolve=True), seed=cfg.seed)
    return evaluator, instantiate_node(cfg.data), instantiate_node(cfg.model)


def check(samples) -> list[str]:
    """The unsupervised contract: no signal event in the training sample. Returns warnings for the report:
    the dataset's own, identical files, and signal events that equal background test events."""
    from hepad_cli.data.samples import assert_background_only

    warnings = list(samples.warnings)
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
    return warnings + signals_in_background_test(samples, skip=copies)


def signals_in_background_test(samples, skip: list[str]) -> list[str]:
    """Warnings for signal events identical to background test events: no score can separate those."""
    from hepad_cli.data.samples import describe_shared, rows_also_in

    warnings = []
    for name, x in samples.signals.items():
        shared = rows_also_in(samples.background_test, x) if name not in skip else []
        if len(shared):
            warnings.append(
                f"{describe_shared(x, shared)} of signal '{name}' equal background test events: no score "
                "can separate them, and they pull the AUC towards 0.5"
            )
            log.warning(warnings[-1])
    return warnings


def fit(detector, samples, **fit_arguments) -> None:
    """Background only; a detector that declares ``needs_labels`` gets the labelled training sets.
    ``fit_arguments`` go to ``detector.fit`` (a Keras detector's per-epoch ``callbacks``)."""
    from hepad_cli.errors import DataError

    if detector.needs_labels:
        detector.fit(samples.training_set("train"), samples.training_set("val"), **fit_arguments)
        return
    if samples.has_training_labels:
        raise DataError(
            f"the training sample holds labelled good and bad events ({samples.supervision}), but "
            f"{type(detector).__name__} trains unsupervised on background only: choose a detector that "
            "takes labels, or background-only training data (for cms_dqm: data.training=good_only)"
        )
    detector.fit(samples.background_train, samples.background_val, **fit_arguments)


def save_model(detector, samples, model_dir: Path, data_config: dict) -> None:
    """The detector, the fitted input preprocessing and the input signature: what re-scoring new events
    needs (hepad-score)."""
    from hepad_cli.data.scaling import save_preprocessing
    from hepad_cli.data.signature import save_signature

    detector.save(model_dir)
    save_preprocessing(model_dir, samples.preprocessing)
    save_signature(model_dir, samples.input_signature, samples.event_shape, data_config)


def score(detector, named_samples: dict[str, np.ndarray]) -> Scored:
    from hepad_cli.evaluation.evaluate import score_samples_by_name

    by_name, per_event = score_samples_by_name(detector, named_samples)
    return Scored(by_name, detector.score_name, per_event)


def constant_score_warnings(scored: Scored) -> list[str]:
    """A score that is the same for every event separates nothing: its AUC of 0.5 is no result."""
    warnings = []
    for name, by_sample in scored.by_name.items():
        values = np.concatenate(list(by_sample.values()))
        if np.ptp(values) == 0:
            warnings.append(
                f"score {name!r} is the same ({values[0]:.6g}) for every event: the detector separates "
                "nothing, and its AUC of 0.5 says nothing about the signals"
            )
            log.warning(warnings[-1])
    return warnings


def evaluate(cfg, detector, samples, scored: Scored, evaluator, out_dir: Path, warnings, clock) -> RunReport:
    """Metrics per signal and score, physics checks, latency, figures and detector-specific sections."""
    from hepad_cli.evaluation.evaluate import (
        inference_latency,
        signal_metrics,
        write_extra_histograms,
        write_figures,
    )
    from hepad_cli.evaluation.physics import physics_checks

    results = signal_metrics(scored.primary_scores, evaluator)
    extra_scores = scored.extra_scores
    results_by_name = {scored.primary: results} | {
        name: signal_metrics(values, evaluator) for name, values in extra_scores.items()
    }
    title = f"{_class_name(cfg.model)} on {_class_name(cfg.data)}" + (
        f" (trained on {samples.trained_on})" if samples.trained_on else ""
    )
    decorrelated = signal_metrics(scored.decorrelated, evaluator) if scored.decorrelated else None
    physics = physics_checks(
        samples, scored.primary_scores, scored.decorrelated, decorrelated, evaluator, out_dir, title
    )
    with clock.stage("latency"):
        latency = inference_latency(detector, samples.background_test, evaluator)
    figures = list(physics.figures)
    if evaluator.plots:
        radius = cfg.data.get("image", {}).get("radius") if "image" in cfg.data else None
        figures += write_figures(
            out_dir,
            detector,
            samples,
            scored.primary_scores,
            results,
            evaluator,
            title,
            radius,
            physics.reference_curves,
        )
        figures += write_extra_histograms(out_dir, extra_scores, title)
    sections = detector.extra_report(samples, scored.by_name, out_dir, evaluator)
    figures += sections.pop("figures", [])
    unverified = [entry["path"] for entry in samples.provenance if not entry.get("verified", False)]
    return RunReport(
        score=scored.primary,
        signals=results,
        scores_by_name=results_by_name if extra_scores else None,
        supervision=samples.supervision,
        inverted=samples.trained_on is not None,
        trained_on=samples.trained_on,
        **physics.sections,
        sections=sections,
        events=samples.counts(),
        data_verified=not unverified,
        unverified_files=unverified,
        warnings=warnings,
        scoring_seconds_per_event=scored.seconds_per_event,
        inference_seconds_per_event=latency,
        timing_s=clock.timing_s,
        figures=figures,
    )


def write(
    report: RunReport | None, scored: Scored, observables: dict, provenance: list[dict], out_dir: Path
) -> None:
    """scores.h5 first, auc.json (where there is a report) last: a run with auc.json has every result
    file. An observable ``source_file`` indexes the ``source_files`` attribute, the files read in order."""
    from hepad_cli.evaluation.evaluate import write_scores

    write_scores(
        out_dir / "scores.h5",
        scored.primary_scores,
        scored.primary,
        observables,
        scored.extra_scores,
        decorrelated=scored.decorrelated,
        attributes={"source_files": [entry["path"] for entry in provenance]},
    )
    if report is not None:
        report.write(out_dir)


def _class_name(node: DictConfig) -> str:
    return str(node.get("_target_", "")).rsplit(".", 1)[-1]


def instantiate_node(node: DictConfig):
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


def _release_keras() -> None:
    """Free Keras graphs between jobs that run one after another in one process."""
    import gc
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session(free_memory=True)
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
    gc.collect()
