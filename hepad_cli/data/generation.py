"""Generate QCD, top, W and Z jets with Pythia 8 + FastJet (fjcore), in the Top Quark Tagging file layout.

pp collisions at ``sqrt_s``; final-state visible particles (neutrinos excluded) are clustered with
anti-kT; jets in the pT window and within ``|eta| < jet_eta_max`` are kept. Signal jets are truth-matched
as in the reference dataset: the parent (t, W or Z, last copy before its decay) and all its decay quarks
lie within ``Delta R < R`` of the jet axis, and the parent's four-vector goes to the ``truth*`` columns.

Generation runs in worker processes ("spawn": the parent may have TensorFlow loaded), each with its own
seed derived from the settings; the parent concatenates their jets in worker order, so a file is a
deterministic function of (settings, n_workers). Files are written under a temporary name and renamed,
so an interrupted run never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import queue as queue_module
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from hepad_cli.data.download import file_md5, md5_sidecar, sidecar_mismatch, write_md5_sidecar
from hepad_cli.data.toptagging_format import MAX_CONSTITUENTS, write_toptagging_h5
from hepad_cli.io import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

PROCESSES = ("qcd", "top", "w", "z")
PARENT_ID = {"top": 6, "w": 24, "z": 23}
# Bump when the physics or the file content changes, so cached samples are regenerated.
GENERATOR_VERSION = 1
# Default pT-hat window as factors of the jet window. QCD: about the parton pT, a little wider. Signals:
# a matched jet needs its parent at least as hard as the jet, so starting the window at jet_pt_min
# keeps the jet pT spectrum flat while doubling the acceptance of a window started at 0.9 (measured:
# top 0.59, W 0.53, Z 0.46 matched jets per event, QCD 0.70 jets per event).
_PTHAT_FACTORS = {"qcd": (0.9, 1.08), "top": (1.0, 1.15), "w": (1.0, 1.1), "z": (1.0, 1.1)}
_MAX_SEED = 900_000_000
_CHUNK_JETS = 5_000  # jets per worker part file: bounds the memory of workers and parent
_MAX_EVENTS_WITHOUT_JET = 2_000
_MAX_FAILED_EVENTS = 1_000


class GenerationError(RuntimeError):
    """Jet generation failed (in a worker or while writing the file)."""


@dataclass(frozen=True)
class GenerationSettings:
    """What to generate; every field enters the cache key."""

    process: str
    n_jets: int
    seed: int
    sqrt_s: float = 14000.0
    jet_pt_min: float = 550.0
    jet_pt_max: float = 650.0
    jet_eta_max: float = 2.0
    jet_radius: float = 0.8
    max_constituents: int = MAX_CONSTITUENTS
    pthat_min: float | None = None
    pthat_max: float | None = None
    mpi: bool = True

    def __post_init__(self) -> None:
        # Store floats as floats, so 550 and 550.0 (YAML ints vs floats) give the same cache key.
        for name in (
            "sqrt_s",
            "jet_pt_min",
            "jet_pt_max",
            "jet_eta_max",
            "jet_radius",
            "pthat_min",
            "pthat_max",
        ):
            value = getattr(self, name)
            if value is None and name.startswith("pthat"):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise ValueError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.process not in PROCESSES:
            raise ValueError(f"process must be one of {list(PROCESSES)}, got {self.process!r}")
        if not _is_int(self.n_jets) or self.n_jets <= 0:
            raise ValueError(f"n_jets must be a positive integer, got {self.n_jets!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not self.sqrt_s > 0:
            raise ValueError(f"sqrt_s must be > 0 GeV, got {self.sqrt_s!r}")
        if not 0 <= self.jet_pt_min < self.jet_pt_max:
            raise ValueError(
                f"jet_pt_min must be >= 0 and < jet_pt_max, got jet_pt_min={self.jet_pt_min!r}, "
                f"jet_pt_max={self.jet_pt_max!r}"
            )
        if not self.jet_eta_max > 0:
            raise ValueError(f"jet_eta_max must be > 0, got {self.jet_eta_max!r}")
        if not self.jet_radius > 0:
            raise ValueError(f"jet_radius must be > 0, got {self.jet_radius!r}")
        if not _is_int(self.max_constituents) or not 1 <= self.max_constituents <= MAX_CONSTITUENTS:
            raise ValueError(
                f"max_constituents must be an integer in 1..{MAX_CONSTITUENTS}, got {self.max_constituents!r}"
            )
        for name in ("pthat_min", "pthat_max"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= self.sqrt_s / 2:
                raise ValueError(f"{name} must be in [0, sqrt_s/2 = {self.sqrt_s / 2}] GeV, got {value!r}")
        lo, hi = self.pthat_window()
        if not lo < hi:
            raise ValueError(f"pthat_min must be < pthat_max, got pthat_min={lo!r}, pthat_max={hi!r}")
        if not isinstance(self.mpi, bool):
            raise ValueError(f"mpi must be true or false, got {self.mpi!r}")

    def pthat_window(self) -> tuple[float, float]:
        """The PhaseSpace:pTHatMin/Max in GeV: the given values, or the per-process default."""
        low, high = _PTHAT_FACTORS[self.process]
        pthat_min = self.jet_pt_min * low if self.pthat_min is None else self.pthat_min
        pthat_max = self.jet_pt_max * high if self.pthat_max is None else self.pthat_max
        # Rounded so the default window reads (and hashes) as 747.5, not 747.4999999999999.
        return round(float(pthat_min), 6), round(float(min(pthat_max, self.sqrt_s / 2)), 6)

    def cache_key(self) -> str:
        """Short stable hash of all settings (and the generator version): 12 hex digits."""
        payload = {
            **asdict(self),
            "pthat_window": self.pthat_window(),
            "generator_version": GENERATOR_VERSION,
        }
        text = json.dumps(payload, sort_keys=True, default=float)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def worker_seed(settings: GenerationSettings, worker_index: int) -> int:
    """Pythia seed in [1, 900000000] of one worker, derived from (process, seed, worker index)."""
    # The process name is mixed in so that QCD and signal samples with the same seed are independent.
    text = f"hepad:{settings.process}:{settings.seed}:{worker_index}"
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") % _MAX_SEED + 1


def split_jets(n_jets: int, n_workers: int) -> list[int]:
    """How many jets each worker makes: as even as possible, earlier workers take the remainder."""
    base, extra = divmod(n_jets, n_workers)
    return [base + (i < extra) for i in range(n_workers)]


# ----------------------------------------------------------------------------------------------------
# One generator (runs inside a worker process)


def pythia_settings(settings: GenerationSettings, seed: int) -> list[str]:
    """The Pythia readString lines for these settings and seed."""
    pthat_min, pthat_max = settings.pthat_window()
    lines = [
        "Beams:idA = 2212",
        "Beams:idB = 2212",
        f"Beams:eCM = {settings.sqrt_s}",
        "Print:quiet = on",
        "Next:numberCount = 0",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
        f"PhaseSpace:pTHatMin = {pthat_min}",
        f"PhaseSpace:pTHatMax = {pthat_max}",
        f"PartonLevel:MPI = {'on' if settings.mpi else 'off'}",
        # Particles with c*tau > 10 mm are stable, the usual generator-level definition at the LHC.
        "ParticleDecays:limitTau0 = on",
        "ParticleDecays:tau0Max = 10",
    ]
    hadronic = "onIfAny = 1 2 3 4 5"
    if settings.process == "qcd":
        lines += ["HardQCD:all = on"]
    elif settings.process == "top":
        lines += ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", f"24:{hadronic}"]
    elif settings.process == "w":
        lines += [
            "WeakBosonAndParton:qqbar2Wg = on",
            "WeakBosonAndParton:qg2Wq = on",
            "24:onMode = off",
            f"24:{hadronic}",
        ]
    else:
        lines += [
            "WeakBosonAndParton:qqbar2gmZg = on",
            "WeakBosonAndParton:qg2gmZq = on",
            "WeakZ0:gmZmode = 2",  # Z only, no photon interference
            "23:onMode = off",
            f"23:{hadronic}",
        ]
    return lines


def _eta_phi(p: np.ndarray) -> tuple[float, float]:
    """(eta, phi) of one (E, px, py, pz) four-vector."""
    pt = math.hypot(p[1], p[2])
    return math.asinh(p[3] / pt) if pt > 0 else math.copysign(1e9, p[3]), math.atan2(p[2], p[1])


def _delta_r(eta1: float, phi1: float, eta2: float, phi2: float) -> float:
    dphi = (phi1 - phi2 + math.pi) % (2 * math.pi) - math.pi
    return math.hypot(eta1 - eta2, dphi)


class JetGenerator:
    """Pythia + anti-kT in one process: ``next_jets()`` runs one event and returns its accepted jets."""

    def __init__(self, settings: GenerationSettings, seed: int) -> None:
        import pythia8mc

        self.settings = settings
        self.pythia = pythia8mc.Pythia("", False)
        for line in pythia_settings(settings, seed):
            if not self.pythia.readString(line):
                raise GenerationError(f"Pythia rejected the setting {line!r}")
        if not self.pythia.init():
            raise GenerationError(
                f"Pythia initialisation failed for {settings.process} at sqrt_s={settings.sqrt_s} GeV, "
                f"pTHat window {settings.pthat_window()} GeV"
            )
        # Anti-kT (power -1) on all visible final-state particles (select 2: not neutrinos) with their own
        # masses (massSet 2), by the FastJet core built into Pythia (useFJcore), with the standard
        # rapidity-azimuth distance: the jets FastJet finds, bit for bit, without handing every particle
        # through Python (the particle loop cost a fifth of the event time). Particles beyond |eta| 25
        # are ignored. Jets are clustered down to half the window so none that can pass is lost.
        self.slow_jet = pythia8mc.SlowJet(
            -1, settings.jet_radius, 0.5 * settings.jet_pt_min, 25.0, 2, 2, None, True, True
        )
        self.n_events = 0
        self.n_failed = 0

    def next_jets(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Run one event; return its accepted jets as (constituents (200, 4), truth (4,)), pT-ordered."""
        if not self.pythia.next():
            self.n_failed += 1
            if self.n_failed > _MAX_FAILED_EVENTS:
                raise GenerationError(f"Pythia failed to generate {self.n_failed} events; giving up")
            return []
        self.n_events += 1
        event = self.pythia.event
        jets = self._cluster(event)
        if not jets:
            return []
        parents = self._parents(event) if self.settings.process in PARENT_ID else None
        accepted = []
        for jet_p4, constituents in jets:
            truth = np.zeros(4)
            if parents is not None:
                matched = self._match(jet_p4, parents)
                if matched is None:
                    continue
                truth = matched
            accepted.append((self._pad(constituents), truth))
        return accepted

    def _cluster(self, event) -> list[tuple[np.ndarray, np.ndarray]]:
        """Anti-kT jets in the pT window and |eta| range: (jet four-vector, constituents), pT-ordered.

        Cuts use the whole jet, the sum of its constituents in event order; only a jet with more than
        max_constituents particles is stored with a constituent sum slightly below it (never seen at
        200 and R = 0.8: at most 199 in 3000 jets).
        """
        s = self.settings
        slow_jet = self.slow_jet
        slow_jet.analyze(event)
        jets = []
        for i in range(slow_jet.sizeJet()):
            # SlowJet's own pT differs from the constituent sum by rounding only: skip jets far outside.
            if not 0.99 * s.jet_pt_min <= slow_jet.pT(i) <= 1.01 * s.jet_pt_max:
                continue
            constituents = np.array(
                [_p4_of(event[k]) for k in sorted(slow_jet.constituents(i))], dtype=np.float64
            )
            p4 = constituents.sum(axis=0)  # E-scheme: the jet is the sum of its constituents
            pt = math.hypot(p4[1], p4[2])
            if s.jet_pt_min <= pt <= s.jet_pt_max and abs(_eta_phi(p4)[0]) < s.jet_eta_max:
                jets.append((pt, p4, constituents))
        jets.sort(key=lambda jet: -jet[0])
        return [(p4, constituents) for _, p4, constituents in jets]

    def _pad(self, constituents: np.ndarray) -> np.ndarray:
        """pT-ordered, truncated to max_constituents and zero-padded to 200 rows."""
        pt = np.hypot(constituents[:, 1], constituents[:, 2])
        order = np.argsort(-pt, kind="stable")[: self.settings.max_constituents]
        out = np.zeros((MAX_CONSTITUENTS, 4))
        out[: len(order)] = constituents[order]
        return out

    def _parents(self, event) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """Hard-process parents of this event: (four-vector before decay, decay-quark four-vectors)."""
        parent_id = PARENT_ID[self.settings.process]
        parents = []
        # The outgoing hard-process particles sit at the top of the record (status -22 for resonances).
        for i in range(1, min(event.size(), 10)):
            if event[i].idAbs() == parent_id and event[i].status() == -22:
                last = event[event[i].iBotCopyId()]
                daughters = [event[d] for d in last.daughterList()]
                if parent_id == 6:
                    # t -> W b: the b (any quark) plus the two quarks of the W's last copy.
                    quarks = [d for d in daughters if 1 <= d.idAbs() <= 5]
                    for w in (d for d in daughters if d.idAbs() == 24):
                        w_last = event[w.iBotCopyId()]
                        quarks += [event[d] for d in w_last.daughterList() if 1 <= event[d].idAbs() <= 5]
                else:
                    quarks = [d for d in daughters if 1 <= d.idAbs() <= 5]
                expected = 3 if parent_id == 6 else 2
                if len(quarks) != expected:
                    continue  # not a hadronic decay (cannot happen with the decay modes set here)
                parents.append((_p4(last), [_p4(q) for q in quarks]))
        return parents

    def _match(self, jet_p4: np.ndarray, parents: list) -> np.ndarray | None:
        """The parent four-vector if it and all its decay quarks are within R of the jet axis."""
        radius = self.settings.jet_radius
        jet_eta, jet_phi = _eta_phi(jet_p4)
        for parent, quarks in parents:
            if all(_delta_r(jet_eta, jet_phi, *_eta_phi(p)) < radius for p in (parent, *quarks)):
                return parent
        return None


def _p4_of(particle) -> tuple[float, float, float, float]:
    return particle.e(), particle.px(), particle.py(), particle.pz()


def _p4(particle) -> np.ndarray:
    return np.array(_p4_of(particle), dtype=np.float64)


# ----------------------------------------------------------------------------------------------------
# Worker processes


def _worker(
    settings: GenerationSettings,
    worker_index: int,
    n_jets: int,
    part_dir: str,
    messages: Any,
    quiet_stdout: bool,
) -> None:
    """Generate n_jets into part files; report progress, completion or the error through the queue."""
    try:
        if quiet_stdout:
            # Pythia and FastJet print banners to C stdout; keep the parent's progress bar clean.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
        generator = JetGenerator(settings, worker_seed(settings, worker_index))
        constituents: list[np.ndarray] = []
        truth: list[np.ndarray] = []
        n_done, n_chunks, unreported, last_report = 0, 0, 0, time.monotonic()
        while n_done < n_jets:
            jets = generator.next_jets()[: n_jets - n_done]
            for jet_constituents, jet_truth in jets:
                constituents.append(jet_constituents)
                truth.append(jet_truth)
            n_done += len(jets)
            unreported += len(jets)
            if n_done == 0 and generator.n_events >= _MAX_EVENTS_WITHOUT_JET:
                raise GenerationError(
                    f"no {settings.process} jet with pT in [{settings.jet_pt_min}, {settings.jet_pt_max}] "
                    f"GeV and |eta| < {settings.jet_eta_max} in {generator.n_events} events (pTHat window "
                    f"{settings.pthat_window()} GeV); widen the pTHat window or the jet window"
                )
            if len(constituents) >= _CHUNK_JETS or (n_done == n_jets and constituents):
                np.save(
                    Path(part_dir) / f"w{worker_index:04d}_{n_chunks:06d}_constituents.npy",
                    np.stack(constituents),
                )
                np.save(Path(part_dir) / f"w{worker_index:04d}_{n_chunks:06d}_truth.npy", np.stack(truth))
                constituents, truth = [], []
                n_chunks += 1
            now = time.monotonic()
            if unreported and (now - last_report > 0.2 or n_done == n_jets):
                messages.put(("progress", worker_index, unreported))
                unreported, last_report = 0, now
        messages.put(
            (
                "done",
                worker_index,
                {
                    "jets": n_done,
                    "events": generator.n_events,
                    "failed": generator.n_failed,
                    "chunks": n_chunks,
                },
            )
        )
    except BaseException as error:  # noqa: BLE001 - report everything, including KeyboardInterrupt
        detail = traceback.format_exc()
        messages.put(("error", worker_index, f"{type(error).__name__}: {error}\n{detail}"))


def _handle(message: tuple, settings: GenerationSettings, stats: dict, bar: Any) -> None:
    """Apply one worker message: progress, completion, or raise the worker's error here."""
    kind, index, payload = message
    if kind == "progress":
        bar.update(payload)
    elif kind == "done":
        stats[index] = payload
    else:
        raise GenerationError(f"Pythia worker {index} ({settings.process}) failed: {payload}")


def _run_workers(
    settings: GenerationSettings, shares: list[int], part_dir: Path, progress: bool
) -> list[dict[str, int]]:
    """Start one process per non-empty share, show one progress bar, and collect the workers' stats."""
    from tqdm.auto import tqdm

    if mp.get_start_method(allow_none=True) not in (None, "fork", "spawn", "forkserver"):
        # Inside a joblib (loky) worker the inherited start method is 'loky', which a spawned child
        # cannot resolve; spawn children must be told a standard one.
        mp.set_start_method("spawn", force=True)
    context = mp.get_context("spawn")
    messages = context.Queue()
    processes = {}
    for index, share in enumerate(shares):
        if share:
            process = context.Process(
                target=_worker,
                args=(settings, index, share, str(part_dir), messages, True),
                name=f"hepad-pythia-{settings.process}-{index}",
                daemon=True,
            )
            process.start()
            processes[index] = process
    stats: dict[int, dict[str, int]] = {}
    bar = tqdm(
        total=sum(shares), unit="jet", desc=f"generating {settings.process} jets", disable=not progress
    )
    try:
        while len(stats) < len(processes):
            try:
                _handle(messages.get(timeout=0.5), settings, stats, bar)
            except queue_module.Empty:
                pass
            # A worker that died without a message (killed, crashed in C++) must not hang us. A worker
            # that exited normally flushed its messages first, so drain the queue before judging.
            if any(i not in stats and not p.is_alive() for i, p in processes.items()):
                deadline = time.monotonic() + 1.0  # bounded: live workers keep sending progress
                try:
                    while time.monotonic() < deadline:
                        _handle(messages.get(timeout=0.2), settings, stats, bar)
                except queue_module.Empty:
                    pass
                for index, process in processes.items():
                    if index not in stats and not process.is_alive():
                        raise GenerationError(
                            f"Pythia worker {index} ({settings.process}) died with exit code "
                            f"{process.exitcode} without reporting an error"
                        )
        for process in processes.values():
            process.join()
    finally:
        bar.close()
        for process in processes.values():
            if process.is_alive():
                process.terminate()
        for process in processes.values():
            process.join(timeout=10)
        messages.close()
    return [
        stats.get(index, {"jets": 0, "events": 0, "failed": 0, "chunks": 0}) for index in range(len(shares))
    ]


def _generate(
    settings: GenerationSettings, out_path: Path, n_workers: int | None, progress: bool
) -> dict[str, Any]:
    """Generate and write the file; return statistics (events, seconds, workers)."""
    import importlib.util

    if importlib.util.find_spec("pythia8mc") is None:
        raise GenerationError(
            "data=pythia generates jets with Pythia 8 (the pythia8mc package), which is not installed: "
            "its wheels cover Linux x86-64 and macOS arm64; elsewhere run `pip install pythia8mc` (it builds "
            "from source) or use another dataset (data=jetnet, data=files)"
        )
    n_workers = (os.cpu_count() or 1) if n_workers is None else n_workers
    if not _is_int(n_workers) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive integer or None, got {n_workers!r}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    shares = split_jets(settings.n_jets, n_workers)
    started = time.perf_counter()
    part_dir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", suffix=".parts", dir=out_path.parent))
    try:
        log.info(
            "generating %d %s jets with Pythia 8 in %d worker(s) (pTHat %s GeV) -> %s",
            settings.n_jets,
            settings.process,
            sum(1 for s in shares if s),
            settings.pthat_window(),
            out_path,
        )
        stats = _run_workers(settings, shares, part_dir, progress)
        is_signal = int(settings.process != "qcd")
        n_written = 0
        with atomic_path(out_path, suffix=".partial.h5") as tmp_file:
            tmp_file.unlink()  # the writer appends, so it must start from no file
            for index, worker_stats in enumerate(stats):
                for chunk in range(worker_stats["chunks"]):
                    stem = part_dir / f"w{index:04d}_{chunk:06d}"
                    constituents = np.load(f"{stem}_constituents.npy")
                    truth = np.load(f"{stem}_truth.npy")
                    write_toptagging_h5(
                        tmp_file, constituents, np.full(len(constituents), is_signal), truth, append=True
                    )
                    n_written += len(constituents)
            if n_written != settings.n_jets:
                raise GenerationError(f"workers produced {n_written} jets, expected {settings.n_jets}")
    finally:
        shutil.rmtree(part_dir, ignore_errors=True)
    seconds = time.perf_counter() - started
    n_events = sum(s["events"] for s in stats)
    log.info(
        "wrote %d %s jets from %d events in %.1f s (%.1f jets/s, %.3f jets/event) to %s",
        n_written,
        settings.process,
        n_events,
        seconds,
        n_written / seconds,
        n_written / max(n_events, 1),
        out_path,
    )
    return {
        "events": n_events,
        "failed_events": sum(s["failed"] for s in stats),
        "seconds": seconds,
        "n_workers": n_workers,
    }


def generate_sample(
    settings: GenerationSettings,
    out_path: str | os.PathLike,
    n_workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Generate settings.n_jets jets into out_path (Top Quark Tagging layout), atomically; return the path."""
    _generate(settings, Path(out_path), n_workers, progress)
    return Path(out_path)


# ----------------------------------------------------------------------------------------------------
# Cache


def sample_path(settings: GenerationSettings, data_dir: str | os.PathLike) -> Path:
    """Where ensure_sample keeps the file of these settings."""
    return Path(data_dir) / "pythia" / f"{settings.process}_{settings.n_jets}_{settings.cache_key()}.h5"


def _versions() -> dict[str, str | None]:
    versions = {}
    for package in ("pythia8mc",):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _sidecar(settings: GenerationSettings, n_jets: int, stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "settings": asdict(settings),
        "pthat_window": list(settings.pthat_window()),
        "cache_key": settings.cache_key(),
        "generator_version": GENERATOR_VERSION,
        "n_jets": n_jets,
        "versions": _versions(),
        "generation_seconds": round(stats["seconds"], 3),
        "n_events": stats["events"],
        "n_workers": stats["n_workers"],
    }


def ensure_sample(
    settings: GenerationSettings,
    data_dir: str | os.PathLike,
    n_workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Return the cached sample of these settings under data_dir/pythia/, generating it first if needed.

    A cached file is reused only when it matches the md5 recorded beside it when it was generated; any
    other file is generated again (never read).
    """
    from filelock import FileLock

    target = sample_path(settings, data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The lock makes concurrent runs generate once: the second waits, then finds the file.
    with FileLock(f"{target}.lock"):
        if target.exists():
            problem = sidecar_mismatch(target)
            if problem is None:
                log.info("reusing cached %s sample %s (md5 verified)", settings.process, target)
                return target
            log.warning("cached sample %s %s; generating it again", target, problem)
        stats = _generate(settings, target, n_workers, progress)
        write_md5_sidecar(md5_sidecar(target), file_md5(target), target.name)
        atomic_write_json(target.with_suffix(".json"), _sidecar(settings, settings.n_jets, stats))
    return target
