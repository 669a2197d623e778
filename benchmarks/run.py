"""hepad benchmark suite: the hot paths against their straightforward baselines, side by side.

    python benchmarks/run.py                      # full suite (15-30 min), writes benchmarks/results.json
    python benchmarks/run.py --smoke --output x.json   # tiny sizes, seconds (runs in the test suite)
    python benchmarks/run.py --only images,trigger
    python benchmarks/run.py --gpu                # training throughput on the visible accelerator,
                                                  # writes benchmarks/results-gpu.json

Every figure times its baseline and our path in the same run, alternating them, ``--repeats`` times
(at least 5 in full mode), and reports medians, because absolute times drift on a shared machine. It
prints one table (figure, baseline, ours, ratio, target, met?) and writes a JSON file with the machine,
package versions and every sample. Large inputs (the 1.2M-jet random Top Tagging file, the Pythia
samples) are generated once under ``--cache-dir`` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from bench_common import REPO, Figure, Settings, Side, fmt_seconds

FIGURES = (
    "images",
    "toptagging",
    "pythia",
    "training",
    "trigger",
    "bulk",
    "files",
    "tau32",
    "tracking",
    "run",
)
GPU_FIGURES = ("gpu",)
PACKAGES = (
    "numpy",
    "numba",
    "h5py",
    "pandas",
    "tables",
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "jax",
    "jaxlib",
    "torch",
    "scikit-learn",
    "pythia8mc",
    "hydra-core",
)


def machine() -> dict:
    """CPU model, cores, memory, load; Python and package versions; the checkout's commit."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "commit": commit,
    }


# ----------------------------------------------------------------------------------------------------
# 7. the default run


def figure_run(settings: Settings) -> list[Figure]:
    """`hepad-run --help` (no TensorFlow may load) and, in full mode, `make run` cold and warm."""
    hepad_run = Path(sys.executable).with_name("hepad-run")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def timed(args: list[str], cwd: Path, timeout: float = 3600) -> float:
        start = time.perf_counter()
        result = subprocess.run(
            [str(hepad_run), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"hepad-run {args} failed:\n{result.stderr[-3000:]}")
        return seconds

    help_times = [timed(["--help"], settings.work_dir) for _ in range(settings.repeats)]
    help_side = Side("hepad-run --help", help_times)
    figures = [
        Figure(
            name="help",
            what="hepad-run --help",
            baseline=None,
            ours=help_side,
            ratio=None,
            target="< 2 s",
            met=help_side.median < 2,
            baseline_text="—",
            ours_text=fmt_seconds(help_side.median),
            notes=["subprocess wall time of the installed console script"],
        )
    ]
    if settings.smoke:
        return figures
    # `make run` is `hepad-run` with the defaults: cold = a fresh data directory (Pythia generation
    # included), warm = the same directory again (cached samples). Minutes each: one cold run and
    # as many warm runs as --run-repeats asks.
    data_dir = settings.work_dir / "run-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    args = [f"paths.data_dir={data_dir}", "trainer.progress_bar=false"]
    cold = [timed([*args, f"hydra.run.dir={settings.work_dir / 'run-cold'}"], settings.work_dir)]
    warm = [
        timed([*args, f"hydra.run.dir={settings.work_dir / f'run-warm-{i}'}"], settings.work_dir)
        for i in range(settings.run_repeats)
    ]
    for name, samples in (("run_cold", cold), ("run_warm", warm)):
        side = Side(f"hepad-run ({name.removeprefix('run_')})", samples)
        figures.append(
            Figure(
                name=name,
                what=f"make run, {name.removeprefix('run_')} "
                + ("(fresh data dir)" if name == "run_cold" else "(cached data)"),
                baseline=None,
                ours=side,
                ratio=None,
                target="reported",
                met=None,
                baseline_text="—",
                ours_text=fmt_seconds(side.median),
                notes=[f"{len(samples)} run(s): " + ", ".join(fmt_seconds(s) for s in samples)],
            )
        )
    return figures


# ----------------------------------------------------------------------------------------------------


def registry() -> dict[str, Callable[[Settings], Figure | list[Figure]]]:
    import bench_data
    import bench_files
    import bench_gpu
    import bench_models
    import bench_tracking

    return {
        "gpu": bench_gpu.figure_gpu,
        "images": bench_data.figure_images,
        "toptagging": bench_data.figure_toptagging,
        "pythia": bench_data.figure_pythia,
        "training": bench_models.figure_training,
        "trigger": bench_models.figure_trigger,
        "bulk": bench_models.figure_bulk,
        "files": bench_files.figure_files,
        "run": figure_run,
        "tau32": bench_data.figure_tau32,
        "tracking": bench_tracking.figure_tracking,
    }


def table(figures: list[Figure]) -> str:
    header = ("figure", "baseline", "ours", "ratio", "target", "met?")
    rows = [
        (
            f.name,
            f.baseline_text,
            f.ours_text,
            "—" if f.ratio is None else f"{f.ratio:.3g}×",
            f.target,
            {True: "yes", False: "NO", None: "—"}[f.met],
        )
        for f in figures
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header), line.format(*("-" * w for w in widths))]
    for figure, row in zip(figures, rows, strict=True):
        out.append(line.format(*row))
        out += [" " * (widths[0] + 2) + "· " + note for note in figure.notes]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds, for the test suite")
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON path (default benchmarks/results.json)"
    )
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(FIGURES)}")
    parser.add_argument(
        "--gpu", action="store_true", help="training throughput on the visible accelerator (results-gpu.json)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="runs per side (default 5; smoke 3)")
    parser.add_argument("--run-repeats", type=int, default=2, help="warm `make run` runs (full mode)")
    parser.add_argument(
        "--cache-dir", type=Path, default=REPO / "data" / "bench", help="where generated inputs are kept"
    )
    args = parser.parse_args(argv)
    known = GPU_FIGURES if args.gpu else FIGURES
    names = known if args.only is None else tuple(n.strip() for n in args.only.split(",") if n.strip())
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown figures {unknown}; choose from {', '.join(known)}")
    repeats = args.repeats or (3 if args.smoke else 5)
    if not args.smoke and repeats < 5:
        parser.error("full mode needs --repeats >= 5 (medians of at least five runs)")
    output = args.output or (REPO / "benchmarks" / ("results-gpu.json" if args.gpu else "results.json"))
    if args.smoke and args.output is None:
        parser.error("--smoke needs --output, so the committed results are never overwritten")

    started = time.perf_counter()
    info = machine()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="hepad-bench-") as work:
        settings = Settings(
            smoke=args.smoke,
            repeats=repeats,
            cache_dir=args.cache_dir.resolve(),
            work_dir=Path(work),
            run_repeats=args.run_repeats,
        )
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        functions = registry()
        for name in names:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            figure_started = time.perf_counter()
            result = functions[name](settings)
            for figure in result if isinstance(result, list) else [result]:
                figure.extra["seconds_to_measure"] = round(time.perf_counter() - figure_started, 1)
                figures.append(figure)
    info["load_average_at_end"] = os.getloadavg()
    if args.smoke:
        print("smoke mode: tiny sizes check that every figure runs; its ratios do not judge the targets")
    print(table(figures))
    results = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "repeats": repeats,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": info,
        "figures": {figure.name: figure.as_dict() for figure in figures},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".partial.json")
    tmp.write_text(json.dumps(results, indent=2, default=float) + "\n")
    tmp.replace(output)
    print(f"\nresults: {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
