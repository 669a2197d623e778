"""N-subjettiness ratio τ32 = τ3 / τ2 of jets from their constituents, vectorised over jets.

τ_N = Σ_k pT_k · min_a ΔR(k, a) / Σ_k pT_k (β = 1; the usual normalisation R0 cancels in the ratio), summed
over every constituent, with ΔR in rapidity and azimuth. The axes a are exclusive-kT axes, as FastJet
contrib's ``ExclusiveJetAxes(kt, R = max_allowable_R, E-scheme)``: pairs are merged by smallest
min(pT_i², pT_j²)·ΔR_ij² (four-vectors added) until N pseudojets remain; with an effectively infinite R no
particle is merged with the beam. The 2-jet axes are the 3-jet axes after one more merge.

The one approximation (documented in the README): the axes are clustered from the ``axes_from`` hardest
constituents (default 64) rather than all of them; τ_N still sums over every constituent. With
``axes_from`` at least the number of constituents the result is the exact exclusive-kT definition.

``tau32`` is the fast path: every jet of a block advances one merge per step; each particle's nearest
neighbour is kept, so only the particles whose neighbour changed are searched again.
``tau32_reference`` is the straightforward per-jet loop, kept as the reference the tests compare against.
"""

from __future__ import annotations

import math

import numpy as np

#: Constituents (hardest first) the axes are clustered from; τ_N sums over all of them.
AXES_FROM = 64
#: Jets per vectorised block: the first distance matrices of a block take BLOCK_JETS · AXES_FROM² · 8 bytes.
BLOCK_JETS = 512


def _rapidity_phi_pt2(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rapidity, azimuth and pT² of four-vectors (..., 4) = (E, px, py, pz).

    Rapidity as arcsinh(pz / mT) with mT² = E² − pz², clamped below at pT² (a rounding-negative mass
    squared counts as massless), so it is finite for every particle with pT > 0.
    """
    energy, px, py, pz = (vectors[..., i] for i in range(4))
    pt2 = px * px + py * py
    mt = np.sqrt(np.maximum(energy * energy - pz * pz, pt2))
    rapidity = np.arcsinh(pz / np.where(mt > 0, mt, 1.0))
    return rapidity, np.arctan2(py, px), pt2


def _delta_r2(y1, phi1, y2, phi2):
    """ΔR² = Δy² + Δφ², Δφ wrapped into [−π, π]."""
    delta_phi = np.abs(phi1 - phi2)
    delta_phi = np.minimum(delta_phi, 2 * np.pi - delta_phi)
    delta_y = y1 - y2
    return delta_y * delta_y + delta_phi * delta_phi


def _distances(pt2, rapidity, phi, active, jets, particles) -> np.ndarray:
    """kT distances min(pT², pT_k²)·ΔR² from particle ``particles[r]`` of jet ``jets[r]`` to every particle
    k of that jet: (len(jets), K), infinite to itself and to merged (inactive) particles."""
    distance = np.minimum(pt2[jets, particles][:, None], pt2[jets]) * _delta_r2(
        rapidity[jets, particles][:, None], phi[jets, particles][:, None], rapidity[jets], phi[jets]
    )
    distance[~active[jets]] = np.inf
    distance[np.arange(len(jets)), particles] = np.inf
    return distance


def _exclusive_kt_axes(vectors: np.ndarray, active: np.ndarray, counts: tuple[int, ...]) -> dict:
    """{N: (axes (n, K, 4), active (n, K))}: exclusive-kT pseudojets of each jet when N remain.

    vectors (n, K, 4) float64 and active (n, K) bool are the particles to cluster; jets with N or fewer
    active particles keep them as their axes. Merges the first minimum of the upper triangle (i < j) in
    row-major order into i, as the per-jet reference does. Each particle's nearest neighbour (distance
    and first index) is kept, so a merge costs O(K) per jet plus the particles whose neighbour changed.
    Jets are ordered by their number of particles, so the jets still merging are always the first m.
    """
    n, k = active.shape
    order = np.argsort(-active.sum(axis=1), kind="stable")
    vectors = vectors[order]
    active = active[order]
    rapidity, phi, pt2 = _rapidity_phi_pt2(vectors)
    initial = np.minimum(pt2[:, :, None], pt2[:, None, :]) * _delta_r2(
        rapidity[:, :, None], phi[:, :, None], rapidity[:, None, :], phi[:, None, :]
    )
    initial[:, np.arange(k), np.arange(k)] = np.inf
    initial[~np.broadcast_to(active[:, None, :], initial.shape)] = np.inf
    nearest = initial.argmin(axis=2)
    nearest_distance = np.take_along_axis(initial, nearest[:, :, None], axis=2)[:, :, 0]
    nearest_distance[~active] = np.inf  # padding is never merged
    del initial
    remaining = active.sum(axis=1)
    unsort = np.argsort(order)
    result = {}
    for target in sorted(counts, reverse=True):
        while (m := int(np.count_nonzero(remaining > target))) > 0:
            rows = np.arange(m)
            # The smallest row holding the global minimum and its first nearest column: that is the
            # first minimum (i < j) of the upper triangle in row-major order.
            i = nearest_distance[:m].argmin(axis=1)
            j = nearest[rows, i]
            vectors[rows, i] = vectors[rows, i] + vectors[rows, j]
            active[rows, j] = False
            remaining[:m] -= 1
            rapidity[rows, i], phi[rows, i], pt2[rows, i] = _rapidity_phi_pt2(vectors[rows, i])
            nearest_distance[rows, j] = np.inf
            live = active[:m]
            # Particles whose nearest neighbour was i or j, and i itself: search again; every other one
            # only compares its distance to the new i (ties go to the lower index, as argmin does).
            stale = (nearest[:m] == i[:, None]) | (nearest[:m] == j[:, None])
            stale[rows, i] = True
            stale &= live
            jets, particles = np.nonzero(stale)
            again = _distances(pt2, rapidity, phi, active, jets, particles)
            nearest[jets, particles] = again.argmin(axis=1)
            nearest_distance[jets, particles] = again[np.arange(len(jets)), nearest[jets, particles]]
            to_i = _distances(pt2, rapidity, phi, active, rows, i)
            current = nearest_distance[:m]
            closer = (to_i < current) | ((to_i == current) & (i[:, None] < nearest[:m]))
            closer &= live & ~stale
            jets, particles = np.nonzero(closer)
            nearest[jets, particles] = i[jets]
            nearest_distance[jets, particles] = to_i[jets, particles]
        result[target] = (vectors[unsort], active[unsort])
    return result


def _tau(y, phi, pt, real, axes: np.ndarray, axis_active: np.ndarray, n_axes: int) -> np.ndarray:
    """τ_N (β = 1) of each jet: pT-weighted mean distance of its particles to the nearest of its (at most
    ``n_axes``) active axes."""
    first = np.argsort(~axis_active, axis=1, kind="stable")[:, :n_axes]  # the active axes, compacted
    axes = np.take_along_axis(axes, first[:, :, None], axis=1)
    axis_active = np.take_along_axis(axis_active, first, axis=1)
    axis_y, axis_phi, _ = _rapidity_phi_pt2(axes)
    distance = np.sqrt(_delta_r2(y[:, :, None], phi[:, :, None], axis_y[:, None, :], axis_phi[:, None, :]))
    distance[~np.broadcast_to(axis_active[:, None, :], distance.shape)] = np.inf
    nearest = distance.min(axis=2)
    nearest[~real] = 0.0
    total = np.where(real, pt, 0.0).sum(axis=1)
    return (pt * nearest).sum(axis=1) / np.where(total > 0, total, 1.0)


def _ratio(tau3: np.ndarray, tau2: np.ndarray) -> np.ndarray:
    """τ3 / τ2; 0 where τ2 = 0 (a jet of at most two particles: nothing is left for a third axis)."""
    return np.where(tau2 > 0, tau3 / np.where(tau2 > 0, tau2, 1.0), 0.0)


def _tau32_block(constituents: np.ndarray, axes_from: int) -> np.ndarray:
    pt = np.hypot(constituents[..., 1], constituents[..., 2])
    # Hardest first; the zero padding sorts last and is cut off.
    order = np.argsort(-pt, axis=1, kind="stable")[:, : max(int((pt > 0).sum(axis=1).max()), 1)]
    particles = np.take_along_axis(constituents, order[:, :, None], axis=1)
    y, phi, pt2 = _rapidity_phi_pt2(particles)
    pt = np.sqrt(pt2)
    real = pt > 0
    axes = _exclusive_kt_axes(particles[:, :axes_from], real[:, :axes_from], (3, 2))
    tau3 = _tau(y, phi, pt, real, *axes[3], 3)
    tau2 = _tau(y, phi, pt, real, *axes[2], 2)
    return _ratio(tau3, tau2)


def tau32(constituents: np.ndarray, axes_from: int = AXES_FROM) -> np.ndarray:
    """τ32 of each jet: constituents (n_jets, n_constituents, 4) as (E, px, py, pz), zero-padded → (n,).

    Vectorised over blocks of BLOCK_JETS jets; ``axes_from``: hardest constituents the axes are clustered
    from (see the module docstring).
    """
    constituents = np.asarray(constituents, dtype=np.float64)
    if constituents.ndim != 3 or constituents.shape[2] != 4:
        raise ValueError(
            f"constituents must have shape (n_jets, n_constituents, 4), got {constituents.shape}"
        )
    if not isinstance(axes_from, int) or axes_from < 3:
        raise ValueError(f"axes_from must be an integer of at least 3, got {axes_from!r}")
    out = np.empty(len(constituents))
    for start in range(0, len(constituents), BLOCK_JETS):
        block = constituents[start : start + BLOCK_JETS]
        out[start : start + len(block)] = _tau32_block(block, min(axes_from, block.shape[1]))
    return out


def tau32_reference(constituents: np.ndarray, axes_from: int | None = AXES_FROM) -> np.ndarray:
    """The same τ32, one jet at a time with plain loops (None: cluster the axes from every constituent)."""
    result = []
    for jet in np.asarray(constituents, dtype=np.float64):
        particles = [p for p in jet if math.hypot(p[1], p[2]) > 0]
        if not particles:
            result.append(0.0)
            continue
        hardest = sorted(particles, key=lambda p: -math.hypot(p[1], p[2]))  # stable, as argsort
        pseudojets = [p.copy() for p in hardest[: axes_from or len(hardest)]]
        taus = {}
        for n_axes in (3, 2):
            while len(pseudojets) > n_axes:
                best, pair = math.inf, None
                for i in range(len(pseudojets)):
                    for j in range(i + 1, len(pseudojets)):
                        y_i, phi_i, pt2_i = _rapidity_phi_pt2(pseudojets[i])
                        y_j, phi_j, pt2_j = _rapidity_phi_pt2(pseudojets[j])
                        d = min(pt2_i, pt2_j) * _delta_r2(y_i, phi_i, y_j, phi_j)
                        if d < best:
                            best, pair = d, (i, j)
                i, j = pair
                pseudojets[i] = pseudojets[i] + pseudojets[j]
                del pseudojets[j]
            numerator = denominator = 0.0
            for p in particles:
                y, phi, pt2 = _rapidity_phi_pt2(p)
                nearest = min(
                    math.sqrt(_delta_r2(y, phi, *_rapidity_phi_pt2(axis)[:2])) for axis in pseudojets
                )
                numerator += math.sqrt(pt2) * nearest
                denominator += math.sqrt(pt2)
            taus[n_axes] = numerator / denominator
        result.append(float(_ratio(np.float64(taus[3]), np.float64(taus[2]))))
    return np.array(result)
