"""Jet constituents → (Δη, Δφ, pT/pT_jet) → pT images.

Two implementations that give identical images (tests/test_fast_paths.py checks it bit for bit):

- ``jet_images`` / ``jet_images_with_observables``, the fast path used by the readers. Jets go through
  in blocks of ``BLOCK_JETS`` that stay in the CPU cache. A compiled pass (numba) reads each block once,
  sums every jet's four-vector in constituent order and gathers only the real (pT > 0) constituents, so
  NumPy evaluates ``arcsinh`` and ``arctan2`` on real particles only (not on the zero padding); a
  second compiled pass bins them exactly as ``np.histogram2d`` does and accumulates the weights in
  constituent order; NumPy normalises. Inputs of more than one block share ``THREADS`` threads (the
  compiled loops release the GIL). Measured (benchmarks/run.py, figure ``images``): 27x the per-jet
  ``histogram2d`` loop on one thread, 40x on two cores.
- ``jet_kinematics`` and ``jet_images_reference`` (the per-jet ``np.histogram2d`` loop the notebooks
  use): the straightforward NumPy definitions, kept as the reference.

Shared definitions make the two agree to the last bit: pT = sqrt(px² + py²); the jet four-vector is
the sum of its constituents (never the truth columns), added in constituent order, as a per-jet loop
adds them; Δφ = mod(φ − φ_jet + π, 2π) − π; each pixel sums its weights in constituent order.

Optional standard preprocessing (``preprocess``, any of ``PREPROCESSING_STEPS``, always applied in this
order), on the particles' continuous (Δη, Δφ) before they are binned, with pT/pT_jet weights:
``center`` moves the pT centroid to the image centre; ``rotate`` turns the principal axis of the pT-weighted
(Δη, Δφ) distribution onto the Δη axis (the image's first, vertical axis); ``flip`` mirrors each axis so
that its harder half (more pT) lies on the positive side. The fast path computes one affine map per jet
with NumPy over all particles of a block (``alignment_transforms``) and applies it in the compiled binning
loop; the reference computes it jet by jet. Without preprocessing the fast path is unchanged.
"""

from __future__ import annotations

import math
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hepad_cli.validation import check_int, check_number

#: Jets per block of the fast path: about 3 MB of float64 constituents, so a block stays in the L2 cache.
BLOCK_JETS = 512
#: Threads that share the blocks of one call (inputs of more than one block): at most two.
THREADS = min(2, os.cpu_count() or 1)
#: The standard jet-image preprocessing steps, in the order they are applied.
PREPROCESSING_STEPS = ("center", "rotate", "flip")


@dataclass(frozen=True)
class JetKinematics:
    """Per-jet four-vector sums and per-constituent coordinates relative to the jet axis.

    delta_eta, delta_phi, pt_fraction, is_real: (n_jets, n_constituents); delta_phi in radians
    wrapped to [-π, π). pt, mass in GeV; eta, phi of the jet axis.
    """

    delta_eta: np.ndarray
    delta_phi: np.ndarray
    pt_fraction: np.ndarray
    is_real: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray


def _transverse(px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """pT = sqrt(px² + py²) in GeV: the one definition both implementations use."""
    return np.sqrt(px * px + py * py)


def _jet_axis(sums: np.ndarray) -> tuple[np.ndarray, ...]:
    """(pT, pT with zeros replaced by one, η, φ, mass) of jet four-vectors (n, 4) = (E, px, py, pz)."""
    jet_e, jet_px, jet_py, jet_pz = (np.ascontiguousarray(sums[:, i]) for i in range(4))
    jet_pt = _transverse(jet_px, jet_py)
    safe_jet_pt = np.where(jet_pt > 0, jet_pt, 1.0)
    jet_eta = np.arcsinh(jet_pz / safe_jet_pt)
    jet_phi = np.arctan2(jet_py, jet_px)
    jet_mass = np.sqrt(np.maximum(jet_e**2 - jet_px**2 - jet_py**2 - jet_pz**2, 0.0))
    return jet_pt, safe_jet_pt, jet_eta, jet_phi, jet_mass


def jet_kinematics(constituents: np.ndarray) -> JetKinematics:
    """constituents: (n_jets, n_constituents, 4) as (E, px, py, pz) in GeV, zero-padded.

    The jet four-vector is the sum of its constituents (never the truth columns).
    """
    constituents = np.asarray(constituents, dtype=np.float64)
    energy, px, py, pz = (constituents[..., i] for i in range(4))
    pt = _transverse(px, py)
    is_real = pt > 0
    safe_pt = np.where(is_real, pt, 1.0)
    eta = np.arcsinh(pz / safe_pt)
    phi = np.arctan2(py, px)

    # Constituent by constituent, as a per-jet loop adds them (np.sum may pair them differently).
    sums = np.zeros((len(constituents), 4))
    for i in range(constituents.shape[1]):
        sums += constituents[:, i]
    jet_pt, safe_jet_pt, jet_eta, jet_phi, jet_mass = _jet_axis(sums)

    delta_phi = np.mod(phi - jet_phi[:, None] + np.pi, 2 * np.pi) - np.pi
    return JetKinematics(
        delta_eta=np.where(is_real, eta - jet_eta[:, None], 0.0),
        delta_phi=np.where(is_real, delta_phi, 0.0),
        pt_fraction=np.where(is_real, pt / safe_jet_pt[:, None], 0.0),
        is_real=is_real,
        pt=jet_pt,
        eta=jet_eta,
        phi=jet_phi,
        mass=jet_mass,
    )


def _check_image_settings(size: int, radius: float) -> None:
    check_int("image size", size, error=ValueError)
    check_number("image radius", radius, low=0, low_open=True, error=ValueError)


def check_preprocessing(
    steps: object, key: str = "image preprocess", error: type[Exception] = ValueError
) -> tuple[str, ...]:
    """A list of distinct names from PREPROCESSING_STEPS (empty: images as they are)."""
    if (
        not isinstance(steps, list | tuple)
        or any(step not in PREPROCESSING_STEPS for step in steps)
        or len(set(steps)) != len(steps)
    ):
        raise error(
            f"{key} must be a list of distinct steps from {list(PREPROCESSING_STEPS)} (applied in that "
            f"order; [] for none), got {steps!r}"
        )
    return tuple(step for step in PREPROCESSING_STEPS if step in steps)


def alignment_transforms(
    delta_eta: np.ndarray,
    delta_phi: np.ndarray,
    weight: np.ndarray,
    jet: np.ndarray,
    n_jets: int,
    steps: tuple[str, ...],
) -> np.ndarray:
    """Per-jet affine maps (n_jets, 6) = (c_η, c_φ, M₀₀, M₀₁, M₁₀, M₁₁) of the preprocessing ``steps``.

    Particles are given flat, each with its jet's index: (Δη, Δφ) relative to the jet axis and weight
    pT/pT_jet. A particle goes to M · ((Δη, Δφ) − c). Vectorised over jets with bincount.
    """

    def per_jet(values: np.ndarray) -> np.ndarray:
        return np.bincount(jet, weights=values, minlength=n_jets)

    total = per_jet(weight)
    total = np.where(total > 0, total, 1.0)
    transform = np.zeros((n_jets, 6))
    transform[:, 2] = transform[:, 5] = 1.0
    if "center" in steps:
        transform[:, 0] = per_jet(weight * delta_eta) / total
        transform[:, 1] = per_jet(weight * delta_phi) / total
    x = delta_eta - transform[jet, 0]
    y = delta_phi - transform[jet, 1]
    if "rotate" in steps:
        mean_x, mean_y = per_jet(weight * x) / total, per_jet(weight * y) / total
        u, v = x - mean_x[jet], y - mean_y[jet]
        angle = 0.5 * np.arctan2(2 * per_jet(weight * u * v), per_jet(weight * (u * u - v * v)))
        cos, sin = np.cos(angle), np.sin(angle)
        transform[:, 2:] = np.column_stack([cos, sin, -sin, cos])
    if "flip" in steps:
        rotated_x = transform[jet, 2] * x + transform[jet, 3] * y
        rotated_y = transform[jet, 4] * x + transform[jet, 5] * y
        for row, coordinate in ((slice(2, 4), rotated_x), (slice(4, 6), rotated_y)):
            negative = per_jet(weight * (coordinate < 0)) > per_jet(weight * (coordinate > 0))
            transform[negative, row] *= -1.0
    return transform


# ----------------------------------------------------------------------------------------------------
# The fast path. The two loops below are compiled with numba on first use (cached on disk).


def _gather_real(constituents, px, py, pz, pt, jet, sums):  # pragma: no cover - runs compiled
    """Sum each jet's rows in order into sums (n, 4); copy its pT > 0 rows into px, py, pz, pt, jet.

    Returns how many rows were copied. constituents: (n, m, 4) float64 in any memory layout.
    """
    n_jets, n_rows = constituents.shape[0], constituents.shape[1]
    k = 0
    for j in range(n_jets):
        total_e = total_x = total_y = total_z = 0.0
        for r in range(n_rows):
            x = constituents[j, r, 1]
            y = constituents[j, r, 2]
            z = constituents[j, r, 3]
            if r == 0:
                total_e, total_x, total_y, total_z = constituents[j, 0, 0], x, y, z
            else:
                total_e += constituents[j, r, 0]
                total_x += x
                total_y += y
                total_z += z
            t = math.sqrt(x * x + y * y)
            if t > 0:
                px[k] = x
                py[k] = y
                pz[k] = z
                pt[k] = t
                jet[k] = j
                k += 1
        sums[j, 0] = total_e
        sums[j, 1] = total_x
        sums[j, 2] = total_y
        sums[j, 3] = total_z
    return k


def _fill_images(
    eta, phi, pt, jet, jet_eta, jet_phi, safe_jet_pt, edges, alignment, images
):  # pragma: no cover
    """Add pT / pT_jet of each particle to its (Δη, Δφ) pixel of images (n, size, size), in order.

    Pixels as np.histogram2d: edges[b] <= x < edges[b + 1], x == edges[-1] in the last pixel, values
    outside [edges[0], edges[-1]] (and NaN) dropped. The first guess (x - edges[0]) * scale is off by
    at most one pixel next to an edge; comparisons with the same edges make it exact.

    alignment (n, 6) per jet, or (0, 6) for none: (Δη, Δφ) → M · ((Δη, Δφ) − c) with c = alignment[:2]
    and M = alignment[2:] row by row (the standard preprocessing, ``alignment_transforms``).
    """
    size = edges.shape[0] - 1
    low, high = edges[0], edges[size]
    scale = size / (high - low)
    two_pi = 2 * math.pi
    aligned = alignment.shape[0] > 0
    for i in range(eta.shape[0]):
        j = jet[i]
        delta_eta = eta[i] - jet_eta[j]
        if not aligned and not (delta_eta >= low and delta_eta <= high):
            continue
        # np.mod(x, 2π) for x = φ - φ_jet + π in [-π, 3π]: exact above 2π, rounded like NumPy below 0.
        delta_phi = phi[i] - jet_phi[j]
        delta_phi = delta_phi + math.pi
        if delta_phi >= two_pi:
            delta_phi = delta_phi - two_pi
        elif delta_phi < 0:
            delta_phi = delta_phi + two_pi
        delta_phi = delta_phi - math.pi
        if aligned:
            x = delta_eta - alignment[j, 0]
            y = delta_phi - alignment[j, 1]
            delta_eta = alignment[j, 2] * x + alignment[j, 3] * y
            delta_phi = alignment[j, 4] * x + alignment[j, 5] * y
            if not (delta_eta >= low and delta_eta <= high):
                continue
        if not (delta_phi >= low and delta_phi <= high):
            continue
        a = min(int((delta_eta - low) * scale), size - 1)
        while a > 0 and delta_eta < edges[a]:
            a -= 1
        while a < size - 1 and delta_eta >= edges[a + 1]:
            a += 1
        b = min(int((delta_phi - low) * scale), size - 1)
        while b > 0 and delta_phi < edges[b]:
            b -= 1
        while b < size - 1 and delta_phi >= edges[b + 1]:
            b += 1
        images[j, a, b] += pt[i] / safe_jet_pt[j]


@contextmanager
def numba_extensions_skipped():
    """While our loops compile or load, skip numba's import of every installed package's extension.

    numba imports them (here awkward and vector, which pull in SciPy) the first time it compiles or loads
    anything: 0.3 s and 40 MB of memory that our loops do not use. Left armed for any later numba user.
    """
    from numba.core import entrypoints

    armed = not getattr(entrypoints, "_already_initialized", True)
    if armed:
        entrypoints._already_initialized = True
    try:
        yield
    finally:
        if armed:
            entrypoints._already_initialized = False


@lru_cache(maxsize=1)
def _kernels():
    """The compiled loops (numba, ``cache=True``: compiled once per machine, then loaded from disk).

    Explicit signatures, so exactly these variants are compiled and loaded.
    """
    import numba
    from numba import types

    with numba_extensions_skipped():
        return _compile(numba, types)


def _compile(numba, types):
    c1 = types.float64[::1]
    # Read-only input in any memory layout: writable arrays, pandas' copy-on-write arrays and strided
    # views of a file buffer all convert to it, so one machine-code variant serves every caller.
    constituents = types.Array(types.float64, 3, "A", readonly=True)
    gather_signature = types.int64(constituents, c1, c1, c1, c1, types.int64[::1], types.float64[:, ::1])
    fill_signature = types.none(
        c1, c1, c1, types.int64[::1], c1, c1, c1, c1, types.float64[:, ::1], types.float64[:, :, ::1]
    )
    gather = numba.njit(gather_signature, cache=True, nogil=True)(_gather_real)
    fill = numba.njit(fill_signature, cache=True, nogil=True)(_fill_images)
    return gather, fill


def load_compiled() -> None:
    """Compile (first time on a machine) or load the compiled image loops now rather than at first use."""
    _kernels()


class _Workspace:
    """Buffers of one block, reused from block to block and call to call (fresh memory is slow to touch)."""

    def __init__(self, n_jets: int, n_rows: int, size: int) -> None:
        self.shape = (n_jets, n_rows, size)
        capacity = n_jets * n_rows
        self.columns = np.empty((4, capacity))
        self.jet = np.empty(capacity, dtype=np.int64)
        self.sums = np.empty((n_jets, 4))
        self.images = np.empty((n_jets, size, size))


_local = threading.local()
_NO_ALIGNMENT = np.zeros((0, 6))


@lru_cache(maxsize=1)
def _executor():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=THREADS - 1, thread_name_prefix="hepad-images")


def _workspace(n_rows: int, size: int) -> _Workspace:
    """This thread's workspace for blocks of BLOCK_JETS jets of n_rows constituents."""
    work = getattr(_local, "workspace", None)
    if work is None or work.shape != (BLOCK_JETS, n_rows, size):
        work = _local.workspace = _Workspace(BLOCK_JETS, n_rows, size)
    return work


def _images_block(
    block: np.ndarray,
    edges: np.ndarray,
    normalise: bool,
    out: np.ndarray,
    work: _Workspace,
    preprocess: tuple[str, ...] = (),
) -> np.ndarray:
    """Images of one block of jets into ``out`` (n, size, size) float32; returns the jet sums (n, 4)."""
    gather_real, fill_images = _kernels()
    n_jets = len(block)
    px, py, pz, pt = work.columns
    sums = work.sums[:n_jets]
    k = gather_real(block, px, py, pz, pt, work.jet, sums)
    _, safe_jet_pt, jet_eta, jet_phi, _ = _jet_axis(sums)
    # NumPy's arcsinh and arctan2 (not numba's): the same values as the reference, bit for bit.
    eta = np.arcsinh(pz[:k] / pt[:k])
    phi = np.arctan2(py[:k], px[:k])
    images = work.images[:n_jets]
    images.fill(0.0)
    jet = work.jet[:k]
    if preprocess:
        delta_phi = np.mod(phi - jet_phi[jet] + np.pi, 2 * np.pi) - np.pi
        weight = pt[:k] / safe_jet_pt[jet]
        alignment = alignment_transforms(eta - jet_eta[jet], delta_phi, weight, jet, n_jets, preprocess)
    else:
        alignment = _NO_ALIGNMENT
    fill_images(eta, phi, pt[:k], jet, jet_eta, jet_phi, safe_jet_pt, edges, alignment, images)
    if normalise:
        totals = images.sum(axis=(1, 2), keepdims=True)
        totals[~(totals > 0)] = 1.0  # empty images stay as they are
        np.divide(images, totals, out=out, casting="same_kind")
    else:
        out[...] = images
    return sums


def images_into(
    constituents: np.ndarray,
    out: np.ndarray,
    size: int = 16,
    radius: float = 0.8,
    normalise: bool = True,
    preprocess: tuple[str, ...] | list[str] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill ``out`` (n_jets, size, size) float32 with the images; return (jet pT, jet mass, finite).

    constituents: (n_jets, n_constituents, 4) in any memory layout (a strided view of a file buffer is
    read in place). ``finite`` (n_jets,) bool is False for jets with a NaN or infinite momentum.
    ``preprocess``: steps of PREPROCESSING_STEPS (see the module docstring).
    """
    _check_image_settings(size, radius)
    preprocess = check_preprocessing(preprocess)
    size = int(size)
    constituents = np.asarray(constituents)
    if constituents.ndim != 3 or constituents.shape[2] != 4:
        raise ValueError(
            f"constituents must have shape (n_jets, n_constituents, 4), got {constituents.shape}"
        )
    n_jets, n_rows = constituents.shape[:2]
    if out.shape != (n_jets, size, size) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {(n_jets, size, size)}, got {out.dtype} {out.shape}")
    sums = np.empty((n_jets, 4))
    edges = np.linspace(-radius, radius, size + 1)
    starts = range(0, n_jets, BLOCK_JETS)

    def run(first_block: int, step: int) -> None:
        work = _workspace(n_rows, size)
        for start in starts[first_block::step]:
            stop = min(start + BLOCK_JETS, n_jets)
            block = constituents[start:stop]
            if block.dtype != np.float64 or block.dtype.byteorder not in "=|":
                block = block.astype(np.float64)
            sums[start:stop] = _images_block(block, edges, normalise, out[start:stop], work, preprocess)

    threads = min(THREADS, len(starts))
    if threads > 1:  # the compiled loops release the GIL: blocks run in parallel
        helpers = [_executor().submit(run, i, threads) for i in range(1, threads)]
        run(0, threads)
        for helper in helpers:
            helper.result()
    else:
        run(0, 1)
    jet_pt, _, _, _, jet_mass = _jet_axis(sums)
    return jet_pt, jet_mass, np.isfinite(sums).all(axis=1)


def jet_images_with_observables(
    constituents: np.ndarray,
    size: int = 16,
    radius: float = 0.8,
    normalise: bool = True,
    preprocess: tuple[str, ...] | list[str] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """constituents (n_jets, n_constituents, 4) → (images (n_jets, size, size) float32, jet pT, jet mass).

    The fast path (see the module docstring); pT and mass in GeV.
    """
    _check_image_settings(size, radius)
    out = np.empty((len(constituents), int(size), int(size)), np.float32)
    jet_pt, jet_mass, _ = images_into(
        constituents, out, size=size, radius=radius, normalise=normalise, preprocess=preprocess
    )
    return out, jet_pt, jet_mass


def jet_images(
    constituents: np.ndarray,
    size: int = 16,
    radius: float = 0.8,
    normalise: bool = True,
    preprocess: tuple[str, ...] | list[str] = (),
) -> np.ndarray:
    """Shortcut: constituents (n_jets, n_constituents, 4) → images (n_jets, size, size) float32."""
    return jet_images_with_observables(
        constituents, size=size, radius=radius, normalise=normalise, preprocess=preprocess
    )[0]


def _align_one_jet(x: np.ndarray, y: np.ndarray, w: np.ndarray, steps: tuple[str, ...]):
    """One jet's particles (Δη, Δφ) with weights w after the preprocessing steps, written out plainly."""
    if "center" in steps and w.sum() > 0:
        x, y = x - np.average(x, weights=w), y - np.average(y, weights=w)
    if "rotate" in steps and w.sum() > 0:
        u, v = x - np.average(x, weights=w), y - np.average(y, weights=w)
        angle = 0.5 * np.arctan2(2 * np.sum(w * u * v), np.sum(w * (u * u - v * v)))
        x, y = np.cos(angle) * x + np.sin(angle) * y, -np.sin(angle) * x + np.cos(angle) * y
    if "flip" in steps:
        if w[x < 0].sum() > w[x > 0].sum():
            x = -x
        if w[y < 0].sum() > w[y > 0].sum():
            y = -y
    return x, y


def jet_images_reference(
    constituents: np.ndarray,
    size: int = 16,
    radius: float = 0.8,
    normalise: bool = True,
    preprocess: tuple[str, ...] | list[str] = (),
) -> np.ndarray:
    """The straightforward per-jet ``np.histogram2d`` loop the notebooks use; kept as the reference."""
    steps = check_preprocessing(preprocess)
    kin = jet_kinematics(constituents)
    images = np.zeros((len(constituents), size, size))
    for i in range(len(constituents)):
        real = kin.is_real[i]
        delta_eta, delta_phi = kin.delta_eta[i][real], kin.delta_phi[i][real]
        if steps:
            delta_eta, delta_phi = _align_one_jet(delta_eta, delta_phi, kin.pt_fraction[i][real], steps)
        image, _, _ = np.histogram2d(
            delta_eta,
            delta_phi,
            bins=size,
            range=[[-radius, radius], [-radius, radius]],
            weights=kin.pt_fraction[i][real],
        )
        if normalise and image.sum() > 0:
            image = image / image.sum()
        images[i] = image
    return images.astype(np.float32)
