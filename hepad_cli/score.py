"""hepad-score: apply a finished run's detector to new files, without re-fitting anything.

    hepad-score run_dir=outputs/<date>/<run> data.background='[data2018.root]'
    hepad-score run_dir=... data.signals.new_model='[new_signal.root]' data.background='[bkg_test.root]'

The run's saved data config is the starting point and every ``data.*`` override replaces its key; naming
any input (``data.background``, ``data.signals.*``, ``data.files``) replaces the run's inputs. The new
inputs are checked against the run's input signature before any event is read. Every event of every
file is scored in chunks (the saved scaler, then the detector: ``runs.SavedScorer``), and the output
directory gets scores.h5, status.json and run_info.json, plus auc.json, roc.png and loss_hist.png through
the pipeline's own evaluate and write stages when a background and at least one signal are given.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

import hepad_cli.run  # noqa: F401 - registers the process_tag resolver of the output directory name

log = logging.getLogger("hepad_cli")

#: data keys that name the inputs: giving any of them replaces the run's inputs as a whole.
INPUT_KEYS = ("background", "signals", "files", "label_column", "labels")
#: data keys that only shape training: the saved scaler is applied as it was fitted.
TRAINING_KEYS = ("scaling", "split", "seed", "max_events")


@hydra.main(version_base="1.3", config_path="pkg://hepad_cli.conf", config_name="score")
def app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from hepad_cli.errors import user_errors

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        report = score_files(cfg, out_dir, list(hydra_cfg.overrides.task))
    except user_errors() as error:
        log.error("%s", error)
        print(f"hepad-score: error: {error}", file=sys.stderr)
        print(f"hepad-score: marked failed in {out_dir / 'status.json'}", file=sys.stderr)
        raise SystemExit(1) from None
    if report is not None:
        print(f"hepad-score: {report.auc_line()}", file=sys.stderr)
    print(f"hepad-score: results in {out_dir.resolve()}", file=sys.stderr)


def main() -> None:
    app()


def data_config(run, given: DictConfig, overrides: list[str]) -> dict:
    """The data config to read the new files with: the run's (data=files runs; otherwise the files
    defaults with the run's representation and image settings), each ``data.*`` override replacing its key."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hepad_cli.errors import ConfigError

    defaults = OmegaConf.to_container(given, resolve=True)
    if run.config.data.get("_target_") == defaults["_target_"]:
        merged = OmegaConf.to_container(run.config.data, resolve=True)
    else:
        signature = run.input_signature()
        merged = dict(defaults, representation=signature["representation"])
        if signature.get("image"):
            merged["image"] = signature["image"]
    merged = OmegaConf.create(merged)
    keys = [
        o.key_or_group.removeprefix("data.")
        for o in OverridesParser.create().parse_overrides(overrides)
        if o.key_or_group.startswith("data.")
    ]
    training = sorted({k.split(".")[0] for k in keys} & set(TRAINING_KEYS))
    if training:
        raise ConfigError(
            f"data.{training[0]} is a training setting: hepad-score applies the run's saved scaler and "
            "scores every event; remove the override"
        )
    if not any(k.split(".")[0] in INPUT_KEYS for k in keys):
        raise ConfigError(
            "name the files to score: data.background='[file.root]' and/or data.signals.<name>='[...]' "
            "(or data.files with data.label_column and data.labels)"
        )
    for key in INPUT_KEYS:  # the run's own inputs are replaced as a whole
        merged[key] = defaults[key]
    for key in keys:
        OmegaConf.update(merged, key, OmegaConf.select(given, key), merge=False, force_add=True)
    merged["max_events"] = None
    return OmegaConf.to_container(merged, resolve=True)


class _Collected:
    """Scores and observables of one sample, chunk by chunk, and its first prepared events (figures)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.scores: dict[str, list[np.ndarray]] = {}
        self.decorrelated: list[np.ndarray] = []
        self.observables: dict[str, list[np.ndarray]] = {}
        self.examples: list[np.ndarray] = []
        self.n_kept = 0
        self.n = 0
        self.seconds = 0.0

    def add(self, prepared: np.ndarray, scored, sample: str, observables: dict) -> None:
        for name, values in scored.by_name.items():
            self.scores.setdefault(name, []).append(values[sample])
        if scored.decorrelated is not None:
            self.decorrelated.append(scored.decorrelated[sample])
        for key, values in observables.items():
            self.observables.setdefault(key, []).append(values)
        if self.n_kept < self.keep:
            self.examples.append(prepared[: self.keep - self.n_kept])
            self.n_kept += len(self.examples[-1])
        self.n += len(prepared)
        self.seconds += scored.seconds_per_event[sample] * len(prepared)


def score_files(cfg: DictConfig, out_dir: Path, overrides: list[str]):
    """Score the files the config names with the run in ``cfg.run_dir``; returns the RunReport written
    to auc.json (None without background and signal)."""
    from hepad_cli.provenance import RunRecord

    out_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(out_dir, OmegaConf.to_container(cfg, resolve=True), overrides)
    try:
        report = _score(cfg, out_dir, overrides, record)
        record.complete()
        return report
    except BaseException as error:
        record.failed(error)
        raise
    finally:
        from hepad_cli.experiment import _release_keras

        _release_keras()


def _score(cfg: DictConfig, out_dir: Path, overrides: list[str], record):
    from hepad_cli.data.copies import check_output_format
    from hepad_cli.data.files import BACKGROUND, InputFiles
    from hepad_cli.data.signature import check_compatible, match_features
    from hepad_cli.evaluation.evaluate import EvaluatorSettings
    from hepad_cli.experiment import Scored, Stopwatch, write
    from hepad_cli.runs import FinishedRun

    clock = Stopwatch()
    run = FinishedRun.open(cfg.run_dir)
    output_format = cfg.output.format
    check_output_format(output_format)
    data = data_config(run, cfg.data, overrides)
    reading = {k: v for k, v in data.items() if k not in ("_target_", *TRAINING_KEYS)}
    inputs = InputFiles(**reading)
    trained = run.input_signature()
    if inputs.representation == "features" and trained.get("representation") == "features":
        inputs.features = match_features(trained.get("features"), inputs.features)
    check_compatible(trained, inputs.signature())
    entries = inputs.check()  # every file opened and its columns checked: nothing is read before this
    evaluator = EvaluatorSettings(**OmegaConf.to_container(cfg.evaluator, resolve=True), seed=run.config.seed)
    scorer = run.scorer()
    provenance, file_index = inputs.provenance(entries)
    record.add(applied_run=str(run.directory), data_config=data, data=provenance)
    log.info("applying %s to %d files", run.directory, len(provenance))

    from tqdm.auto import tqdm

    keep = max(evaluator.latent_max_points, evaluator.latency_bulk_size)
    collected: dict[str, _Collected] = {}
    with clock.stage("score"):
        for group in inputs.groups:
            total = sum(entries[p] for p in group.files)
            with tqdm(total=total, desc=f"scoring {group.sample or 'labelled files'}", unit="event") as bar:
                for routed in inputs.iter_group(group, file_index, None, bar):
                    for sample, chunk in routed.items():
                        prepared = scorer.prepare(chunk.events)
                        scored = scorer.score({sample: prepared}, {sample: chunk.observables})
                        collected.setdefault(sample, _Collected(keep)).add(
                            prepared, scored, sample, chunk.observables
                        )
    for name in inputs.sample_names:
        if name not in collected:
            raise _no_events(name)
    order = sorted(collected, key=lambda name: name != BACKGROUND)  # background first, as in training
    primary = scorer.detector.score_name
    by_name = {
        score: {s: np.concatenate(collected[s].scores[score]) for s in order}
        for score in collected[order[0]].scores
    }
    scored = Scored(
        {primary: by_name.pop(primary)} | by_name,
        primary,
        {s: collected[s].seconds / collected[s].n for s in order},
        decorrelated={s: np.concatenate(collected[s].decorrelated) for s in order}
        if scorer.decorrelation is not None
        else None,
    )
    observables = {s: {k: np.concatenate(v) for k, v in collected[s].observables.items()} for s in order}
    counts = {s if s == BACKGROUND else f"signal_{s}": collected[s].n for s in order}
    record.add(counts=counts)
    report = None
    if BACKGROUND in collected and len(collected) > 1:
        report = _evaluate(
            run, data, scorer, scored, collected, observables, provenance, evaluator, out_dir, clock
        )
        report = dataclasses.replace(report, events=counts, run_id=record.run_id)
    write(report, scored, observables, provenance, out_dir)
    if output_format is not None:
        with clock.stage("copies"):
            copies = _write_copies(inputs, scored, observables, provenance, out_dir, output_format)
        record.add(copies=copies)
    record.add(timing_s=clock.timing_s)
    return report


def _no_events(name: str):
    from hepad_cli.errors import DataError

    return DataError(f"no {name} events were read: check the files, data.selection and data.labels")


def _evaluate(run, data, scorer, scored, collected, observables, provenance, evaluator, out_dir, clock):
    """The pipeline's evaluate stage, with the first events of each sample for figures and latency."""
    from hepad_cli.data.files import BACKGROUND
    from hepad_cli.data.samples import Samples
    from hepad_cli.evaluation.plots import figure_style
    from hepad_cli.experiment import evaluate

    def first(name: str) -> np.ndarray:
        return np.concatenate(collected[name].examples)

    background = first(BACKGROUND)
    examples = Samples(
        background_train=background,
        background_val=background,
        background_test=background,
        signals={name: first(name) for name in collected if name != BACKGROUND},
        observables=observables,
        provenance=provenance,
        representation=data["representation"],
    )
    config = OmegaConf.merge(run.config, {"data": data})
    with figure_style(evaluator.figure_style):
        return evaluate(config, scorer.detector, examples, scored, evaluator, out_dir, [], clock)


def _write_copies(inputs, scored, observables, provenance, out_dir: Path, output_format: str) -> list[dict]:
    """A copy of each input file with a ``hepad_<score>`` column per score (NaN where not scored)."""
    from hepad_cli.data.copies import SUFFIX, write_scored_copy

    written = []
    stems = [Path(entry["path"]).stem for entry in provenance]
    for index, entry in enumerate(provenance):
        columns = {}
        for score_name, by_sample in scored.by_name.items():
            values = np.full(entry["entries"], np.nan)
            for sample, scores in by_sample.items():
                mine = observables[sample]["source_file"] == index
                values[observables[sample]["entry"][mine]] = scores[mine]
            columns[f"hepad_{score_name}"] = values
        stem = stems[index] if stems.count(stems[index]) == 1 else f"{index}_{stems[index]}"
        target = out_dir / "scored" / f"{stem}{SUFFIX[output_format]}"
        write_scored_copy(
            Path(entry["path"]), inputs.tree, inputs.key, columns, target, output_format, inputs.chunk_size
        )
        written.append({"source": entry["path"], "copy": str(target), "columns": list(columns)})
        log.info("scored copy: %s", target)
    return written


if __name__ == "__main__":
    main()
