"""The dataset contract: a dataset implements ``read`` and nothing else; this base turns what it read into
``Samples``. docs/design.md walks through adding a dataset.

The base owns, once for every dataset: the seeded subsample (``subsample_rows``), the inverse task
(``data.invert``: one signal becomes the background that is trained on, the background becomes an
anomaly), the seeded background split (stratified by label for labelled data), the input scaler (built
from ``data.scaling``, fitted on background training events only, kept in ``Samples.preprocessing`` and
saved with the model), the checks every sample needs (no empty signal) and the construction of
``Samples``.

Before any of that, ``validate`` checks what the data mean: the findings a reader made while reading
(``DatasetContent.findings``), the checks every dataset needs (``content_findings``: no all-zero event,
labels exactly 0/1, weights finite and non-negative) and the physical checks a dataset declares
(``physical_checks``). A ``Finding`` that makes the result meaningless stops the run with every such
finding in one error; the others are logged and become warnings in auc.json.

Settings come from the dataset's YAML file (conf/data/); the constructors have no defaults of their own.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from hepad_cli.data.samples import EVENT_WEIGHT, Samples, split_background
from hepad_cli.data.scaling import build_scaler
from hepad_cli.errors import DataError
from hepad_cli.validation import check_bool, check_choice, check_int

log = logging.getLogger(__name__)

TRAINING_MODES = ("weak", "good_only")


@dataclass
class EventSample:
    """events: (n, ...) detector inputs as read; observables: per-event quantities that are not inputs
    (mass and pT in GeV, weights, flags), each (n,)."""

    events: np.ndarray
    observables: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, values in self.observables.items():
            if len(values) != len(self.events):
                raise DataError(
                    f"observable {name!r} has {len(values)} entries for {len(self.events)} events"
                )

    def __len__(self) -> int:
        return len(self.events)

    def select(self, rows: np.ndarray) -> EventSample:
        return EventSample(self.events[rows], {k: v[rows] for k, v in self.observables.items()})


@dataclass(frozen=True)
class Finding:
    """What a data check found: which events of which sample or file, what is wrong, what to do.

    ``rows``: row numbers of the affected events (in the file where the reader knows them, else in the
    sample as read); ``total``: how many were checked; ``fatal``: the result would be meaningless (the
    run stops) rather than usable (a warning). A finding without rows found nothing.
    """

    where: str
    problem: str
    rows: np.ndarray
    total: int
    fix: str
    fatal: bool = True
    unit: str = "events"

    def message(self) -> str:
        shown = ", ".join(str(int(row)) for row in self.rows[:5]) + (", ..." if len(self.rows) > 5 else "")
        count = f"{len(self.rows)} of {self.total} {self.unit}"
        return f"{self.where}: {count} {self.problem} (rows {shown}); {self.fix}"


def resolve_findings(findings: list[Finding]) -> list[str]:
    """Stop with every fatal finding in one DataError; log the other findings and return them as warnings."""
    found = [finding for finding in findings if len(finding.rows)]
    fatal = [finding.message() for finding in found if finding.fatal]
    if fatal:
        raise DataError("the input data cannot give a meaningful result:\n  " + "\n  ".join(fatal))
    warnings = [finding.message() for finding in found]
    for warning in warnings:
        log.warning(warning)
    return warnings


@dataclass
class DatasetContent:
    """What ``Dataset.read`` returns: the background (every event that may be trained on), the named
    signals (scored only), and the provenance of each file read.

    Labelled data (weak supervision, e.g. CMS lumisections): ``labels`` gives each background event a
    global label (1 = good, 0 = anomalous). The split is then stratified by label; anomalous test events
    become the signal ``anomalous_name``; ``training="weak"`` trains on good and anomalous events with
    their labels (and the ``EVENT_WEIGHT`` observable as weights), ``"good_only"`` on good events only.

    ``inverted_from``: set by the inverse task to the signal that became the background.
    """

    background: EventSample
    signals: dict[str, EventSample]
    provenance: list[dict]
    labels: np.ndarray | None = None
    anomalous_name: str = "anomalous"
    training: str = "good_only"
    supervision: str | None = None
    feature_groups: dict[str, list[int]] | None = None
    inverted_from: str | None = None
    findings: list[Finding] = field(default_factory=list)

    def named_samples(self) -> dict[str, EventSample]:
        """Every sample read, by the name messages use: "background", "signal 'top'", ..."""
        return {"background": self.background} | {f"signal '{k}'": v for k, v in self.signals.items()}


def content_findings(content: DatasetContent) -> list[Finding]:
    """The checks every dataset needs: no all-zero event, labels exactly 0/1, weights finite and >= 0."""
    findings = []
    for name, sample in content.named_samples().items():
        flat = sample.events.reshape(len(sample), -1)
        findings.append(
            Finding(
                name,
                "have all-zero inputs (an empty jet or an event without any object)",
                np.flatnonzero(~flat.any(axis=1)),
                len(sample),
                "an empty event carries no physics and equals every other empty event; remove them from "
                "the input file",
            )
        )
        weights = sample.observables.get(EVENT_WEIGHT)
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            findings.append(
                Finding(
                    name,
                    f"have a negative or non-finite {EVENT_WEIGHT!r}",
                    np.flatnonzero(~(np.isfinite(weights) & (weights >= 0))),
                    len(weights),
                    "weights must be finite and >= 0: fix the input file",
                )
            )
    if content.labels is not None:
        labels = np.asarray(content.labels)
        findings.append(
            Finding(
                "background labels",
                "have a label other than 1 (good) or 0 (anomalous)",
                np.flatnonzero(~np.isin(labels, (0, 1))),
                len(labels),
                "labels must be exactly 0 or 1: fix the labels file",
            )
        )
    return findings


class Dataset(ABC):
    """Base of every dataset: ``read()`` → DatasetContent; ``load()`` → Samples (subsample, split, scale).

    ``split``: fractions of the background for train/val/test; ``scaling``: "standard" or None;
    ``seed``: the run's seed (split and subsample); ``invert``: the inverse task, trained on the signal
    ``invert_signal`` (None: the first signal) with the background, named ``background_name``, as anomaly.
    """

    representation: ClassVar[str] = "features"
    #: The background's name when the inverse task scores it as an anomaly.
    background_name: ClassVar[str] = "original_background"

    def __init__(
        self,
        *,
        split: dict,
        seed: int,
        scaling: str | None,
        invert: bool = False,
        invert_signal: str | None = None,
    ) -> None:
        self.split = dict(split)
        self.seed = check_int("seed", seed, minimum=0, error=DataError)
        self.scaling = scaling
        build_scaler(scaling)  # checks the value now, before any reading
        self.invert = check_bool("data.invert", invert, error=DataError)
        if invert_signal is not None and not isinstance(invert_signal, str):
            raise DataError(
                f"data.invert_signal must name a signal (or be null: the first), got {invert_signal!r}"
            )
        self.invert_signal = invert_signal

    @abstractmethod
    def read(self) -> DatasetContent:
        """Fetch or generate (and verify) the files, read them, and return the events as the detector sees
        them, before split and scaling."""

    def input_signature(self) -> dict:
        """What a detector trained on this dataset expects of new events (saved beside the model):
        the representation, the image settings of image datasets (``self.image``) and, where a dataset
        knows them, column names."""
        image = getattr(self, "image", None)
        images = {"image": dataclasses.asdict(image)} if dataclasses.is_dataclass(image) else {}
        return {"representation": self.representation} | images

    def physical_checks(self, name: str, sample: EventSample) -> list[Finding]:
        """This dataset's checks of what its events mean (ranges of pT, eta, phi, ...); none by default.

        ``name``: the sample as messages call it ("background", "signal 'top'"); events as ``read`` gave
        them, before split and scaling.
        """
        return []

    def validate(self, content: DatasetContent) -> list[str]:
        """Check what was read before any heavy work; stop where the result would be meaningless, return
        warnings where it is usable (they go into auc.json)."""
        # The reader's findings first: they name file rows, and the checks below would repeat some.
        warnings = resolve_findings(content.findings)
        findings = content_findings(content)
        for name, sample in content.named_samples().items():
            findings += self.physical_checks(name, sample)
        return warnings + resolve_findings(findings)

    def subsample_rows(self, n_events: int, limit: int | None, seed_offset: int = 0) -> np.ndarray | None:
        """Sorted row numbers of a seeded subsample of ``limit`` of ``n_events`` rows (None: take all)."""
        if limit is None or limit >= n_events:
            return None
        return np.sort(np.random.default_rng(self.seed + seed_offset).choice(n_events, limit, replace=False))

    def load(self) -> Samples:
        content = self.read()
        for name, sample in content.signals.items():
            if len(sample) == 0:
                raise DataError(f"signal '{name}' is empty: no events to score")
        warnings = self.validate(content)
        if self.invert:
            content = self._inverted(content)
        if content.labels is None:
            parts = {
                name: content.background.select(rows)
                for name, rows in split_background(len(content.background), self.split, self.seed).items()
            }
            signals = content.signals
            labels = {"train": None, "val": None}
        else:
            parts, signals, labels = self._split_labelled(content)
        weak = content.labels is not None and content.training == "weak"
        scaler = build_scaler(self.scaling)
        if scaler is not None:
            scaler.fit(parts["train"].events)
            log.info("StandardScaler fitted on %d background training events only", scaler.n_fitted_)
        transform = scaler.transform if scaler is not None else (lambda x: x)
        return Samples(
            background_train=transform(parts["train"].events),
            background_val=transform(parts["val"].events),
            background_test=transform(parts["test"].events),
            signals={name: transform(sample.events) for name, sample in signals.items()},
            observables={"background": parts["test"].observables}
            | {name: sample.observables for name, sample in signals.items()},
            provenance=content.provenance,
            representation=self.representation,
            train_labels=labels["train"] if weak else None,
            val_labels=labels["val"] if weak else None,
            train_weights=_weights(parts["train"]) if weak else None,
            val_weights=_weights(parts["val"]) if weak else None,
            feature_groups=content.feature_groups,
            supervision=content.supervision if weak else None,
            preprocessing=scaler,
            input_signature=self.input_signature(),
            background_val_observables=parts["val"].observables,
            trained_on=content.inverted_from,
            warnings=warnings,
        )

    def _inverted(self, content: DatasetContent) -> DatasetContent:
        """The inverse task: the chosen signal becomes the background (trained on), the background an
        anomaly named ``background_name``; the other signals stay signals."""
        if content.labels is not None:
            raise DataError(
                "data.invert=true needs a background and named signals; this dataset holds labelled "
                "events (good/anomalous), which have no signal class to train on: set data.invert=false"
            )
        chosen = self.invert_signal if self.invert_signal is not None else next(iter(content.signals))
        if chosen not in content.signals:
            raise DataError(
                f"data.invert_signal={chosen!r} is not a signal of this dataset; choose one of "
                f"{list(content.signals)} (or null for the first)"
            )
        if self.background_name in content.signals:
            raise DataError(f"signal name {self.background_name!r} is taken; the background needs it")
        renamed = {chosen: "background", "background": self.background_name}
        log.info("inverse task: training on %s, scoring the background as '%s'", chosen, self.background_name)
        return replace(
            content,
            background=content.signals[chosen],
            signals={self.background_name: content.background}
            | {name: sample for name, sample in content.signals.items() if name != chosen},
            provenance=[
                entry | {"sample": renamed[entry["sample"]]} if entry.get("sample") in renamed else entry
                for entry in content.provenance
            ],
            inverted_from=chosen,
        )

    def _split_labelled(self, content: DatasetContent):
        """Split stratified by label; anomalous test events become a signal; good-only training drops the
        anomalous training and validation events."""
        check_choice("data.training", content.training, TRAINING_MODES, error=DataError)
        labels = np.asarray(content.labels)
        rows = stratified_split(labels, self.split, self.seed)
        test = rows["test"]
        signals = {
            content.anomalous_name: content.background.select(test[labels[test] == 0]),
            **content.signals,
        }
        if content.training == "good_only":
            rows["train"] = rows["train"][labels[rows["train"]] == 1]
            rows["val"] = rows["val"][labels[rows["val"]] == 1]
        rows["test"] = test[labels[test] == 1]
        parts = {name: content.background.select(r) for name, r in rows.items()}
        split_labels = {name: labels[rows[name]].astype(np.float32) for name in ("train", "val")}
        return parts, signals, split_labels


def _weights(sample: EventSample) -> np.ndarray | None:
    weights = sample.observables.get(EVENT_WEIGHT)
    return None if weights is None else np.asarray(weights, dtype=np.float32)


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Seeded train/val/test row numbers with the good/bad proportions of the whole sample in each part."""
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for offset, label in enumerate((1, 0)):
        rows = np.flatnonzero(labels == label)
        what = "good" if label == 1 else "anomalous"
        try:
            split = split_background(len(rows), fractions, seed + offset)
        except DataError as error:
            raise DataError(f"{what} events: {error}") from error
        for name, index in split.items():
            parts[name].append(rows[index])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}
