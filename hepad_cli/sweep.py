"""Summary of a multirun sweep: summary.csv, summary.md and AUC plots, built from each job's files.

Runs as a Hydra callback at the end of a sweep, and as ``hepad-summary <sweep dir>`` afterwards (for
sweeps whose jobs ran on a cluster, or were rerun).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from hepad_cli.evaluation.plots import FigureStyle, figure_style, save_figure, styled_pyplot
from hepad_cli.io import atomic_write_text
from hepad_cli.provenance import INFO_FILE, describe_process, read_status, record_mismatch, run_liveness
from hepad_cli.report import ReportError, RunReport, SignalResult

log = logging.getLogger(__name__)

#: JS divergence of the background observable (jet mass) after the cut keeping 10 % of the background.
SCULPTING_COLUMN = "sculpting_js_at_10pct"
# Overrides that say where things are, not what was run: never treated as swept parameters.
LOCATION_KEYS = ("paths.", "data.data_dir", "hydra.")


@dataclass
class JobResult:
    """One job directory of a sweep, read back from its files (the report only for complete jobs)."""

    directory: Path
    overrides: dict[str, str]
    status: str
    error: str | None = None
    report: RunReport | None = None
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def signals(self) -> dict[str, SignalResult]:
        return self.report.signals if self.report is not None else {}

    def mean_auc(self) -> float:
        return self.report.mean_auc() if self.report is not None and self.report.signals else -math.inf

    def inference_seconds_per_event(self) -> float | None:
        return self.report.bulk_seconds_per_event() if self.report is not None else None


def _read_json(path: Path) -> dict:
    """A JSON object from a file, or {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_override_list(job_dir: Path) -> list[str] | None:
    """Hydra's record of the job's overrides (.hydra/overrides.yaml), or None when missing or malformed."""
    import yaml

    try:
        items = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return [str(item) for item in items] if isinstance(items, list) else None


def _overrides_by_key(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        overrides[key.lstrip("+~")] = value
    return overrides


def read_job(job_dir: Path) -> JobResult:
    """One job from its files. Numbers only for a complete job whose record matches (auc.json,
    status.json and run_info.json of one run, with the overrides Hydra recorded); a ``running`` job whose
    process is gone is "dead"; a job with no status.json never started or was killed before it wrote one."""
    status = read_status(job_dir) or {
        "status": "unknown",
        "error": f"{job_dir / 'status.json'} is missing or unreadable: the job never started or its record "
        "is damaged",
    }
    state, error = str(status.get("status", "unknown")), status.get("error")
    info = _read_json(job_dir / INFO_FILE)
    overrides = _read_override_list(job_dir)
    report = None
    if state == "complete":
        try:
            report = RunReport.read(job_dir)
        except ReportError as problem:
            state, error = "failed", f"status says complete but {problem}"
        else:
            mismatch = record_mismatch(status, info, report.run_id, overrides)
            if mismatch:
                state, error, report = "inconsistent", mismatch, None
    elif state == "running":
        liveness = run_liveness(status)
        where = describe_process(status)
        state, error = {
            "alive": ("running", f"still running ({where})"),
            "dead": ("dead", f"its process ({where}) is gone: killed without recording why"),
            "unknown": ("incomplete", f"stopped before it finished or still running ({where}); cannot tell"),
        }[liveness]
    timing = info.get("timing_s") if isinstance(info.get("timing_s"), dict) else {}
    return JobResult(
        job_dir,
        _overrides_by_key(overrides or []),
        state,
        None if error is None else str(error),
        report,
        timing or (report.timing_s if report is not None else {}),
    )


def find_jobs(sweep_dir: Path) -> list[JobResult]:
    """Every job directory under the sweep (those with Hydra's record of the job's overrides)."""
    job_dirs = sorted({p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")} - {sweep_dir})
    return [read_job(d) for d in job_dirs]


def swept_keys(jobs: list[JobResult]) -> list[str]:
    """Override keys whose values differ between jobs, location keys excluded."""
    values = defaultdict(set)
    for job in jobs:
        for key, value in job.overrides.items():
            values[key].add(value)
    keys = {key for job in jobs for key in job.overrides}
    differing = [k for k in sorted(keys) if len(values[k]) > 1 or any(k not in j.overrides for j in jobs)]
    return [k for k in differing if not k.startswith(LOCATION_KEYS)]


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fpr_keys(jobs: list[JobResult]) -> list[str]:
    keys = {k for job in jobs for entry in job.signals.values() for k in entry.tpr_at_fpr}
    return sorted(keys, key=float, reverse=True)


def summary_rows(jobs: list[JobResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and one row per job, best (highest mean AUC over signals) first, failed jobs last."""
    keys = swept_keys(jobs)
    signals = sorted({name for job in jobs for name in job.signals})
    fprs = _fpr_keys(jobs)
    columns = ["job", "status", *keys]
    for name in signals:
        columns += [f"{name}_auc", f"{name}_auc_low", f"{name}_auc_high"]
        columns += [f"{name}_tpr_at_fpr_{fpr}" for fpr in fprs]
    columns += ["mean_auc", SCULPTING_COLUMN, "inference_s_per_event", "fit_s", "overrides", "error"]
    rows = []
    for job in sorted(jobs, key=lambda j: (j.status != "complete", -j.mean_auc())):
        row: dict[str, Any] = {"job": job.directory.name, "status": job.status}
        row.update({key: job.overrides.get(key, "") for key in keys})
        for name in signals:
            entry = job.signals.get(name)
            row[f"{name}_auc"] = entry.auc if entry else None
            row[f"{name}_auc_low"], row[f"{name}_auc_high"] = entry.auc_interval if entry else (None, None)
            for fpr in fprs:
                row[f"{name}_tpr_at_fpr_{fpr}"] = entry.tpr_at_fpr.get(fpr) if entry else None
        row["mean_auc"] = job.mean_auc() if job.signals else None
        row[SCULPTING_COLUMN] = job.report.sculpting_js_divergence("0.1") if job.report is not None else None
        row["inference_s_per_event"] = job.inference_seconds_per_event()
        row["fit_s"] = job.timing.get("fit")
        row["overrides"] = " ".join(f"{k}={v}" for k, v in job.overrides.items())
        row["error"] = (job.error or "").splitlines()[0][:300] if job.error else ""
        rows.append(row)
    return columns, rows


def _format(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    atomic_write_text(path, buffer.getvalue())


def write_markdown(
    path: Path, sweep_dir: Path, columns: list[str], rows: list[dict], keys: list[str]
) -> None:
    signals = [c.removesuffix("_auc") for c in columns if c.endswith("_auc") and c != "mean_auc"]
    shown = ["job", "status", *keys, *(f"{s}_auc" for s in signals), SCULPTING_COLUMN]
    shown += ["inference_us_per_event", "fit_s"]
    headers = [
        c.replace(SCULPTING_COLUMN, "sculpting JS at 10 %")
        .replace("_auc", " AUC [95% interval]")
        .replace("inference_us_per_event", "inference µs/event")
        .replace("fit_s", "fit s")
        for c in shown
    ]
    lines = [
        f"# Sweep summary: {sweep_dir}",
        "",
        f"{len(rows)} jobs, {sum(r['status'] == 'complete' for r in rows)} complete; best mean AUC first.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    for row in rows:
        cells = []
        seconds = row.get("inference_s_per_event")
        row = {**row, "inference_us_per_event": None if seconds is None else round(seconds * 1e6, 2)}
        for column in shown:
            value = row.get(column)
            if column.endswith("_auc") and value is not None:
                name = column.removesuffix("_auc")
                low, high = row.get(f"{name}_auc_low"), row.get(f"{name}_auc_high")
                cells.append(f"{value:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{value:.3f}")
            else:
                cells.append(_format(value))
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r["status"] != "complete"]
    if failed:
        lines += ["", "## Jobs that did not complete", ""]
        lines += [
            f"- `{r['job']}` ({r['status']}): {r['overrides']} — {r['error'] or 'no error recorded'}"
            for r in failed
        ]
    atomic_write_text(path, "\n".join(lines) + "\n")


@dataclass
class AucSeries:
    """One line of an AUC-versus-parameter plot: a signal at one setting of the other swept keys.

    ``errors`` (low, high) per point: the spread (sample standard deviation) over the seeds of that
    point, or, for a single job, its bootstrap interval.
    """

    signal: str
    variant: dict[str, str]
    x: list[float]
    mean_auc: list[float]
    errors: list[tuple[float, float]]
    n_seeds: list[int]


def auc_versus(jobs: list[JobResult], key: str) -> list[AucSeries]:
    """AUC against one numeric swept key, complete jobs only; jobs that differ only in ``seed`` are one
    point: their mean AUC, their spread as the error bar."""
    others = [k for k in swept_keys(jobs) if k not in (key, "seed")]
    groups: dict[tuple, list[JobResult]] = defaultdict(list)
    for job in jobs:
        x = _number(job.overrides.get(key, ""))
        if job.status == "complete" and x is not None:
            groups[(tuple(job.overrides.get(k, "") for k in others), x)].append(job)
    signals = sorted({name for js in groups.values() for job in js for name in job.signals})
    series = []
    for variant in sorted({v for v, _ in groups}):
        for name in signals:
            line = AucSeries(name, dict(zip(others, variant, strict=True)), [], [], [], [])
            for x in sorted(x for v, x in groups if v == variant):
                entries = [job.signals[name] for job in groups[(variant, x)] if name in job.signals]
                if not entries:
                    continue
                aucs = np.array([e.auc for e in entries])
                line.x.append(x)
                line.mean_auc.append(float(aucs.mean()))
                line.n_seeds.append(len(aucs))
                if len(aucs) > 1:
                    line.errors.append((float(aucs.std(ddof=1)), float(aucs.std(ddof=1))))
                else:
                    low, high = entries[0].auc_interval
                    line.errors.append((aucs[0] - low, high - aucs[0]) if low is not None else (0.0, 0.0))
            if line.x:
                series.append(line)
    return series


def plot_auc_versus(jobs: list[JobResult], key: str, path: Path) -> None:
    """AUC against one numeric swept parameter: a line per signal (and per setting of the other
    non-seed parameters), seeds averaged (``auc_versus``)."""
    plt = styled_pyplot()
    fig, ax = plt.subplots()
    series = auc_versus(jobs, key)
    for line in series:
        suffix = ", ".join(f"{k}={v}" for k, v in line.variant.items())
        ax.errorbar(
            line.x,
            line.mean_auc,
            yerr=np.array(line.errors).T,
            marker="o",
            capsize=4,
            linewidth=2,
            label=f"{line.signal}{' (' + suffix + ')' if suffix else ''}",
        )
    values = sorted({x for line in series for x in line.x})
    if values and min(values) > 0 and max(values) / min(values) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(key)
    ax.set_ylabel("ROC AUC")
    seeds_averaged = any(n > 1 for line in series for n in line.n_seeds)
    ax.set_title(
        f"AUC vs {key}; error bars: " + ("spread over seeds" if seeds_averaged else "95% bootstrap"),
        fontsize=13,
    )
    ax.legend(fontsize=11)
    save_figure(fig, path)


def plot_auc_versus_inference_time(jobs: list[JobResult], path: Path) -> None:
    """The trigger question: how much AUC does each microsecond of inference per event buy?

    One point per setting and signal (seeds averaged: median time, mean AUC, spread as error bars).
    """
    plt = styled_pyplot()
    keys = [k for k in swept_keys(jobs) if k != "seed"]
    settings: dict[tuple, list[JobResult]] = defaultdict(list)
    for job in jobs:
        if job.status == "complete" and job.inference_seconds_per_event():
            settings[tuple(job.overrides.get(k, "") for k in keys)].append(job)
    signals = sorted({name for js in settings.values() for job in js for name in job.signals})
    fig, ax = plt.subplots()
    for name in signals:
        xs, ys, spreads = [], [], []
        for setting_jobs in settings.values():
            aucs = [job.signals[name].auc for job in setting_jobs if name in job.signals]
            if aucs:
                xs.append(np.median([job.inference_seconds_per_event() for job in setting_jobs]) * 1e6)
                ys.append(np.mean(aucs))
                spreads.append(np.std(aucs, ddof=1) if len(aucs) > 1 else 0.0)
        ax.errorbar(xs, ys, yerr=spreads, marker="o", linestyle="none", capsize=3, label=name)
    for setting, setting_jobs in settings.items():
        x = np.median([job.inference_seconds_per_event() for job in setting_jobs]) * 1e6
        y = max(
            np.mean([job.signals[n].auc for job in setting_jobs])
            for n in signals
            if all(n in job.signals for job in setting_jobs)
        )
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(keys, setting, strict=True))
        ax.annotate(
            label or "all jobs", (x, y), textcoords="offset points", xytext=(4, 6), fontsize=9, alpha=0.8
        )
    ax.set_xscale("log")
    ax.set_xlabel("inference time per event, bulk scoring [µs]")
    ax.set_ylabel("ROC AUC")
    ax.set_title("AUC vs inference time per event", fontsize=13)
    ax.legend(fontsize=11)
    save_figure(fig, path)


def build_summary(sweep_dir: str | Path) -> list[JobResult]:
    """Write summary.csv, summary.md and the plots into the sweep directory; return the jobs read."""
    sweep_dir = Path(sweep_dir)
    jobs = find_jobs(sweep_dir)
    if not jobs:
        raise FileNotFoundError(f"no job directories (with .hydra/overrides.yaml) under {sweep_dir}")
    columns, rows = summary_rows(jobs)
    keys = swept_keys(jobs)
    write_csv(sweep_dir / "summary.csv", columns, rows)
    write_markdown(sweep_dir / "summary.md", sweep_dir, columns, rows, keys)
    if any(job.status == "complete" for job in jobs):
        for key in (k for k in keys if k != "seed"):  # seeds are averaged, never an axis
            if all(_number(job.overrides.get(key, "")) is not None for job in jobs):
                plot_auc_versus(jobs, key, sweep_dir / f"auc_vs_{key.replace('.', '_')}.png")
        plot_auc_versus_inference_time(jobs, sweep_dir / "auc_vs_inference_time.png")
    return jobs


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a dependency; this keeps `hepad-summary` importable alone
    _HydraCallback = object


def _summary_style(config) -> FigureStyle:
    """The evaluator's figure style of the sweep (the default look where its settings do not check out)."""
    from hepad_cli.errors import ConfigError
    from hepad_cli.evaluation.evaluate import EvaluatorSettings

    try:
        return EvaluatorSettings(**OmegaConf.to_container(config.evaluator, resolve=True)).figure_style
    except (ConfigError, TypeError):
        return FigureStyle()


class SweepSummaryCallback(_HydraCallback):
    """Builds the sweep summary when a multirun ends, failed jobs included; with ``logger=mlflow`` the
    sweep is also one parent run in MLflow, its jobs the children."""

    def on_multirun_start(self, config, **kwargs) -> None:
        from hepad_cli.tracking import start_sweep

        start_sweep(config)

    def on_multirun_end(self, config, **kwargs) -> None:
        from hepad_cli.tracking import finish_sweep

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            with figure_style(_summary_style(config)):
                jobs = build_summary(sweep_dir)
        except FileNotFoundError as error:
            log.warning("no sweep summary: %s", error)
            return
        finish_sweep(config, jobs)
        failed = [job for job in jobs if job.status != "complete"]
        print(
            f"hepad-run: sweep of {len(jobs)} jobs, {len(failed)} not complete; summary in "
            f"{(sweep_dir / 'summary.md').resolve()}",
            file=sys.stderr,
        )
        if failed:
            # The summary is written; the exit status still tells scripts that something failed.
            raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hepad-summary", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the multirun directory (holds one directory per job)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a directory")
    try:
        jobs = build_summary(args.sweep_dir)
    except FileNotFoundError as error:
        print(f"hepad-summary: error: {error}", file=sys.stderr)
        return 1
    print((args.sweep_dir / "summary.md").read_text())
    return 0 if all(job.status == "complete" for job in jobs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
