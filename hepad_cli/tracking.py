"""Where a run's results go besides its directory: ``history.csv`` in every trained run, and the trackers
of the ``logger`` config group, MLflow (``logger=mlflow``) and TensorBoard (``logger=tensorboard``).

A tracker never breaks or slows a run. The trackers of a run work in a process of their own (started with
the run, fed through a pipe by a writer thread), so importing MLflow, opening its store or waiting for a
server costs the run neither time nor a crash; the first failure of a tracker (an unreachable server, a
bad URI, a full disk) is logged once, switches that tracker off for the rest of the run and is recorded
in auc.json's warnings. The pipeline calls four hooks: ``Trackers.start`` before the build stage,
``fit_arguments`` for the per-epoch Keras callback, ``complete`` after auc.json is written (it waits for
the trackers, at most their ``flush_timeout_s``) and ``failed`` when the run fails.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf

from hepad_cli.errors import ConfigError
from hepad_cli.io import atomic_write_json, atomic_write_text
from hepad_cli.report import RunReport
from hepad_cli.validation import check_bool, check_int, check_number

log = logging.getLogger(__name__)

HISTORY_FILE = "history.csv"
TENSORBOARD_DIR = "tensorboard"
# Written into a sweep's directory when it starts: the MLflow run its jobs are children of.
SWEEP_PARENT_FILE = "mlflow_parent_run.json"
# Files of a run that are uploaded as artifacts besides its figures and model.
_RUN_FILES = ("auc.json", HISTORY_FILE, "run_info.json")
_FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


# --- history.csv ------------------------------------------------------------------------------------


def write_history(path: Path, history: Mapping[str, Sequence[float]]) -> None:
    """history.csv: one row per epoch (numbered from 1), one column per logged quantity, in the order
    Keras logged them; numbers are written exactly (``repr``), so reading the file gives the same floats."""
    columns = list(history)
    n_epochs = max((len(values) for values in history.values()), default=0)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", *columns])
    for epoch in range(n_epochs):
        values = [history[c][epoch] if epoch < len(history[c]) else "" for c in columns]
        writer.writerow([epoch + 1, *(repr(float(v)) if v != "" else "" for v in values)])
    atomic_write_text(path, buffer.getvalue())


def read_history(path: Path) -> dict[str, list[float]]:
    """The columns of a history.csv (without ``epoch``) as lists of floats."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [c for c in (rows[0] if rows else {}) if c != "epoch"]
    return {c: [float(row[c]) for row in rows if row[c] != ""] for c in columns}


# --- what the trackers log --------------------------------------------------------------------------


@dataclass
class RunContext:
    """What a tracker knows about the run when it starts."""

    out_dir: Path
    config: dict
    overrides: list[str]
    choices: dict[str, str] = field(default_factory=dict)
    sweep_dir: Path | None = None

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "config": self.config,
            "overrides": self.overrides,
            "choices": self.choices,
            "sweep_dir": None if self.sweep_dir is None else str(self.sweep_dir),
        }

    @classmethod
    def from_dict(cls, data: dict) -> RunContext:
        sweep_dir = data.get("sweep_dir")
        return cls(
            Path(data["out_dir"]),
            data["config"],
            list(data["overrides"]),
            dict(data["choices"]),
            None if sweep_dir is None else Path(sweep_dir),
        )

    @property
    def name(self) -> str:
        """The run directory's name; in a sweep prefixed by the sweep's (jobs are named job0, job1, ...)."""
        return f"{self.sweep_dir.name}/{self.out_dir.name}" if self.sweep_dir else self.out_dir.name

    def tags(self) -> dict[str, str]:
        """Dataset, detector, seed, source commit and where the run's directory is."""
        tags = {
            "hepad.data": self.choices.get("data") or _class_name(self.config.get("data")),
            "hepad.model": self.choices.get("model") or _class_name(self.config.get("model")),
            "hepad.seed": str(self.config.get("seed")),
            "hepad.run_dir": str(self.out_dir.resolve()),
            "hepad.overrides": " ".join(self.overrides),
        }
        if self.choices.get("experiment"):
            tags["hepad.experiment"] = self.choices["experiment"]
        if self.sweep_dir is not None:
            tags["hepad.sweep_dir"] = str(self.sweep_dir.resolve())
        return tags | source_version()


def _class_name(node: Any) -> str:
    target = node.get("_target_", "") if isinstance(node, Mapping) else ""
    return str(target).rsplit(".", 1)[-1]


def source_version() -> dict[str, str]:
    """hepad's version, and the git commit of its source when it runs from a checkout (``-dirty`` when
    the checkout has uncommitted changes)."""
    from importlib import metadata

    try:
        version = {"hepad.version": metadata.version("hepad")}
    except metadata.PackageNotFoundError:
        version = {}
    source = Path(__file__).resolve().parents[1]
    if not (source / ".git").exists():
        return version
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return version | ({"hepad.commit": commit + ("-dirty" if changed else "")} if commit else {})


def flatten(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf) of a nested config; lists are leaves."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from flatten(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), tree


def final_metrics(report: RunReport) -> dict[str, float]:
    """The numbers of auc.json worth comparing between runs: per signal the AUC, its interval and the
    TPR at each FPR (``auc/top``, ``tpr_at_fpr_0.001/top``), the same per extra score, the mean AUC,
    every number in the detector's and the physics checks' sections, stage times and inference time."""
    metrics: dict[str, float] = {"mean_auc": report.mean_auc()}

    def add_results(prefix: str, results) -> None:
        for signal, result in results.items():
            metrics[f"{prefix}auc/{signal}"] = result.auc
            low, high = result.auc_interval
            metrics[f"{prefix}auc_low/{signal}"] = low
            metrics[f"{prefix}auc_high/{signal}"] = high
            for fpr, tpr in result.tpr_at_fpr.items():
                metrics[f"{prefix}tpr_at_fpr_{fpr}/{signal}"] = tpr

    add_results("", report.signals)
    for score, results in (report.scores_by_name or {}).items():
        if score != report.score:
            add_results(f"{score}/", results)
    for key, value in flatten(report.sections):
        metrics[key.replace(".", "/")] = value
    for stage, seconds in report.timing_s.items():
        metrics[f"timing_s/{stage}"] = seconds
    bulk = report.bulk_seconds_per_event()
    if bulk is not None:
        metrics["inference_us_per_event"] = bulk * 1e6
    return {
        _metric_name(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and v is not None and math.isfinite(v)
    }


def _metric_name(name: str) -> str:
    """MLflow and TensorBoard accept letters, digits and ``_ - . / :`` and spaces in names."""
    return "".join(c if c.isalnum() or c in "_-./: " else "_" for c in name)[:250]


def run_files(out_dir: Path, report: RunReport | None) -> list[Path]:
    """The run's record and every file of its figures (all formats), in the order they are uploaded."""
    files = [out_dir / name for name in _RUN_FILES]
    for figure in report.figures if report is not None else []:
        stem = (out_dir / figure).with_suffix("")
        files += [stem.with_suffix(suffix) for suffix in _FIGURE_SUFFIXES]
    files += sorted(out_dir.glob("*.log"))
    return [path for path in dict.fromkeys(files) if path.is_file()]


# --- trackers -------------------------------------------------------------------------------------------


class Tracker:
    """One destination of a run's record. Its methods run in the trackers' process, one call at a time."""

    name = "tracker"
    flush_timeout_s: float = 60.0

    @property
    def target(self) -> str:
        """Where the tracker writes, for messages."""
        return ""

    def start(self, context: RunContext) -> None: ...

    def log_epoch(self, epoch: int, values: dict[str, float], timestamp: float) -> None: ...

    def complete(self, report: RunReport, out_dir: Path, epochs: int) -> None: ...

    def failed(self, error: str, status: str, out_dir: Path) -> None: ...

    def close(self) -> None:
        """Release what the tracker holds open (the last call of the trackers' process)."""


def _text_or_none(key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{key} must be text or null, got {value!r}")
    return value


def sqlite_store_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (relative to the working directory), else None."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///")).resolve()


class MlflowTracker(Tracker):
    """A run in an MLflow tracking store: flattened config as params, per-epoch and final metrics, tags,
    the run's files and model as artifacts, FINISHED or FAILED at the end."""

    name = "mlflow"

    def __init__(
        self,
        *,
        tracking_uri: str,
        artifact_location: str | None = None,
        experiment_name: str = "hepad",
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        log_model: bool = True,
        request_timeout_s: float = 10,
        request_retries: int = 2,
        flush_timeout_s: float = 300,
    ) -> None:
        if not isinstance(tracking_uri, str) or not tracking_uri:
            raise ConfigError(f"logger.mlflow.tracking_uri must be a URI, got {tracking_uri!r}")
        self.artifact_location = _text_or_none("logger.mlflow.artifact_location", artifact_location)
        self.experiment_name = _text_or_none("logger.mlflow.experiment_name", experiment_name) or "hepad"
        self.run_name = _text_or_none("logger.mlflow.run_name", run_name)
        if not isinstance(tags, Mapping | None):
            raise ConfigError(f"logger.mlflow.tags must be a mapping of names to values, got {tags!r}")
        self.extra_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.log_model = check_bool("logger.mlflow.log_model", log_model)
        check_number("logger.mlflow.request_timeout_s", request_timeout_s, 0, None, low_open=True)
        check_int("logger.mlflow.request_retries", request_retries, minimum=0)
        check_number("logger.mlflow.flush_timeout_s", flush_timeout_s, 0, None)
        self.request_timeout_s, self.request_retries = request_timeout_s, int(request_retries)
        self.flush_timeout_s = float(flush_timeout_s)
        path = sqlite_store_path(tracking_uri)
        # An absolute database path, so the store stays the same whatever directory reads it later.
        self.tracking_uri = f"sqlite:///{path}" if path is not None else tracking_uri
        self.client = None
        self.run_id: str | None = None

    @property
    def target(self) -> str:
        return self.tracking_uri

    # MLflow's HTTP client retries for minutes by default; a run must not wait that long for a server.
    def _client(self):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.request_timeout_s))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.request_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        from mlflow.tracking import MlflowClient

        path = sqlite_store_path(self.tracking_uri)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        return MlflowClient(tracking_uri=self.tracking_uri)

    def _experiment_id(self, client) -> str:
        from mlflow.exceptions import MlflowException

        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        location = self.artifact_location
        path = sqlite_store_path(self.tracking_uri)
        if location is None and path is not None:
            location = (path.parent / "artifacts").as_uri()
        try:
            return client.create_experiment(self.experiment_name, artifact_location=location)
        except MlflowException:  # another job of the sweep created it first
            experiment = client.get_experiment_by_name(self.experiment_name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def start(self, context: RunContext) -> None:
        from mlflow.entities import Param

        self.client = client = self._client()
        experiment_id = self._experiment_id(client)
        tags = context.tags() | self.extra_tags
        parent = read_sweep_parent(context.sweep_dir)
        if parent and parent.get("tracking_uri") == self.tracking_uri:
            tags["mlflow.parentRunId"] = parent["run_id"]
        tags["mlflow.source.name"] = "hepad-run"
        run = client.create_run(experiment_id, run_name=self.run_name or context.name, tags=tags)
        self.run_id = run.info.run_id
        params = [
            Param(key[:250], _param_value(value))
            for key, value in flatten(context.config)
            if not key.startswith("logger.")
        ]
        for i in range(0, len(params), 100):
            client.log_batch(self.run_id, params=params[i : i + 100])

    def log_epoch(self, epoch: int, values: dict[str, float], timestamp: float) -> None:
        from mlflow.entities import Metric

        milliseconds = int(timestamp * 1000)
        metrics = [Metric(_metric_name(k), v, milliseconds, epoch) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def complete(self, report: RunReport, out_dir: Path, epochs: int) -> None:
        from mlflow.entities import Metric

        milliseconds = int(time.time() * 1000)
        metrics = [Metric(k, v, milliseconds, epochs) for k, v in final_metrics(report).items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])
        self._log_files(out_dir, report)
        self.client.set_terminated(self.run_id, "FINISHED")

    def _log_files(self, out_dir: Path, report: RunReport | None) -> None:
        for path in run_files(out_dir, report):
            self.client.log_artifact(self.run_id, str(path))
        model_dir = out_dir / "model"
        if self.log_model and report is not None and model_dir.is_dir():
            self.client.log_artifacts(self.run_id, str(model_dir), artifact_path="model")
        if (out_dir / ".hydra").is_dir():
            self.client.log_artifacts(self.run_id, str(out_dir / ".hydra"), artifact_path="hydra")

    def failed(self, error: str, status: str, out_dir: Path) -> None:
        if self.run_id is None:
            return
        self.client.set_tag(self.run_id, "hepad.error", error[:5000])
        self._log_files(out_dir, None)
        self.client.set_terminated(self.run_id, status)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 6000 else text[:5990] + " [cut]"


class TensorBoardTracker(Tracker):
    """TensorBoard event files: a scalar per logged quantity per epoch, the final metrics, the config as
    text and the run's figures as images (tensorboardX writes them; no TensorFlow needed)."""

    name = "tensorboard"

    def __init__(
        self, *, log_dir: str | None = None, images: bool = True, flush_timeout_s: float = 60
    ) -> None:
        self.log_dir = _text_or_none("logger.tensorboard.log_dir", log_dir)
        self.images = check_bool("logger.tensorboard.images", images)
        check_number("logger.tensorboard.flush_timeout_s", flush_timeout_s, 0, None)
        self.flush_timeout_s = float(flush_timeout_s)
        self.writer = None

    @property
    def target(self) -> str:
        return self.log_dir or f"{TENSORBOARD_DIR}/ in the run directory"

    def start(self, context: RunContext) -> None:
        from tensorboardX import SummaryWriter

        directory = Path(self.log_dir) if self.log_dir else context.out_dir / TENSORBOARD_DIR
        self.writer = SummaryWriter(logdir=str(directory), flush_secs=10)
        config = OmegaConf.to_yaml(OmegaConf.create(context.config))
        self.writer.add_text("config", "```\n" + config + "```", global_step=0)
        self.writer.add_text("overrides", " ".join(context.overrides) or "(none)", global_step=0)

    def log_epoch(self, epoch: int, values: dict[str, float], timestamp: float) -> None:
        for key, value in values.items():
            self.writer.add_scalar(_metric_name(key), value, global_step=epoch, walltime=timestamp)
        self.writer.flush()

    def complete(self, report: RunReport, out_dir: Path, epochs: int) -> None:
        for key, value in final_metrics(report).items():
            self.writer.add_scalar(key, value, global_step=epochs)
        if self.images:
            from tensorboardX.proto.summary_pb2 import Summary

            for figure in report.figures:
                path = out_dir / figure
                if path.suffix != ".png" or not path.is_file():
                    continue
                # The PNG as it is (no decoding and encoding again); its size is in the header.
                data = path.read_bytes()
                width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
                image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=data)
                summary = Summary(value=[Summary.Value(tag=path.stem, image=image)])
                self.writer._get_file_writer().add_summary(summary, global_step=epochs)
        self.close()

    def failed(self, error: str, status: str, out_dir: Path) -> None:
        if self.writer is not None:
            self.writer.add_text("status", f"{status}: {error}")
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


LOGGERS: dict[str, type[Tracker]] = {"mlflow": MlflowTracker, "tensorboard": TensorBoardTracker}


def trackers_from_config(loggers: Mapping[str, Any] | None) -> list[Tracker]:
    """The trackers the ``logger`` config group chose, each constructed (and its settings checked)."""
    trackers = []
    for name, settings in (loggers or {}).items():
        if name not in LOGGERS:
            raise ConfigError(
                f"logger.{name} is not a logger; choose from {sorted(LOGGERS)}, "
                "e.g. logger=[mlflow,tensorboard]"
            )
        try:
            trackers.append(LOGGERS[name](**dict(settings or {})))
        except TypeError as error:
            raise ConfigError(
                f"logger.{name}: {error} (hepad-run logger={name} --help lists its keys)"
            ) from None
    return trackers


# --- the trackers' process ----------------------------------------------------------------------------


def serve(lines: Iterable[str], out: TextIO) -> None:
    """The trackers' process: one JSON message per line (start, epoch, complete, failed) applied to every
    tracker still working; a tracker's first failure is written to ``out`` and switches it off."""
    trackers: list[Tracker] = []
    failed: set[str] = set()
    for line in lines:
        message = json.loads(line)
        operation = message["operation"]
        if operation == "start":
            trackers = trackers_from_config(message["loggers"])
            context = RunContext.from_dict(message["context"])
        for tracker in trackers:
            if tracker.name in failed:
                continue
            try:
                if operation == "start":
                    tracker.start(context)
                elif operation == "epoch":
                    tracker.log_epoch(message["epoch"], message["values"], message["timestamp"])
                elif operation == "complete":
                    report = RunReport.from_dict(message["report"])
                    tracker.complete(report, Path(message["out_dir"]), message["epochs"])
                elif operation == "failed":
                    tracker.failed(message["error"], message["status"], Path(message["out_dir"]))
            except Exception as error:  # a tracker's failure is the tracker's, never the run's
                failed.add(tracker.name)
                text = str(error).strip()
                failure = f"{type(error).__name__}: {text.splitlines()[0][:300] if text else ''}"
                out.write(json.dumps({"tracker": f"{tracker.name} ({tracker.target})", "failure": failure}))
                out.write("\n")
                out.flush()
    for tracker in trackers:  # also when the run's process went away without a last message
        try:
            tracker.close()
        except Exception:  # nothing left to report to
            pass


class _TrackerProcess:
    """The parent's end of the trackers' process: messages go through a writer thread (the run never
    waits for the pipe), failures come back through a reader thread and are logged when they happen."""

    def __init__(self, loggers: dict, context: RunContext, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.failures: list[str] = []
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "hepad_cli.tracking"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._writer = threading.Thread(target=self._write, name="hepad-trackers-writer", daemon=True)
        self._reader = threading.Thread(target=self._read, name="hepad-trackers-reader", daemon=True)
        self._writer.start()
        self._reader.start()
        self.send({"operation": "start", "loggers": loggers, "context": context.to_dict()})

    def send(self, message: dict) -> None:
        self._outbox.put(message)

    def _write(self) -> None:
        stdin = self._process.stdin
        while (message := self._outbox.get()) is not None:
            try:
                stdin.write(json.dumps(message) + "\n")
                stdin.flush()
            except (OSError, ValueError):  # the process is gone; the reader reports why
                break
        try:
            stdin.close()
        except OSError:
            pass

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            self.failures.append(
                f"{entry['tracker']} logging failed and was switched off: {entry['failure']}"
            )
            log.warning("%s logging is off for the rest of this run: %s", entry["tracker"], entry["failure"])

    def finish(self) -> list[str]:
        """Let the process do what was sent and end (at most ``timeout_s``); returns the warnings."""
        self._outbox.put(None)
        try:
            returncode = self._process.wait(self.timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            self._reader.join(5)
            return [
                *self.failures,
                f"the trackers did not finish within {self.timeout_s:g} s (logger.<name>.flush_timeout_s) "
                "and were stopped; their record of this run may be incomplete",
            ]
        self._reader.join(5)
        if returncode != 0 and not self.failures:
            return [f"the trackers' process ended with status {returncode}; their record may be incomplete"]
        return list(self.failures)


# --- the pipeline's hooks -------------------------------------------------------------------------------


class Trackers:
    """Every tracker of one run behind the pipeline's hooks; with no logger configured each hook is free."""

    def __init__(self, process: _TrackerProcess | None = None) -> None:
        self._process = process
        self._epochs = 0

    @classmethod
    def start(cls, cfg: DictConfig, out_dir: Path, overrides: Sequence[str]) -> Trackers:
        """The trackers ``cfg.logger`` asks for (their settings checked here), started in their own
        process for the run in ``out_dir``."""
        config = OmegaConf.to_container(cfg, resolve=True)
        loggers = config.get("logger") or {}
        trackers = trackers_from_config(loggers)
        if not trackers:
            return cls()
        choices, sweep_dir = _hydra_job()
        context = RunContext(out_dir, config, list(overrides), choices, sweep_dir)
        timeout = max(tracker.flush_timeout_s for tracker in trackers)
        try:
            return cls(_TrackerProcess(loggers, context, timeout))
        except OSError as error:
            log.warning("no tracking for this run: the trackers' process did not start (%s)", error)
            return cls()

    def log_epoch(self, epoch: int, values: Mapping[str, Any]) -> None:
        """One epoch's logged quantities (epochs numbered from 1), as Keras reports them."""
        if self._process is None:
            return
        numbers = {k: float(v) for k, v in values.items() if _is_number(v)}
        self._epochs = max(self._epochs, epoch)
        self._process.send(
            {"operation": "epoch", "epoch": epoch, "values": numbers, "timestamp": time.time()}
        )

    def fit_arguments(self, detector) -> dict:
        """``callbacks=[...]`` for a detector that trains in epochs (a Keras detector), else nothing."""
        if self._process is None or not detector.takes_epoch_callbacks:
            return {}
        import keras

        trackers = self

        class LogEpochs(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                trackers.log_epoch(epoch + 1, logs or {})

        return {"callbacks": [LogEpochs()]}

    def complete(self, report: RunReport, out_dir: Path) -> None:
        """Final metrics and files of a complete run (auc.json already written); waits for the trackers
        and records their failures in auc.json's warnings."""
        if self._process is None:
            return
        message = {"operation": "complete", "report": report.to_dict(), "out_dir": str(out_dir)}
        self._process.send(message | {"epochs": self._epochs})
        warnings = self._finish()
        if warnings:
            report.warnings.extend(warnings)
            report.write(out_dir)

    def failed(self, error: BaseException, out_dir: Path) -> None:
        """Mark the run failed (or killed, on Ctrl-C) in every tracker that is still working."""
        if self._process is None:
            return
        status = "KILLED" if isinstance(error, KeyboardInterrupt | SystemExit) else "FAILED"
        text = f"{type(error).__name__}: {error}"
        self._process.send({"operation": "failed", "error": text, "status": status, "out_dir": str(out_dir)})
        self._finish()

    def _finish(self) -> list[str]:
        process, self._process = self._process, None
        return process.finish()


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value)) and not isinstance(value, bool | str)
    except (TypeError, ValueError):
        return False


def _hydra_job() -> tuple[dict[str, str], Path | None]:
    """The group options Hydra chose and, in a sweep, the sweep's directory (nothing outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}, None
    hydra_cfg = HydraConfig.get()
    choices = {k: str(v) for k, v in hydra_cfg.runtime.choices.items() if v is not None and "/" not in k}
    sweep_dir = Path(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    return choices, sweep_dir


# --- sweeps: one parent run ------------------------------------------------------------------------------


def read_sweep_parent(sweep_dir: Path | None) -> dict | None:
    if sweep_dir is None:
        return None
    try:
        return json.loads((sweep_dir / SWEEP_PARENT_FILE).read_text())
    except (OSError, ValueError):
        return None


def _sweep_mlflow_settings(config: DictConfig) -> dict | None:
    """logger.mlflow of a sweep's config (resolved alone: the sweep's hydra node cannot be, yet)."""
    if "mlflow" not in (config.get("logger") or {}):
        return None
    return OmegaConf.to_container(config.logger.mlflow, resolve=True)


def start_sweep(config: DictConfig) -> None:
    """At the start of a sweep with ``logger=mlflow``: the parent run its jobs become children of."""
    settings = _sweep_mlflow_settings(config)
    if settings is None:
        return
    tracker = MlflowTracker(**settings)
    sweep_dir = Path(config.hydra.sweep.dir)
    try:
        client = tracker._client()
        experiment_id = tracker._experiment_id(client)
        tags = {
            "hepad.sweep_dir": str(sweep_dir.resolve()),
            "hepad.overrides": " ".join(config.hydra.overrides.task),
            "mlflow.source.name": "hepad-run -m",
        } | source_version()
        run = client.create_run(experiment_id, run_name=f"sweep {sweep_dir.name}", tags=tags)
    except Exception as error:  # the jobs still run and log on their own
        log.warning("mlflow: no parent run for this sweep (%s: %s)", type(error).__name__, error)
        return
    parent = {"tracking_uri": tracker.tracking_uri, "experiment_id": experiment_id, "run_id": run.info.run_id}
    atomic_write_json(sweep_dir / SWEEP_PARENT_FILE, parent)


def finish_sweep(config: DictConfig, jobs: Sequence[Any]) -> None:
    """At the end of a sweep: the parent run gets the summary files and counts, and FINISHED, or FAILED
    when a job did not complete."""
    sweep_dir = Path(config.hydra.sweep.dir)
    parent = read_sweep_parent(sweep_dir)
    if parent is None or _sweep_mlflow_settings(config) is None:
        return
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=parent["tracking_uri"])
        complete = [job for job in jobs if job.status == "complete"]
        client.log_metric(parent["run_id"], "jobs_complete", len(complete))
        client.log_metric(parent["run_id"], "jobs_not_complete", len(jobs) - len(complete))
        if complete:
            client.log_metric(parent["run_id"], "best_mean_auc", max(job.mean_auc() for job in complete))
        for path in sorted(sweep_dir.glob("summary.*")) + sorted(
            p for p in sweep_dir.iterdir() if p.suffix in _FIGURE_SUFFIXES
        ):
            client.log_artifact(parent["run_id"], str(path))
        client.set_terminated(parent["run_id"], "FINISHED" if len(complete) == len(jobs) else "FAILED")
    except Exception as error:
        log.warning("mlflow: the sweep's parent run was not finished (%s: %s)", type(error).__name__, error)


if __name__ == "__main__":
    import signal

    if hasattr(os, "nice"):
        os.nice(10)  # where the run and its trackers compete for a core, the run goes first
    # Ctrl-C reaches the whole process group: the run decides, and tells its trackers (KILLED).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin, sys.stdout)
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written and closed: skip the interpreter's teardown of MLflow's modules (about 0.6 s
    # that the run would wait for).
    os._exit(0)
