"""Interruptions, full disks, dead runs and reruns: nothing partial is ever taken for a result.

The full disk is a real one: a small tmpfs mounted in a private mount namespace (``in_small_filesystem``,
no root needed), filled while the run writes its results.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from hepad_cli.io import atomic_path, atomic_write_text
from tests.conftest import FAST_TRAINER, HEPAD_RUN, TINY_PYTHIA, in_small_filesystem, run_cli

LONG_TRAINING = [
    "trainer.epochs=500",
    "trainer.early_stopping_patience=0",
    "trainer.progress_bar=false",
    "trainer.batch_size=8",
]


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    """Start hepad-run in its own process group, as a shell would; Ctrl-C reaches the whole group.

    Its stderr goes to cwd/stderr.txt."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [str(HEPAD_RUN), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(cwd / "stderr.txt", "w"),  # noqa: SIM115 - the child owns it
        start_new_session=True,
        # A shell may start background jobs with SIGINT ignored, and Python then never raises
        # KeyboardInterrupt: restore the default so the test means the same wherever it runs.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(condition, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the run to reach the point of interruption"
        time.sleep(0.2)


def ctrl_c(process: subprocess.Popen) -> int:
    os.killpg(process.pid, signal.SIGINT)
    return process.wait(timeout=120)


def test_atomic_writes_leave_the_old_file_or_nothing(tmp_path):
    target = tmp_path / "auc.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new cont")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["auc.json"]


def training_started(root: Path) -> bool:
    return any("epoch 2/500" in log.read_text() for log in root.glob("**/hepad.log"))


def assert_failed_without_results(run_dir: Path, error: str) -> None:
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and error in status["error"], status
    assert not (run_dir / "auc.json").exists() and not (run_dir / "scores.h5").exists()
    assert not (run_dir / "model").exists() and not list(run_dir.glob("*.png"))
    assert not list(run_dir.rglob("*.partial*"))


def test_ctrl_c_during_training_marks_the_run_failed_and_a_rerun_completes(tmp_path, pythia_data_dir):
    process = start_cli(*TINY_PYTHIA, f"paths.data_dir={pythia_data_dir}", *LONG_TRAINING, cwd=tmp_path)
    wait_for(lambda: training_started(tmp_path))
    assert ctrl_c(process) == 130
    run_dir = next(tmp_path.glob("outputs/*/*"))
    assert_failed_without_results(run_dir, "KeyboardInterrupt")
    assert "interrupted (Ctrl-C); the run is marked failed" in (tmp_path / "stderr.txt").read_text()

    result = run_cli(*TINY_PYTHIA, f"paths.data_dir={pythia_data_dir}", *FAST_TRAINER, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(tmp_path.glob("outputs/*/*/auc.json"))) == 1


def test_sigterm_during_training_marks_the_run_failed_and_exits_143(tmp_path, pythia_data_dir):
    """What a batch system sends before it kills a job: handled like Ctrl-C, never 'running' forever."""
    process = start_cli(*TINY_PYTHIA, f"paths.data_dir={pythia_data_dir}", *LONG_TRAINING, cwd=tmp_path)
    wait_for(lambda: training_started(tmp_path))
    os.kill(process.pid, signal.SIGTERM)  # the process only, as SLURM signals a job step
    assert process.wait(timeout=120) == 143
    run_dir = next(tmp_path.glob("outputs/*/*"))
    assert_failed_without_results(run_dir, "terminated by SIGTERM")
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "hepad-run: terminated by SIGTERM; the run is marked failed in" in stderr
    assert "Traceback" not in stderr


def test_a_killed_job_is_reported_dead_by_the_summary(tmp_path, pythia_data_dir):
    """SIGKILL leaves no chance to record anything: status.json says running, the summary says dead."""
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *TINY_PYTHIA,
        f"paths.data_dir={pythia_data_dir}",
        *LONG_TRAINING,
        f"hydra.sweep.dir={sweep}",
    ]
    process = start_cli(*args, cwd=tmp_path)
    wait_for(lambda: training_started(sweep))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    status = json.loads((sweep / "job0" / "status.json").read_text())
    assert status["status"] == "running" and status["pid"] == process.pid
    summary = subprocess.run(
        [str(HEPAD_RUN.with_name("hepad-summary")), str(sweep)], capture_output=True, text=True, timeout=120
    )
    assert summary.returncode == 1, summary.stderr
    with open(sweep / "summary.csv") as handle:
        (row,) = csv.DictReader(handle)
    assert row["status"] == "dead" and f"pid {process.pid}" in row["error"] and "is gone" in row["error"]


def test_the_summary_shows_no_numbers_for_a_job_whose_files_belong_to_different_runs(
    tmp_path, pythia_data_dir
):
    from hepad_cli.sweep import find_jobs

    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "model=pca",
        "model.latent_dim=2,3,4",
        *TINY_PYTHIA,
        f"paths.data_dir={pythia_data_dir}",
        "evaluator.n_bootstrap=0",
        "evaluator.plots=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # job0 shows job1's auc.json; job1's run_info.json ran other overrides than Hydra recorded for it.
    (sweep / "job0" / "auc.json").write_bytes((sweep / "job1" / "auc.json").read_bytes())
    info = json.loads((sweep / "job1" / "run_info.json").read_text())
    info["overrides"] = [o.replace("latent_dim=3", "latent_dim=7") for o in info["overrides"]]
    (sweep / "job1" / "run_info.json").write_text(json.dumps(info))
    jobs = {job.directory.name: job for job in find_jobs(sweep)}
    assert jobs["job0"].status == jobs["job1"].status == "inconsistent"
    assert "auc.json of run" in jobs["job0"].error and "latent_dim=7" in jobs["job1"].error
    assert jobs["job0"].report is None and jobs["job1"].report is None
    assert jobs["job2"].status == "complete" and jobs["job2"].report is not None


def test_ctrl_c_during_generation_leaves_no_sample_and_a_rerun_generates_it(tmp_path):
    data_dir = tmp_path / "data"
    args = [
        "model=pca",
        "data.n_background=4000",
        "data.signals=[top]",
        "data.n_signal=100",
        f"paths.data_dir={data_dir}",
    ]
    process = start_cli(*args, cwd=tmp_path)
    wait_for(lambda: any((data_dir / "pythia").glob(".*parts")) if (data_dir / "pythia").is_dir() else False)
    time.sleep(1.0)
    assert ctrl_c(process) != 0
    assert not list((data_dir / "pythia").glob("*.h5")), "an interrupted generation left a sample file"
    # Workers are gone too: nothing keeps writing part files after the interruption.
    time.sleep(1.0)
    assert not list((data_dir / "pythia").glob(".*parts"))

    result = run_cli(
        "model=pca",
        "data.n_background=200",
        "data.signals=[top]",
        "data.n_signal=60",
        "evaluator.n_bootstrap=0",
        "evaluator.plots=false",
        f"paths.data_dir={data_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_disk_full_while_writing_results_marks_the_run_failed_and_leaves_earlier_runs_untouched(
    tmp_path, pythia_data_dir
):
    """A real small filesystem that fills up right after the model is saved, while scores.h5 and
    auc.json are written: the run fails cleanly (no native crash), removes its partial results, records
    the failure, and an earlier run on the same disk keeps every byte."""
    common = [
        *TINY_PYTHIA,
        f"paths.data_dir={pythia_data_dir}",
        "evaluator.n_bootstrap=0",
        "evaluator.plots=false",
    ]
    hepad = shlex.quote(str(HEPAD_RUN))
    earlier = shlex.join([*common, "model=pca"])
    failing = shlex.join([*common, *FAST_TRAINER[:3]])
    script = f"""
{hepad} {earlier} hydra.run.dir="$MNT/earlier" >/dev/null 2>&1 || exit 91
(cd "$MNT/earlier" && find . -type f -exec md5sum {{}} + | sort) > "$OUT/earlier.before"
{hepad} {failing} hydra.run.dir="$MNT/run" 2> "$OUT/stderr.txt" &
pid=$!
while [ ! -f "$MNT/run/model/preprocessing.json" ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done
head -c 64M /dev/zero > "$MNT/filler" 2>/dev/null
wait $pid
echo $? > "$OUT/rc"
(cd "$MNT/earlier" && find . -type f -exec md5sum {{}} + | sort) > "$OUT/earlier.after"
cp -a "$MNT/run" "$OUT/run"
"""
    result = in_small_filesystem(script, tmp_path, options="size=24m")
    out = tmp_path / "out"
    assert result.returncode == 0, result.stderr[-2000:]
    stderr = (out / "stderr.txt").read_text()
    assert (out / "rc").read_text().strip() == "1", stderr[-2000:]  # 139 would be a native crash
    assert "hepad-run: error: No space left on device" in stderr and "Traceback" not in stderr
    assert "the run is marked failed in" in stderr
    assert_failed_without_results(out / "run", "No space left on device")
    assert (out / "earlier.before").read_text() == (out / "earlier.after").read_text()
    assert "./auc.json" in (out / "earlier.before").read_text()


RECORD_ON_A_FULL_DISK = """
import errno, json, logging, os, subprocess
from pathlib import Path

from hepad_cli.provenance import RunRecord

logging.basicConfig(level=logging.ERROR, format="%(message)s")
mnt = Path(os.environ["MNT"])
(mnt / "run").mkdir()
record = RunRecord(mnt / "run", {"seed": 1}, [])
subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
read_only = record.failed(RuntimeError("first failure"))
after_read_only = json.loads((mnt / "run" / "status.json").read_text())["status"]
subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
try:  # every byte and every inode of the disk
    with open(mnt / "filler", "wb") as handle:
        while True:
            handle.write(bytes(65536))
except OSError:
    pass
try:
    for i in range(10**6):
        (mnt / f"inode{i}").touch()
except OSError:
    pass
full = record.failed(OSError(errno.ENOSPC, "No space left on device"))
status = json.loads((mnt / "run" / "status.json").read_text())
outcome = {"read_only": read_only, "after_read_only": after_read_only, "full": full, "status": status}
print(json.dumps(outcome))
"""


def test_the_record_says_when_the_status_cannot_be_written_and_uses_the_old_blocks_on_a_full_disk(tmp_path):
    script = f"{shlex.quote(sys.executable)} -c {shlex.quote(RECORD_ON_A_FULL_DISK)}"
    result = in_small_filesystem(script, tmp_path, options="size=1m,nr_inodes=32")
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.splitlines()[-1])
    # Read-only: nothing can be written, and the log says what status.json still claims.
    assert outcome["read_only"] is False and outcome["after_read_only"] == "running"
    assert "could not mark the run failed in" in result.stderr and "it still says 'running'" in result.stderr
    # Full (no byte, no inode): no new file, so the old status.json is overwritten in place.
    assert outcome["full"] is True
    assert outcome["status"]["status"] == "failed" and "No space left" in outcome["status"]["error"]


def test_the_cli_reports_what_status_json_really_says(tmp_path):
    from hepad_cli.run import status_line

    assert status_line(tmp_path) == f"no status was recorded: {tmp_path / 'status.json'} could not be written"
    (tmp_path / "status.json").write_text(json.dumps({"status": "running", "pid": os.getpid()}))
    assert "could not be updated (see the log): it still says 'running'" in status_line(tmp_path)
    (tmp_path / "status.json").write_text(json.dumps({"status": "running", "pid": 1, "host": "elsewhere"}))
    assert "belongs to another run (pid 1 on elsewhere)" in status_line(tmp_path)
    (tmp_path / "status.json").write_text(json.dumps({"status": "failed"}))
    assert status_line(tmp_path) == f"the run is marked failed in {tmp_path / 'status.json'}"


def test_a_full_disk_before_the_run_is_named_before_hydra_writes_anything(tmp_path, pythia_data_dir):
    args = shlex.join([*TINY_PYTHIA, f"paths.data_dir={pythia_data_dir}"])
    script = f"""
head -c 8M /dev/zero > "$MNT/filler" 2>/dev/null
{shlex.quote(str(HEPAD_RUN))} {args} hydra.run.dir="$MNT/run"
echo "rc=$?"
"""
    result = in_small_filesystem(script, tmp_path, options="size=2m")
    assert "rc=1" in result.stdout and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "hydra.run.dir=" in result.stderr and "KiB free" in result.stderr


def test_same_seed_gives_identical_metrics_and_scores_and_another_seed_does_not(tmp_path, pythia_data_dir):
    common = [*TINY_PYTHIA, f"paths.data_dir={pythia_data_dir}", *FAST_TRAINER, "evaluator.plots=false"]
    for seed in (3, 3, 4):
        result = run_cli(*common, f"seed={seed}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    runs = sorted(tmp_path.glob("outputs/*/*/auc.json"), key=lambda p: p.parent.name)
    seeds = [json.loads((p.parent / "run_info.json").read_text())["config"]["seed"] for p in runs]
    by_seed = {}
    for path, seed in zip(runs, seeds, strict=True):
        with h5py.File(path.parent / "scores.h5") as f:
            by_seed.setdefault(seed, []).append((json.loads(path.read_text())["signals"], f["score"][:]))
    (signals_a, scores_a), (signals_b, scores_b) = by_seed[3]
    assert json.dumps(signals_a, sort_keys=True) == json.dumps(signals_b, sort_keys=True)
    np.testing.assert_array_equal(scores_a, scores_b)
    ((_, scores_other),) = by_seed[4]
    assert not np.array_equal(scores_a, scores_other)
