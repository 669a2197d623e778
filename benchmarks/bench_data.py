"""Figures 1-3: jet images, Top Tagging file → images end to end, Pythia generation; and τ32.

Run as a script, this module is also the child process of figures 2 and 3 (``python bench_data.py
toptagging-ours FILE`` ...): each side runs alone in a fresh interpreter, which reports its peak RSS.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from bench_common import (
    Figure,
    Seconds,
    Settings,
    Side,
    child_report,
    fmt_rate,
    mem_available_bytes,
    run_child,
    side_by_side,
)

BENCH = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------------------
# 1. images


def per_jet_loop(constituents: np.ndarray, size: int = 16, radius: float = 0.8) -> np.ndarray:
    """The baseline: what the notebooks' jet-image code does, one jet at a time, everything per jet.

    Per jet: constituent pT, η, φ; the jet four-vector (sum of the constituents) and its axis; Δη, Δφ
    (wrapped) and pT fractions; ``np.histogram2d``; normalisation to sum one.
    """
    images = np.zeros((len(constituents), size, size), np.float32)
    bins = [[-radius, radius], [-radius, radius]]
    for i, jet in enumerate(constituents):
        px, py, pz = jet[:, 1], jet[:, 2], jet[:, 3]
        pt = np.sqrt(px**2 + py**2)
        real = pt > 0
        total = jet.sum(axis=0)
        jet_pt = np.sqrt(total[1] ** 2 + total[2] ** 2)
        if jet_pt == 0:
            continue
        jet_eta = np.arcsinh(total[3] / jet_pt)
        jet_phi = np.arctan2(total[2], total[1])
        eta = np.arcsinh(pz[real] / pt[real])
        phi = np.arctan2(py[real], px[real])
        delta_phi = np.mod(phi - jet_phi + np.pi, 2 * np.pi) - np.pi
        image, _, _ = np.histogram2d(
            eta - jet_eta, delta_phi, bins=size, range=bins, weights=pt[real] / jet_pt
        )
        if image.sum() > 0:
            image = image / image.sum()
        images[i] = image
    return images


def figure_tau32(settings: Settings) -> Figure:
    """τ32 of the benchmark jets: the vectorised path against the per-jet reference loop (the same
    definition, axes from the 64 hardest constituents), and the approximation against axes from all."""
    from hepad_cli.data.substructure import AXES_FROM, tau32, tau32_reference

    constituents, description = benchmark_jets(settings)
    # Alternate QCD and top jets of the sample (first and second half) so each side sees both kinds.
    half = len(constituents) // 2
    n_loop = settings.size(40, 4)
    mixed = np.concatenate([constituents[: n_loop // 2], constituents[half : half + n_loop - n_loop // 2]])
    times = side_by_side(
        settings.heavy_repeats,
        {"loop": lambda: tau32_reference(mixed), "ours": lambda: tau32(constituents)},
    )
    equal = bool(np.allclose(tau32(mixed), tau32_reference(mixed), rtol=1e-10, atol=1e-14))
    n_exact = settings.size(1000, 20)
    sample = np.concatenate(
        [constituents[: n_exact // 2], constituents[half : half + n_exact - n_exact // 2]]
    )
    difference = np.abs(tau32(sample) - tau32(sample, axes_from=constituents.shape[1]))
    baseline = Side("per-jet loop (tau32_reference)", times["loop"], per_sample=len(mixed))
    fast = Side("tau32, blocks of jets", times["ours"], per_sample=len(constituents))
    ratio = fast.rate / baseline.rate
    return Figure(
        name="tau32",
        what=f"N-subjettiness τ32, axes from the {AXES_FROM} hardest constituents",
        baseline=baseline,
        ours=fast,
        ratio=ratio,
        target="≥ 20×, equal",
        met=ratio >= 20 and equal,
        baseline_text=fmt_rate(baseline.rate, "jets"),
        ours_text=fmt_rate(fast.rate, "jets") + (", equal" if equal else ", DIFFERENT"),
        notes=[
            description,
            f"against axes from every constituent ({len(sample)} jets): median |Δτ32| "
            f"{np.median(difference):.2g}, 90 % within {np.quantile(difference, 0.9):.2g}",
        ],
        extra={
            "equal_to_reference": equal,
            "approximation_median_abs_difference": float(np.median(difference)),
            "approximation_p90_abs_difference": float(np.quantile(difference, 0.9)),
        },
    )


def copy_bandwidth(n_bytes: int, repeats: int) -> float:
    """Bytes per second np.copyto moves between two large, already-touched arrays (median)."""
    source = np.ones(n_bytes // 8)
    target = np.zeros_like(source)
    times = side_by_side(repeats, {"copy": lambda: np.copyto(target, source)})["copy"]
    return n_bytes / float(np.median(times))


def benchmark_jets(settings: Settings) -> tuple[np.ndarray, str]:
    """Jets for figure 1: the cached Pythia samples of figure 4 (QCD, top), or random jets in smoke mode."""
    if settings.smoke:
        from toptagging_file import random_jets

        return random_jets(300, np.random.default_rng(1))[0], "300 random jets (smoke)"
    from hepad_cli.data.toptagging_format import iter_chunks

    paths = pythia_samples(settings)
    constituents = np.concatenate([c.constituents for p in paths.values() for c in iter_chunks(p)])
    return constituents, f"{len(constituents)} Pythia jets (QCD and top, 550-650 GeV)"


def pythia_samples(settings: Settings) -> dict[str, Path]:
    """The default-sized Pythia samples (6000 QCD, 1500 top), generated once under the cache directory."""
    from hepad_cli.config import compose
    from hepad_cli.data.generation import ensure_sample
    from hepad_cli.experiment import instantiate_node

    data = instantiate_node(
        compose(f"paths.data_dir={settings.cache_dir / 'pythia-default'}", "data.signals=[top]").data
    )

    return {
        process: ensure_sample(s, settings.cache_dir / "pythia-default", progress=False)
        for process, s in data.settings.items()
    }


def figure_images(settings: Settings) -> Figure:
    from hepad_cli.data import images as image_module
    from hepad_cli.data.images import jet_images, jet_images_reference

    constituents, description = benchmark_jets(settings)
    constituents = np.ascontiguousarray(constituents)
    ours = jet_images(constituents)
    loop = per_jet_loop(constituents)
    identical_reference = bool(np.array_equal(ours, jet_images_reference(constituents)))
    identical_loop = bool(np.array_equal(ours, loop))

    def one_thread() -> None:
        threads, image_module.THREADS = image_module.THREADS, 1
        try:
            jet_images(constituents)
        finally:
            image_module.THREADS = threads

    times = side_by_side(
        settings.repeats,
        {
            "loop": lambda: per_jet_loop(constituents),
            "ours": lambda: jet_images(constituents),
            "ours_one_thread": one_thread,
        },
    )
    n = len(constituents)
    one_thread_rate = n / float(np.median(times["ours_one_thread"]))
    baseline = Side("per-jet np.histogram2d loop", times["loop"], per_sample=n)
    fast = Side(f"jet_images ({image_module.THREADS} threads)", times["ours"], per_sample=n)
    bytes_per_jet = constituents.shape[1] * 4 * 8
    bandwidth = copy_bandwidth(settings.size(512, 32) * 2**20, settings.repeats)
    floor = bandwidth / bytes_per_jet
    ratio = fast.rate / baseline.rate
    return Figure(
        name="images",
        what="particles → 16×16 jet images",
        baseline=baseline,
        ours=fast,
        ratio=ratio,
        target="≥ 20×, identical",
        met=ratio >= 20 and identical_reference and identical_loop,
        baseline_text=fmt_rate(baseline.rate, "jets"),
        ours_text=fmt_rate(fast.rate, "jets"),
        notes=[
            f"identical to jet_images_reference: {identical_reference}, "
            f"to the per-jet loop: {identical_loop}",
            f"memory-bandwidth floor {fmt_rate(floor, 'jets')} ({bytes_per_jet} B/jet ÷ np.copyto "
            f"{bandwidth / 1e9:.1f} GB/s); ours at {fast.rate / floor:.0%} of it",
            f"ours on one thread: {fmt_rate(one_thread_rate, 'jets')} = "
            f"{one_thread_rate / baseline.rate:.1f}× the loop (the default uses {image_module.THREADS})",
            description,
        ],
        extra={
            "one_thread_jets_per_s": one_thread_rate,
            "identical_to_reference": identical_reference,
            "identical_to_loop": identical_loop,
            "copy_bandwidth_bytes_per_s": bandwidth,
            "bytes_per_jet": bytes_per_jet,
            "bandwidth_floor_jets_per_s": floor,
            "jets": n,
            "data": description,
        },
    )


# ----------------------------------------------------------------------------------------------------
# 2. Top Tagging file → images, end to end


def warm_page_cache(path: Path) -> float:
    """Read the file once (16 MB reads) so both sides start from the page cache; returns seconds."""
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as handle:
        while handle.read(16 * 2**20):
            pass
    return time.perf_counter() - start


def child_toptagging(side: str, path: str) -> None:
    """One side of figure 2 in this (fresh) process: read the whole file into images; report."""
    start = time.perf_counter()
    if side == "baseline":
        import pandas as pd

        from hepad_cli.data.images import jet_images_with_observables

        frame = pd.read_hdf(path, "table")
        read = time.perf_counter()
        constituents = frame.iloc[:, :800].to_numpy().reshape(len(frame), 200, 4)
        labels = frame["is_signal_new"].to_numpy()
        images, pt, mass = jet_images_with_observables(constituents)
        n = len(images)
    else:
        from hepad_cli.data.jets import ImageSettings, read_jet_images

        jets = read_jet_images(path, ImageSettings(size=16, radius=0.8, normalise=True))
        read = start
        n, labels = len(jets.images), jets.is_signal
    end = time.perf_counter()
    child_report(seconds=end - start, read_seconds=read - start, jets=n, signal=int(np.sum(labels)))


def toptagging_equal(path: Path, n_rows: int) -> bool:
    """The streaming reader equals pandas.read_hdf + the same transform on the first n_rows rows."""
    import pandas as pd

    from hepad_cli.data.images import jet_images_with_observables
    from hepad_cli.data.jets import ImageSettings, read_jet_images

    ours = read_jet_images(path, ImageSettings(size=16, radius=0.8, normalise=True), rows=np.arange(n_rows))
    frame = pd.read_hdf(path, "table", start=0, stop=n_rows)
    images, pt, mass = jet_images_with_observables(frame.iloc[:, :800].to_numpy().reshape(-1, 200, 4))
    return bool(
        np.array_equal(ours.images[..., 0], images)
        and np.array_equal(ours.is_signal, frame["is_signal_new"].to_numpy())
        and np.array_equal(ours.mass, mass.astype(np.float32))
        and np.array_equal(ours.pt, pt.astype(np.float32))
    )


def figure_toptagging(settings: Settings) -> Figure:
    from toptagging_file import TRAIN_JETS, ensure_random_file

    n_jets = settings.size(TRAIN_JETS, 3000)
    directory = settings.cache_dir if not settings.smoke else settings.work_dir
    path = ensure_random_file(directory, n_jets)
    size = path.stat().st_size
    script = str(BENCH / "bench_data.py")
    repeats = settings.heavy_repeats
    samples: dict[str, list[dict]] = {"baseline": [], "ours": []}
    from hepad_cli.data.images import load_compiled

    load_compiled()  # compiled once here if the source changed, so no child pays for compiling
    # pandas holds the whole table, then a copy of its float block: about 1.3 × the file.
    baseline_fits = mem_available_bytes() > 1.6 * size + 2e9
    sides = ["baseline", "ours"] if baseline_fits else ["ours"]
    for repeat in range(repeats):
        for side in sides if repeat % 2 == 0 else sides[::-1]:
            warm_page_cache(path)
            start = time.perf_counter()
            report = run_child([script, f"toptagging-{side}", str(path)])
            report["wall_seconds"] = time.perf_counter() - start
            samples[side].append(report)
    equal = toptagging_equal(path, min(n_jets, 20_000))
    ours = Side(
        "read_jet_images (streaming)", [r["wall_seconds"] for r in samples["ours"]], per_sample=n_jets
    )
    ours_rss = max(r["peak_rss_bytes"] for r in samples["ours"])
    notes = [
        f"{n_jets} random jets, {size / 1e9:.2f} GB file, read from the page cache; wall time of a fresh "
        "process each (imports included)",
        f"peak RSS ours {ours_rss / 1e9:.2f} GB (limit 1.5 GB)",
        f"equal to pandas.read_hdf + jet_images on the first {min(n_jets, 20_000)} rows: {equal}",
    ]
    extra = {"file_bytes": size, "jets": n_jets, "ours_peak_rss_bytes": ours_rss, "equal_to_pandas": equal}
    extra["children"] = samples
    if baseline_fits:
        baseline = Side(
            "pandas.read_hdf + jet_images",
            [r["wall_seconds"] for r in samples["baseline"]],
            per_sample=n_jets,
        )
        base_rss = max(r["peak_rss_bytes"] for r in samples["baseline"])
        notes.insert(2, f"peak RSS baseline {base_rss / 1e9:.2f} GB")
        extra["baseline_peak_rss_bytes"] = base_rss
        ratio = baseline.median / ours.median
        rss_ok = ours_rss <= 1.5e9 if not settings.smoke else True
        met = ratio >= 5 and rss_ok and equal
        baseline_text = f"{baseline.median:.3g} s, {base_rss / 1e9:.2f} GB"
    else:
        baseline, ratio, met, baseline_text = None, None, None, "skipped: not enough free memory"
        notes.insert(2, "baseline skipped: pandas would need about 1.6 × the file in free memory")
    return Figure(
        name="toptagging",
        what="Top Tagging file → images, end to end",
        baseline=baseline,
        ours=ours,
        ratio=ratio,
        target="≥ 5×, peak RSS ≤ 1.5 GB",
        met=met,
        baseline_text=baseline_text,
        ours_text=f"{ours.median:.3g} s, {ours_rss / 1e9:.2f} GB",
        notes=notes,
        extra=extra,
    )


# ----------------------------------------------------------------------------------------------------
# 3. Pythia generation


def child_pythia_rates(n_events: int, repeats: int) -> None:
    """Pythia's own next() rate, and our generator's event rate, on one core, side by side."""
    import os

    from hepad_cli.data.generation import GenerationSettings, JetGenerator, pythia_settings

    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)  # Pythia's banners go to C stdout; the report must be the only output
    try:
        import pythia8mc

        settings = GenerationSettings("qcd", 1000, 1)
        pythia = pythia8mc.Pythia("", False)
        for line in pythia_settings(settings, 4711):
            pythia.readString(line)
        pythia.init()
        generator = JetGenerator(settings, 4712)

        def pythia_alone() -> None:
            for _ in range(n_events):
                pythia.next()

        jets = []

        def ours() -> None:
            jets.append(sum(len(generator.next_jets()) for _ in range(n_events)))

        times = side_by_side(repeats, {"pythia": pythia_alone, "ours": ours})
    finally:
        os.dup2(saved, 1)
    child_report(
        pythia_seconds=times["pythia"],
        generator_seconds=times["ours"],
        n_events=n_events,
        jets_per_event=sum(jets) / (len(jets) * n_events),
    )


def figure_pythia(settings: Settings) -> list[Figure]:
    from hepad_cli.data.generation import GenerationSettings, _generate

    n_events = settings.size(300, 15)
    rates = run_child([str(BENCH / "bench_data.py"), "pythia-rates", str(n_events), str(settings.repeats)])
    pythia = Side("Pythia next() alone, 1 core", rates["pythia_seconds"], per_sample=n_events)
    generator = Side("JetGenerator.next_jets, 1 core", rates["generator_seconds"], per_sample=n_events)
    jets_per_event = rates["jets_per_event"]
    ceiling = pythia.rate * jets_per_event
    per_core = generator.rate / pythia.rate

    # End to end (worker processes, Pythia start-up, writing the file): one worker vs two workers with
    # the same number of jets each, so the start-up costs are the same on both sides.
    n_jets = settings.size(800, 8)
    work = settings.work_dir / "pythia"
    stats: dict[str, list[dict]] = {"one": [], "two": []}

    def generate(workers: int) -> float:
        gen_settings = GenerationSettings("qcd", n_jets * workers, 1)
        result = _generate(gen_settings, work / f"qcd_{workers}.h5", n_workers=workers, progress=False)
        stats["one" if workers == 1 else "two"].append(result)
        return Seconds(result["seconds"])

    times = side_by_side(
        settings.heavy_repeats, {"one": lambda: generate(1), "two": lambda: generate(2)}, warmup=False
    )
    one = Side("generate_sample, 1 worker", times["one"], per_sample=n_jets)
    two = Side("generate_sample, 2 workers", times["two"], per_sample=2 * n_jets)
    scaling = two.rate / one.rate
    end_to_end_per_core = one.rate / ceiling
    return [
        Figure(
            name="pythia_per_core",
            what="Pythia generation, per core",
            baseline=pythia,
            ours=generator,
            ratio=per_core,
            target="≥ 0.8× Pythia's ceiling",
            met=per_core >= 0.8,
            baseline_text=f"{fmt_rate(ceiling, 'jets')} ceiling",
            ours_text=fmt_rate(generator.rate * jets_per_event, "jets"),
            notes=[
                f"ceiling = Pythia next() {pythia.rate:.1f} events/s × {jets_per_event:.3f} jets/event (QCD)",
                f"end to end with one worker process (start-up and file writing included): "
                f"{one.rate:.1f} jets/s = {end_to_end_per_core:.2f}× the ceiling",
            ],
            extra={"jets_per_event": jets_per_event, "ceiling_jets_per_s": ceiling},
        ),
        Figure(
            name="pythia_two_cores",
            what="Pythia generation, 2 cores vs 1",
            baseline=one,
            ours=two,
            ratio=scaling,
            target="≥ 1.8×",
            met=scaling >= 1.8,
            baseline_text=fmt_rate(one.rate, "jets"),
            ours_text=fmt_rate(two.rate, "jets"),
            notes=[f"{n_jets} QCD jets per worker, wall time of generate_sample incl. start-up and writing"],
            extra={"stats": stats},
        ),
    ]


if __name__ == "__main__":
    command = sys.argv[1]
    if command.startswith("toptagging-"):
        child_toptagging(command.removeprefix("toptagging-"), sys.argv[2])
    elif command == "pythia-rates":
        child_pythia_rates(int(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown child command {command!r}")
